"""Whole calls through the simulated line and the real code path: ALSA, call flow, store."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest

from conftest import RunSim, clip, find, first, names, recording, sealed, tone_onsets
from linerec.codec import Codec, decode, encode
from linerec.daemon.simulate import example_call, simulate
from linerec.resources import data_path
from linerec.sim.callfile import CallFileError
from linerec.store.disk import OsDisk
from linerec.wav import read_wav

RATE = 8000
NOTICE = read_wav(data_path("notice-en.wav")).mono
NOTICE_ULAW = decode(Codec.ULAW, encode(Codec.ULAW, NOTICE))

INBOUND = """
[[call]]
[[call.step]]
ring = 1
[[call.step]]
wait = 0.5
[[call.step]]
off_hook = true
[[call.step]]
say = "office"          # spoken over the notice: before consent, never kept
[[call.step]]
wait = 1.0
[[call.step]]
say = "caller"
[[call.step]]
on_hook = true
"""


def test_inbound_call_notice_then_conversation(run_sim: RunSim) -> None:
    sim = run_sim(INBOUND)
    assert names(sim.events) == [
        "ringing",
        "answered",
        "notice_started",
        "notice_played",
        "recording_started",
        "hung_up",
        "recording_sealed",
    ]
    answered = first(sim.events, "answered")
    assert answered.direction.value == "inbound"  # type: ignore[attr-defined]
    assert answered.t == pytest.approx(2.5)
    played = first(sim.events, "notice_played").t
    hung_up = first(sim.events, "hung_up").t
    assert hung_up == pytest.approx(2.5 + 5.3 + 1.0 + 7.1, abs=0.001)

    kept = recording(sim)
    audio = kept.samples
    # The notice, exactly as played, heads the recording (padded to whole 20 ms frames)...
    (marker,) = kept.metadata["markers"]
    assert marker["label"] == "notice played; conversation follows"
    assert round(marker["at"] * RATE) == 160 * -(-len(NOTICE) // 160)
    assert np.array_equal(audio[: len(NOTICE)], NOTICE_ULAW)
    head = marker["at"]
    # ...then the conversation, up to the hang-up and not a frame of dial tone after it.
    assert len(audio) / RATE == pytest.approx(head + hung_up - played, abs=0.02)
    offset, snr = find(audio, clip("caller"))
    assert offset / RATE == pytest.approx(head + (2.5 + 5.3 + 1.0) - played, abs=0.001)
    assert snr > 30  # µ-law keeps speech at about 35-38 dB SNR


def test_nothing_said_before_consent_is_kept(run_sim: RunSim) -> None:
    sim = run_sim(INBOUND)
    audio = recording(sim).samples
    # The office spoke (5.3 s) while the notice played (5.6 s): the head is the notice alone
    # and no trace of what was said is anywhere in the recording.
    assert np.array_equal(audio[: len(NOTICE)], NOTICE_ULAW)
    for part in np.split(clip("office")[: RATE * 5], 5):
        assert find(audio, part)[1] < 3


def test_hang_up_during_notice_leaves_an_event_and_no_recording(tmp_path: Path) -> None:
    store = tmp_path / "store"
    sim = simulate(
        [example_call("hangup-during-notice.toml")],
        config=None,
        store_dir=store,
        emit=lambda e: None,
    )
    assert names(sim.events) == [
        "ringing",
        "answered",
        "notice_started",
        "notice_abandoned",
        "hung_up",
    ]
    assert first(sim.events, "hung_up").recorded is False  # type: ignore[attr-defined]
    assert list(store.glob("*.lrec")) == []


def test_beep_mode_tone_every_15_seconds(run_sim: RunSim) -> None:
    sim = run_sim(example_call("beep.toml").read_text())
    assert "notice_started" not in names(sim.events)
    answered = first(sim.events, "answered").t
    line_out = np.fromfile(sim.backend.line_out("line1"), dtype="<i2")
    played = tone_onsets(line_out, 1400)
    kept = tone_onsets(recording(sim).samples, 1400)
    for bursts, zero in ((played, answered), (kept, 0.0)):
        starts = [start - zero for start, _ in bursts]
        assert len(starts) == 3
        assert starts[0] == pytest.approx(0.0, abs=0.05)
        assert starts[1] - starts[0] == pytest.approx(15.0, abs=0.05)
        assert starts[2] - starts[0] == pytest.approx(30.0, abs=0.05)
        assert all(length == pytest.approx(0.5, abs=0.05) for _, length in bursts)


def test_two_lines_at_once_are_kept_apart(run_sim: RunSim) -> None:
    sim = run_sim(example_call("two-lines.toml").read_text())
    assert {e.line for e in sealed(sim)} == {"line1", "line2"}
    line1, line2 = recording(sim, "line1").samples, recording(sim, "line2").samples
    assert find(line1, clip("caller"))[1] > 30
    assert find(line2, clip("office"))[1] > 30
    assert find(line1, clip("office")[: RATE * 3])[1] < 3
    assert find(line2, clip("caller")[: RATE * 3])[1] < 3
    assert first(sim.events, "answered", "line2").direction.value == "outbound"  # type: ignore[attr-defined]


def test_leds_show_notice_then_recording(run_sim: RunSim) -> None:
    sim = run_sim(INBOUND)
    pins = sim.backend.pins
    led = pins.outputs[sim.config.lines[0].pins.led].history
    notice_start = first(sim.events, "notice_started").t
    recording_start = first(sim.events, "recording_started").t
    hung_up = first(sim.events, "hung_up").t
    during_notice = [lit for t, lit in led if notice_start <= t < recording_start]
    assert during_notice.count(True) >= 10  # 2 Hz blink through 5.7 s of notice

    def lit_at(t: float) -> bool:
        return [lit for at, lit in led if at <= t][-1]

    assert all(lit_at(t) for t in np.arange(recording_start + 0.02, hung_up + 0.9, 0.02))
    changes = [(t, lit) for t, lit in led if recording_start < t]
    assert changes[0] == (
        pytest.approx(hung_up + 1.0, abs=0.05),
        False,
    )  # off once the hang-up is sure
    status = pins.outputs[sim.config.hardware.status_led].history
    assert status[0][1] is True  # idle heartbeat begins at start


def closed_spans(history: list[tuple[float, bool]]) -> list[tuple[float, float]]:
    spans, since = [], None
    for t, level in history:
        if level and since is None:
            since = t
        elif not level and since is not None:
            spans.append((since, t))
            since = None
    assert since is None, "the talk switch was left closed"
    return spans


def test_talk_switch_closes_only_while_the_notice_plays(run_sim: RunSim) -> None:
    sim = run_sim(INBOUND)
    talk = sim.config.lines[0].pins.talk
    assert talk is not None, "the pin map gives line 1 a talk switch"
    spans = closed_spans(sim.backend.pins.outputs[talk].history)
    notice_start = first(sim.events, "notice_started").t
    recording_start = first(sim.events, "recording_started").t
    assert len(spans) == 1
    (closed, opened) = spans[0]
    # closed before the first notice sample is played; open once the last one has been
    assert notice_start - 0.05 <= closed <= notice_start + 0.05
    assert recording_start <= opened <= recording_start + 0.4


def test_talk_switch_closes_for_each_beep(run_sim: RunSim) -> None:
    sim = run_sim(example_call("beep.toml").read_text())
    talk = sim.config.lines[0].pins.talk
    assert talk is not None
    spans = closed_spans(sim.backend.pins.outputs[talk].history)
    answered = first(sim.events, "answered").t
    assert [round(start - answered) for start, _ in spans] == [0, 15, 30]
    assert all(0.5 <= end - start <= 0.9 for start, end in spans)  # 0.5 s beep + hold


def test_device_at_48_khz_is_resampled(run_sim: RunSim) -> None:
    sim = run_sim(INBOUND, config="[[line]]\nrate = 48000\n")
    assert sim.config.lines[0].audio.rate == 48000
    line_in = np.fromfile(sim.backend.line_in("line1"), dtype="<i2")
    assert len(line_in) / 48000 == pytest.approx(sim.backend.script_end("line1"), abs=0.05)
    # The resamplers delay audio by 2 x 25 samples, so the last words run past the hang-up.
    _, snr = find(recording(sim).samples, clip("caller")[: -RATE // 10])
    assert snr > 20  # resampled up by the simulator and down by the capture, then µ-law
    line_out = np.fromfile(sim.backend.line_out("line1"), dtype="<i2")
    assert find(line_out[::6].copy(), NOTICE)[1] > 20  # the notice went out at 48 kHz


def test_overrun_is_a_marked_gap_not_a_silent_splice(run_sim: RunSim) -> None:
    call = """
