"""Compliance controls on whole simulated calls: opt-out, PCI pause and resume, per-line policy."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import RunSim, clip, find, first, names, recording, sealed
from linerec.call.events import CallEvent
from linerec.dsp.dtmf import DtmfDetector

RATE = 8000
NOTICE_LINE = '[[line]]\nconsent = "notice"\nopt_out_key = "9"\nopt_out_window_s = 5\n'


def call(*steps: str) -> str:
    return "[[call]]\n" + "".join(f"[[call.step]]\n{step}\n" for step in steps)


def test_opt_out_key_during_the_notice_keeps_nothing(run_sim: RunSim) -> None:
    sim = run_sim(
        call(
            "ring = 1",
            "wait = 0.5",
            "off_hook = true",
            "wait = 2.0",
            'dtmf = "9"',
            'say = "caller"',
            "on_hook = true",
        ),
        config=NOTICE_LINE,
    )
    assert names(sim.events).count("opted_out") == 1
    assert first(sim.events, "opted_out").by == "key"  # type: ignore[attr-defined]
    assert sealed(sim) == []
    assert list((sim.config.store.dir).glob("*.lrec")) == []


def test_opt_out_key_just_after_the_notice_discards_what_was_begun(run_sim: RunSim) -> None:
    sim = run_sim(
        call(
            "ring = 1",
            "wait = 0.5",
            "off_hook = true",
            "wait = 6.5",
            'say = "caller"\nseconds = 1.0',
            'dtmf = "9"',
            'say = "office"',
            "on_hook = true",
        ),
        config=NOTICE_LINE,
    )
    assert "recording_started" in names(sim.events)
    assert names(sim.events).count("opted_out") == 1
    assert sealed(sim) == []
    assert list((sim.config.store.dir).glob("*.lrec")) == []


@pytest.mark.parametrize("wait", [2.0, 6.5], ids=["during the notice", "after it"])
def test_the_recording_led_goes_dark_at_an_opt_out(run_sim: RunSim, wait: float) -> None:
    """Nothing of an opted-out call is kept: the LED must not say otherwise (it once went on
    showing the notice or the recording until the hang-up)."""
    sim = run_sim(
        call(
            "ring = 1",
            "wait = 0.5",
            "off_hook = true",
            f"wait = {wait}",
            'dtmf = "9"',
            'say = "caller"\nseconds = 3.0',
            "on_hook = true",
        ),
        config=NOTICE_LINE,
    )
    opted, hung = first(sim.events, "opted_out").t, first(sim.events, "hung_up").t
    led = sim.backend.pins.outputs[sim.config.lines[0].pins.led].history
    assert any(lit for t, lit in led if t < opted)  # it showed the call until then

    def lit_at(moment: float) -> bool:
        return [lit for t, lit in led if t <= moment][-1]

    # The pins' times are the capture's clock, up to a second (the queue) ahead of the frames.
    moments = [opted + 1.2 + i * 0.05 for i in range(int((hung - opted - 1.2) / 0.05))]
    assert moments and not any(lit_at(moment) for moment in moments)


def test_opt_out_key_after_the_window_is_just_a_key(run_sim: RunSim) -> None:
    sim = run_sim(
        call(
            "ring = 1",
            "wait = 0.5",
            "off_hook = true",
            "wait = 6.5",
            'say = "caller"',
            'dtmf = "9"',
            "on_hook = true",
        ),
        config=NOTICE_LINE,
    )
    assert "opted_out" not in names(sim.events)
    assert len(sealed(sim)) == 1


def test_pause_and_resume_codes_keep_no_audio_and_no_keys(run_sim: RunSim) -> None:
    sim = run_sim(
        call(
            "at = 0.5\noff_hook = true",
            'say = "caller"\nseconds = 2.0',
            'dtmf = "*1"',
            'say = "office"',
            'dtmf = "*2"',
            'say = "caller"\nseconds = 2.0',
            "on_hook = true",
        ),
        config='[[line]]\nconsent = "one-party"\n',
    )
    assert [
        n for n in names(sim.events) if n.startswith("recording_p") or n.startswith("recording_r")
    ] == ["recording_paused", "recording_resumed"]
    kept = recording(sim)
    (pause,) = kept.metadata["pauses"]
    assert pause["by"] == "code" and pause["seconds"] == pytest.approx(0.14 + 5.3 + 0.21, abs=0.1)
    audio = kept.samples
    assert find(audio, clip("office")[RATE : RATE * 4])[1] < 3  # nothing said during the pause
    assert find(audio, clip("caller")[: RATE * 2])[1] > 30  # before it
    detector = DtmfDetector()
    heard = [
        d for start in range(0, len(audio), 160) for d in detector.feed(audio[start : start + 160])
    ]
    assert heard + detector.flush() == []  # the keys themselves are not in the recording
    assert len(audio) / RATE == pytest.approx(2.0 + 0.07 + 2.0, abs=0.3)  # the paused span is gone


@pytest.mark.parametrize(
    ("keys", "span"),
    [
        ('dtmf = "4111111111111111"', 2.1),
        ('dtmf = "41"\ntone_ms = 1500', 3.1),  # held down: longer than the recording's delay
    ],
)
def test_keys_in_a_call_are_silenced_in_the_recording(
    run_sim: RunSim, keys: str, span: float
) -> None:
    sim = run_sim(
        call(
            "at = 0.5\noff_hook = true",
            'say = "caller"\nseconds = 1.0',
            keys,
            'say = "office"\nseconds = 1.0',
            "on_hook = true",
        ),
        config='[[line]]\nconsent = "one-party"\n',
    )
    audio = recording(sim).samples
    detector = DtmfDetector()
    heard = [
        d for start in range(0, len(audio), 160) for d in detector.feed(audio[start : start + 160])
    ]
    assert heard + detector.flush() == []
    assert (
        int(np.abs(audio[round(1.1 * RATE) : round((1.1 + span) * RATE)]).max()) < 3000
    )  # only the line's echo


@pytest.mark.parametrize("offset_ms", [0, 10, 30, 50, 70])
@pytest.mark.parametrize(
    ("keys", "tone_ms", "delay_ms"),
    [("5", 40, 200), ("5", 190, 200), ("*1", 50, 200), ("5", 40, 60), ("*1", 50, 60)],
)
def test_keys_and_codes_at_any_phase_of_the_analysis_block_are_silenced(
    run_sim: RunSim, offset_ms: int, keys: str, tone_ms: int, delay_ms: int
) -> None:
    # Analysis runs on 80 ms blocks: a key that starts anywhere in a block (or a code whose
    # keys do), short or held, must still be silenced before its audio leaves the delay line;
    # a shorter delay line than the usual 200 ms gets smaller blocks.
    sim = run_sim(
        call(
            "at = 0.5\noff_hook = true",
            f"wait = {1.0 + offset_ms / 1000}",
            f'dtmf = "{keys}"\ntone_ms = {tone_ms}\ngap_ms = 60',
            "wait = 1.0",
            "on_hook = true",
        ),
        config=f'[store]\ndelay_ms = {delay_ms}\n[[line]]\nconsent = "one-party"\n',
    )
    if keys == "*1":
        assert "recording_paused" in names(sim.events)
    else:
        assert "dtmf" in names(sim.events)
    audio = recording(sim).samples
    detector = DtmfDetector()
    heard = [
        d for start in range(0, len(audio), 160) for d in detector.feed(audio[start : start + 160])
    ]
    assert heard + detector.flush() == []
    assert int(np.abs(audio).max()) < 300  # nothing of the keys: the line's hiss only


def test_button_pauses_and_a_forgotten_pause_resumes_by_itself(run_sim: RunSim) -> None:
    sim = run_sim(
        call(
            "at = 0.5\noff_hook = true",
            'say = "caller"\nseconds = 1.0',
            "press = true",
            "wait = 7.0",
            'say = "office"\nseconds = 2.0',
            "on_hook = true",
        ),
        config='[[line]]\nconsent = "one-party"\npause_limit_s = 5\n',
    )
    paused, resumed = first(sim.events, "recording_paused"), first(sim.events, "recording_resumed")
    assert paused.by == "button" and resumed.by == "auto"  # type: ignore[attr-defined]
    assert resumed.t - paused.t == pytest.approx(5.0, abs=0.05)
    assert find(recording(sim).samples, clip("office")[: RATE * 2])[1] > 30


def test_each_line_keeps_its_own_policy(run_sim: RunSim) -> None:
    config = (
        '[[line]]\nlabel = "sales"\nconsent = "one-party"\nretention_days = 30\n'
        '[[line]]\nlabel = "support"\nconsent = "beep"\nretention_days = 180\npause_code = "#5"\n'
    )
    two = (
        '[[call]]\nline = "line1"\n[[call.step]]\nat = 0.5\noff_hook = true\n[[call.step]]\nsay = "caller"\n'
        '[[call.step]]\non_hook = true\n[[call]]\nline = "line2"\n[[call.step]]\nat = 0.5\noff_hook = true\n'
        '[[call.step]]\nsay = "office"\n[[call.step]]\non_hook = true\n'
    )
    sim = run_sim(two, config=config)
    sales, support = (
        recording(sim, "line1").metadata["policy"],
        recording(sim, "line2").metadata["policy"],
    )
    assert (sales["label"], sales["consent"], sales["retention_days"]) == ("sales", "one-party", 30)
    assert (support["label"], support["consent"], support["pause_code"]) == (
        "support",
        "beep",
        "#5",
    )
    assert recording(sim, "line2").inspected.header["retention_days"] == 180


# -- issue 16: what counts as dialling, and card numbers on outbound calls ---------------------

PCI_LINE = '[[line]]\nconsent = "one-party"\n'
CARD = "4111111111111111"


def _without_temp_dirs(text: str) -> str:
    """`text` without pytest's temporary directories: pytest-1111 is a run's name, not a leak."""
    return re.sub(r"pytest-of-[^/\s\"]+/pytest-\d+", "", text)


def _no_card_digits(sim_events: list[object], text: str = "") -> None:
    from linerec.daemon.report import event_record

    records = _without_temp_dirs(json.dumps([event_record(e) for e in sim_events]))  # type: ignore[arg-type]
    text = _without_temp_dirs(text)
    for leak in ("4111", "1111"):
        assert leak not in records and leak not in text


@pytest.mark.parametrize(
    "answer",
    [
        # ringback, then the far end answers
        ("tone = [440, 480]\nseconds = 2.0", "wait = 4.0", 'say = "office"\nseconds = 2.0'),
        # no progress tone at all: the far end just speaks
        ("wait = 1.0", 'say = "office"\nseconds = 2.0'),
        # the agent keys the pause code at once, within the dialling gap
        ("wait = 1.0",),
    ],
    ids=["ringback", "voice", "code-at-once"],
)
def test_card_digits_after_an_outbound_call_connects_are_never_the_number(
    run_sim: RunSim, answer: tuple[str, ...]
) -> None:
    sim = run_sim(
        call(
            "at = 0.5\noff_hook = true",
            "tone = [350, 440]\nseconds = 0.8",
            'dtmf = "5551234"\ntone_ms = 80\ngap_ms = 80',
            *answer,
            'dtmf = "*1"',
            f'dtmf = "{CARD}"',
            'dtmf = "*2"',
            'say = "caller"\nseconds = 2.0',
            "on_hook = true",
        ),
        config=PCI_LINE,
    )
    dialled = [e for e in sim.events if e.name == "dialled"]
    assert [e.number for e in dialled] == ["5551234"]  # type: ignore[attr-defined]
    assert names(sim.events).count("recording_paused") == 1
    kept = recording(sim)
    assert kept.metadata["called_number"] == "5551234"
    _no_card_digits(sim.events, json.dumps(kept.metadata))


def test_simulate_json_prints_the_number_dialled_and_no_card_digit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from linerec.cli import main

    callfile = tmp_path / "pci.toml"
    callfile.write_text(
        call(
            "at = 0.5\noff_hook = true",
            'dtmf = "5551234"\ntone_ms = 80\ngap_ms = 80',
            "tone = [440, 480]\nseconds = 2.0",
            "wait = 4.0",
            'say = "office"\nseconds = 1.0',
            'dtmf = "*1"',
            f'dtmf = "{CARD}"',
            'dtmf = "*2"',
            "on_hook = true",
        )
    )
    config = tmp_path / "linerec.toml"
    config.write_text(PCI_LINE)
    status = main(
        [
            "simulate",
            str(callfile),
            "--json",
            "--config",
            str(config),
            "--store",
            str(tmp_path / "s"),
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["number"] for r in records if r["event"] == "dialled"] == ["5551234"]
    out = _without_temp_dirs(out)
    assert "4111" not in out and "1111" not in out


def test_keys_while_paused_on_an_outbound_call_are_not_dialling(run_sim: RunSim) -> None:
    # Paused by the button before any digit: the digits keyed now are a card, not a number.
    sim = run_sim(
        call(
            "at = 0.5\noff_hook = true",
            'say = "office"\nseconds = 1.0',
            "press = true",
            "wait = 0.3",
            f'dtmf = "{CARD}"',
            "press = true",
            'say = "caller"\nseconds = 1.0',
            "on_hook = true",
        ),
        config=PCI_LINE,
    )
    assert "dialled" not in names(sim.events)
    assert "called_number" not in recording(sim).metadata
    _no_card_digits(sim.events)


# -- issue 16: consent, opt-out and pause defects -----------------------------------------------


def test_an_opted_out_call_is_not_reported_as_recorded(run_sim: RunSim) -> None:
    sim = run_sim(
        call(
            "ring = 1",
            "wait = 0.5",
            "off_hook = true",
            "wait = 6.5",
            'say = "caller"\nseconds = 1.0',
            'dtmf = "9"',
            'say = "office"\nseconds = 1.0',
            "on_hook = true",
        ),
        config=NOTICE_LINE,
    )
    assert names(sim.events).count("opted_out") == 1
    assert first(sim.events, "hung_up").recorded is False  # type: ignore[attr-defined]


def test_resume_by_button_keeps_no_paused_audio_not_even_part_of_a_period(
    run_sim: RunSim,
) -> None:
    # A 1 kHz tone sounds through the pause; the button resumes 13 ms into a 20 ms period.
    sim = run_sim(
        call(
            "at = 0.5\noff_hook = true",
            "wait = 1.0",
            "press = true",
            "tone = 1000\nseconds = 1.513\nlevel_dbfs = -10",
            "press = true",
            "tone = 1000\nseconds = 0.987\nlevel_dbfs = -10",
            "wait = 1.0",
            "on_hook = true",
        ),
        config=PCI_LINE,
    )
    resumed = first(sim.events, "recording_resumed")
    assert resumed.by == "button"  # type: ignore[attr-defined]
    samples = recording(sim).samples
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 2000)
    kept_tone = (loud[-1] - loud[0] + 1) / RATE
    assert kept_tone == pytest.approx(0.987, abs=0.002)  # not the whole period it began in


def test_opt_out_key_works_after_a_command_switches_the_line_to_notice(tmp_path: Path) -> None:
    import threading

    from linerec.config import load_config
    from linerec.daemon.backends import open_sim_backend
    from linerec.daemon.service import Daemon
    from linerec.daemon.simulate import demo_keys
    from linerec.daemon.storage import open_store
    from linerec.sim.callfile import load_call_file
    from linerec.uplink.commands import Command

    config_path = tmp_path / "linerec.toml"
    config_path.write_text(
        f'[store]\ndir = "{tmp_path / "ring"}"\n'
        '[[line]]\nconsent = "one-party"\nopt_out_key = "9"\n'
    )
    callfile = tmp_path / "call.toml"
    callfile.write_text(
        call(
            "ring = 1",
            "wait = 0.5",
            "off_hook = true",
            "wait = 2.0",
            'dtmf = "9"',
            'say = "caller"\nseconds = 2.0',
            "on_hook = true",
        )
    )
    config, backend = open_sim_backend(load_config(config_path), load_call_file(callfile), speed=0)
    _private, public = demo_keys(tmp_path / "ring")
    events: list[CallEvent] = []
    store = open_store(config, emit=events.append, clock=backend.clock, recipients=[public])
    daemon = Daemon(config, backend, store, emit=events.append)
    daemon.start()
    daemon.submit_command(
        Command(counter=1, action="consent", arguments={"line": "line1", "mode": "notice"})
    )
    daemon.run(threading.Event(), until=backend.script_end("line1") + 1.5)
    daemon.shutdown()
    assert "notice_started" in names(events)
    assert names(events).count("opted_out") == 1
    assert "recording_sealed" not in names(events)
    assert first(events, "hung_up").recorded is False  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("config", "between"),
    [
        (PCI_LINE, 'say = "office"\nseconds = 1.2'),  # the far end answers between '*' and '1'
        (PCI_LINE + "dial_limit_s = 10\n", "wait = 0.6"),  # the dialling limit passes there
    ],
    ids=["voice", "limit"],
)
def test_a_pause_code_split_by_the_end_of_dialling_is_not_in_the_number(
    run_sim: RunSim, config: str, between: str
) -> None:
    sim = run_sim(
        call(
            "at = 0.5\noff_hook = true",
            "wait = 8.2",
            'dtmf = "5551234"\ntone_ms = 80\ngap_ms = 80',
            'dtmf = "*"',
            between,
            'dtmf = "1"',
            f'dtmf = "{CARD}"',
            'dtmf = "*2"',
            'say = "caller"\nseconds = 1.0',
            "on_hook = true",
        ),
        config=config,
    )
    assert [e.number for e in sim.events if e.name == "dialled"] == ["5551234"]  # type: ignore[attr-defined]
    assert names(sim.events).count("recording_paused") == 1
    kept = recording(sim)
    assert kept.metadata["called_number"] == "5551234"
    _no_card_digits(sim.events, json.dumps(kept.metadata))


def test_a_cept_dial_tone_cut_short_by_the_first_key_is_not_an_answer(run_sim: RunSim) -> None:
    sim = run_sim(
        call(
            "at = 0.5\noff_hook = true",
            "tone = 425\nseconds = 0.8",  # CEPT dial tone, until the first key
            'dtmf = "5551234"\ntone_ms = 80\ngap_ms = 80',
            "tone = 425\nseconds = 1.0",  # CEPT ringback: 1 s on, 4 s off
            "wait = 4.0",
            "tone = 425\nseconds = 1.0",
            "wait = 1.0",
            'say = "office"\nseconds = 1.0',
            'dtmf = "*1"',
            f'dtmf = "{CARD}"',
            'dtmf = "*2"',
            "on_hook = true",
        ),
        config=PCI_LINE,
    )
    assert [e.number for e in sim.events if e.name == "dialled"] == ["5551234"]  # type: ignore[attr-defined]
    assert recording(sim).metadata["called_number"] == "5551234"
    _no_card_digits(sim.events)
