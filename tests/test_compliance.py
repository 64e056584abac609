"""Compliance controls on whole simulated calls: opt-out, PCI pause and resume, per-line policy."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import RunSim, clip, find, first, names, recording, sealed
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