[[call]]
[[call.step]]
off_hook = true
[[call.step]]
say = "caller"
seconds = 3.0
[[call.step]]
overrun = 0.4
[[call.step]]
say = "office"
seconds = 3.0
[[call.step]]
on_hook = true
"""
    sim = run_sim(call, config='[[line]]\nconsent = "one-party"\n')
    gap = first(sim.events, "audio_gap")
    assert gap.seconds == pytest.approx(0.4)  # type: ignore[attr-defined]
    assert gap.in_recording  # type: ignore[attr-defined]
    kept = recording(sim)
    assert kept.metadata["gaps"] == [
        {
            "at": pytest.approx(3.0, abs=0.03),
            "seconds": 0.4,
            "reason": "capture overrun: audio lost",
        }
    ]
    # the timeline is kept: the recording is as long as the call, the gap silent
    answered, hung_up = first(sim.events, "answered").t, first(sim.events, "hung_up").t
    assert len(kept.samples) / RATE == pytest.approx(hung_up - answered, abs=0.03)
    at = round(kept.metadata["gaps"][0]["at"] * RATE)
    assert not kept.samples[at + 160 : at + round(0.4 * RATE) - 160].any()


def test_hook_flash_does_not_end_the_recording(run_sim: RunSim) -> None:
    call = """
[[call]]
[[call.step]]
off_hook = true
[[call.step]]
say = "caller"
seconds = 2.0
[[call.step]]
flash = 0.4
[[call.step]]
say = "office"
seconds = 2.0
[[call.step]]
on_hook = true
"""
    sim = run_sim(call, config='[[line]]\nconsent = "one-party"\n')
    assert names(sim.events) == [
        "answered",
        "recording_started",
        "hook_flash",
        "hung_up",
        "recording_sealed",
    ]
    assert first(sim.events, "hook_flash").duration == pytest.approx(0.4)  # type: ignore[attr-defined]
    assert len(sealed(sim)) == 1


def test_one_party_records_from_off_hook(run_sim: RunSim) -> None:
    call = """
[[call]]
[[call.step]]
at = 1.0
off_hook = true
[[call.step]]
say = "caller"
[[call.step]]
on_hook = true
"""
    sim = run_sim(call, config='[[line]]\nconsent = "one-party"\n')
    audio = recording(sim).samples
    offset, snr = find(audio, clip("caller"))
    assert offset == 0  # the first word is kept: the delay line reaches back to off hook
    assert snr > 30
    assert len(audio) == len(clip("caller"))


def test_call_file_asking_for_another_consent_than_the_config(run_sim: RunSim) -> None:
    with pytest.raises(
        CallFileError,
        match=r"call.consent: asks for 'beep' but .*linerec.toml sets line1 to 'notice'",
    ):
        run_sim(example_call("beep.toml").read_text(), config="[[line]]\n")


def test_call_on_a_line_the_config_lacks(run_sim: RunSim) -> None:
    with pytest.raises(
        CallFileError, match=r"no line named 'line2' in .*linerec.toml \(lines: line1\)"
    ):
        run_sim('[[call]]\nline = "line2"\n[[call.step]]\noff_hook = true\n', config="[[line]]\n")


@pytest.mark.parametrize("period_ms", [10, 40])
def test_other_alsa_periods_still_give_20_ms_frames(run_sim: RunSim, period_ms: int) -> None:
    sim = run_sim(INBOUND, config=f"[[line]]\nperiod_ms = {period_ms}\nrate = 44100\n")
    assert first(sim.events, "answered").t == pytest.approx(2.5)
    _, snr = find(recording(sim).samples, clip("caller")[: -RATE // 10])
    assert snr > 20


def test_hang_up_in_the_last_second_of_the_notice(run_sim: RunSim) -> None:
    # On hook 5.2 s into a 5.68 s notice: the notice ends while the hang-up is being confirmed.
    call = "[[call]]\n[[call.step]]\noff_hook = true\n[[call.step]]\nwait = 5.2\n[[call.step]]\non_hook = true\n"
    sim = run_sim(call)
    assert names(sim.events) == ["answered", "notice_started", "notice_abandoned", "hung_up"]
    assert first(sim.events, "hung_up").t == pytest.approx(5.2)
    assert first(sim.events, "hung_up").recorded is False  # type: ignore[attr-defined]
    assert sealed(sim) == []


def test_box_started_with_the_line_already_off_hook(run_sim: RunSim) -> None:
    call = '[[call]]\n[[call.step]]\nat = 0.0\noff_hook = true\n[[call.step]]\nwait = 6.0\n[[call.step]]\nsay = "caller"\n[[call.step]]\non_hook = true\n'
    sim = run_sim(call)
    answered = first(sim.events, "answered")
    assert answered.t == 0.0
    assert names(sim.events)[:3] == ["answered", "notice_started", "notice_played"]
    assert find(recording(sim).samples, clip("caller"))[1] > 30


def test_simulated_stall_ends_the_run_and_seals_what_was_kept(run_sim: RunSim) -> None:
    call = '[[call]]\n[[call.step]]\noff_hook = true\n[[call.step]]\nsay = "caller"\nseconds = 2.0\n[[call.step]]\nstall = true\n'
    sim = run_sim(call, config='[[line]]\nconsent = "one-party"\n')
    (event,) = sealed(sim)
    assert event.ended_by == "capture-stalled"
    assert event.duration == pytest.approx(2.0, abs=0.05)
    assert any(e.name == "fault" and "capture stalled" in e.message for e in sim.events)  # type: ignore[attr-defined]


class FailingDisk(OsDisk):
    """The card fails one write (EIO), as a worn SD card does."""

    def __init__(self, fail_at: int) -> None:
        self.writes = 0
        self.fail_at = fail_at

    def pwrite(self, handle: int, data: bytes, offset: int) -> None:
        self.writes += 1
        if self.writes == self.fail_at:
            raise OSError(errno.EIO, "Input/output error")
        super().pwrite(handle, data, offset)


def test_store_error_mid_call_is_loud_and_the_call_is_kept_again(tmp_path: Path) -> None:
    import threading

    from linerec.daemon.backends import open_sim_backend
    from linerec.daemon.service import Daemon
    from linerec.daemon.simulate import default_config, demo_keys
    from linerec.sim.callfile import load_call_file
    from linerec.store import keys as keyfiles
    from linerec.store.ring import RingStore

    call = tmp_path / "call.toml"
    call.write_text(
        '[[call]]\n[[call.step]]\noff_hook = true\n[[call.step]]\nsay = "caller"\n'
        '[[call.step]]\nsay = "office"\n[[call.step]]\non_hook = true\n'
    )
    config = default_config(["line1"], tmp_path / "ring", {"line1": "one-party"})
    config, backend = open_sim_backend(config, load_call_file(call), speed=0)
    _private, public = demo_keys(tmp_path / "ring")
    events: list[object] = []
    store = RingStore(
        config.store.dir,
        recipients=[keyfiles.load_public(public)],
        identity=keyfiles.load_or_create_identity(tmp_path / "id.key"),
        disk=FailingDisk(fail_at=6),
    )
    daemon = Daemon(config, backend, store, emit=events.append)
    daemon.start()
    daemon.run(threading.Event(), until=backend.script_end("line1") + 1.5)
    daemon.shutdown()
    kinds = [(e.name, getattr(e, "ended_by", getattr(e, "kind", ""))) for e in events]  # type: ignore[attr-defined]
    assert ("fault", "store") in kinds
    ended = [k for name, k in kinds if name == "recording_sealed"]
    assert ended == ["store-error", "hang-up"]  # the part before the error, then the rest
    lengths = [e.duration for e in events if e.name == "recording_sealed"]  # type: ignore[attr-defined]
    assert sum(lengths) == pytest.approx(12.4 - 5.0, abs=0.6)  # 5 s (STORE_RETRY) not kept
    led = backend.pins.outputs[config.lines[0].pins.led].history
    assert (pytest.approx(2.02, abs=0.6), False) in [
        (t, lit) for t, lit in led
    ]  # LED off while not kept
    assert "store" not in daemon._faults  # cleared by the next good seal


def test_outbound_dialled_digits_become_the_called_number(run_sim: RunSim) -> None:
    sim = run_sim(example_call("outbound.toml").read_text())
    dialled = [e for e in sim.events if e.name == "dialled"]
    assert [e.number for e in dialled] == ["5551234"]  # type: ignore[attr-defined]
    assert len([e for e in sim.events if e.name == "dtmf"]) == 7  # each key, without the key
    assert recording(sim).metadata["called_number"] == "5551234"


def test_keys_pressed_during_the_call_are_events_without_the_key(run_sim: RunSim) -> None:
    call = (
        "[[call]]\n[[call.step]]\nring = 1\n[[call.step]]\nwait = 0.5\n[[call.step]]\noff_hook = true\n"
        '[[call.step]]\nwait = 6.0\n[[call.step]]\ndtmf = "4111"\n[[call.step]]\nwait = 1.0\n'
        "[[call.step]]\non_hook = true\n"
    )
    sim = run_sim(call)
    heard = [e for e in sim.events if e.name == "dtmf"]
    assert len(heard) == 4
    assert not hasattr(heard[0], "digit")  # a card number must not leave in events
    assert "called_number" not in recording(sim).metadata  # inbound: nothing was dialled


def test_caller_id_between_the_rings_goes_with_the_call(run_sim: RunSim) -> None:
    sim = run_sim(example_call("inbound.toml").read_text())
    heard = first(sim.events, "callerid")
    assert (heard.number, heard.caller_name, heard.in_call) == ("5551234567", "JOHN DOE", False)  # type: ignore[attr-defined]
    assert heard.t < first(sim.events, "answered").t
    metadata = recording(sim).metadata
    assert (metadata["caller_number"], metadata["caller_name"]) == ("5551234567", "JOHN DOE")
    assert metadata["callerid_datetime"] == "11251430"


def test_call_waiting_is_an_event_and_the_recording_goes_on(run_sim: RunSim) -> None:
    sim = run_sim(example_call("call-waiting.toml").read_text())
    assert names(sim.events) == [
        "answered",
        "recording_started",
        "tone",
        "callerid",
        "hung_up",
        "recording_sealed",
    ]
    assert first(sim.events, "callerid").in_call is True  # type: ignore[attr-defined]
    kept = recording(sim)
    assert kept.metadata["call_waiting"][0]["caller_number"] == "2125550199"
    assert "caller_number" not in kept.metadata  # the waiting caller is not this call's caller
    # one recording, caller and office both in it, the caller ID burst too (it was on the line)
    assert find(kept.samples, clip("caller"))[1] > 30
    assert find(kept.samples, clip("office"))[1] > 30


def test_private_caller_and_a_corrupt_message(run_sim: RunSim) -> None:
    call = (
        "[[call]]\n[[call.step]]\nring = 1\n[[call.step]]\nwait = 0.5\n"
        '[[call.step]]\ncallerid = ""\nabsent = "private"\nstandard = "v23"\nalert = true\n'
        "[[call.step]]\nat = 6.0\nring = 1\n"
        '[[call.step]]\nwait = 0.5\n[[call.step]]\ncallerid = "5551234567"\ncorrupt = true\n'
        "[[call.step]]\nat = 12.0\nring = 1\n"
    )
    sim = run_sim(call)
    heard = first(sim.events, "callerid")
    assert (heard.number, heard.number_absent, heard.standard) == ("", "private", "v23")  # type: ignore[attr-defined]
    assert first(sim.events, "callerid_error").reason == "bad checksum"  # type: ignore[attr-defined]


def test_usb_interface_without_hook_sense_follows_the_audio(run_sim: RunSim) -> None:
    # The phone beside the box is picked up, the parties speak, the far end hangs up and the
    # exchange plays reorder. No hook edges reach the daemon: it decides from the audio.
    call = (
        "[[call]]\n[[call.step]]\nat = 1.0\noff_hook = true\n[[call.step]]\nwait = 0.3\n"
        '[[call.step]]\nsay = "caller"\n[[call.step]]\nsay = "office"\n'
        "[[call.step]]\ntone = [480, 620]\nseconds = 0.25\n[[call.step]]\nwait = 0.25\n"
        "[[call.step]]\ntone = [480, 620]\nseconds = 0.25\n[[call.step]]\nwait = 0.25\n"
        "[[call.step]]\ntone = [480, 620]\nseconds = 0.25\n[[call.step]]\nwait = 2.0\n"
        "[[call.step]]\non_hook = true\n"
    )
    sim = run_sim(call, config='[[line]]\nconsent = "one-party"\nhook_source = "audio"\n')
    assert names(sim.events)[:2] == ["answered", "recording_started"]
    answered = first(sim.events, "answered").t
    assert answered == pytest.approx(1.3, abs=0.1)  # when the first words came
    assert "tone" in names(sim.events) and "hung_up" in names(sim.events)
    kept = recording(sim).samples
    # from the first words (the recording starts with the first loud frame) ...
    offset, snr = find(kept, clip("caller")[RATE // 10 :])
    assert (offset < RATE // 10, snr > 30) == (True, True)
    assert find(kept, clip("office"))[1] > 30
    # ... to the reorder tone, not to the late on_hook of the script
    assert len(kept) / RATE == pytest.approx(7.1 + 5.3, abs=0.2)


@pytest.mark.parametrize("connected", [False, True])
def test_status_led_shows_an_uplink_cut_off_for_a_minute(tmp_path: Path, connected: bool) -> None:
    import threading

    from linerec.daemon.backends import open_sim_backend
    from linerec.daemon.service import UPLINK_GRACE, Daemon
    from linerec.daemon.simulate import default_config, demo_keys
    from linerec.hardware.leds import Show
    from linerec.sim.callfile import load_call_file
    from linerec.store import keys as keyfiles
    from linerec.store.ring import RingStore

    idle = tmp_path / "idle.toml"
    idle.write_text(f"[[call]]\n[[call.step]]\nwait = {UPLINK_GRACE + 10}\n")
    config = default_config(["line1"], tmp_path / "ring", {"line1": "one-party"})
    config, backend = open_sim_backend(config, load_call_file(idle), speed=0)
    _private, public = demo_keys(tmp_path / "ring")
    store = RingStore(
        config.store.dir,
        recipients=[keyfiles.load_public(public)],
        identity=keyfiles.load_or_create_identity(tmp_path / "id.key"),
    )
    events: list[object] = []
    # The daemon's clock is the simulated line's: a minute of audio is a minute for it.
    daemon = Daemon(
        config,
        backend,
        store,
        emit=events.append,
        monotonic=backend.clock,
        uplink_connected=lambda: connected,
    )
    daemon.start()
    daemon.run(threading.Event(), until=backend.script_end("line1"))
    shown = daemon._status_show()
    daemon.shutdown()
    faults = [e for e in events if getattr(e, "name", "") == "fault"]
    if connected:
        assert faults == [] and shown is Show.IDLE
    else:
        assert [(f.kind, round(f.t)) for f in faults] == [("uplink", round(UPLINK_GRACE))]  # type: ignore[attr-defined]
        assert "not connected" in faults[0].message  # type: ignore[attr-defined]
        assert shown is Show.FAULT_UPLINK


def test_four_simulated_lines_get_pins_of_their_own(tmp_path: Path) -> None:
    from linerec.daemon.simulate import default_config

    config = default_config(["line1", "line2", "line3", "line4"], tmp_path)
    pins = [(line.pins.hook, line.pins.ring, line.pins.led) for line in config.lines]
    assert len({pin for trio in pins for pin in trio}) == 12
    assert config.lines[3].pins.button is None  # the box has buttons for its own lines only
