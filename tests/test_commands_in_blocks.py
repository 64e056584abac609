"""A line command (opt-out, pause, resume) takes effect at the moment it arrives, whatever the
capture thread has gathered and not yet handed over: audio before that moment is decided as
before the command, audio after it as after. (A command once took effect only for the frames
handed over after it, so the gathered ones before it started a new recording after an opt-out.)

The simulated line runs flat out without its echo, so capture runs ahead of the main loop and
hands periods over in blocks; each command is sent upon one of the main loop's events (from
another thread, as the uplink sends them), at a moment the capture thread is ahead of it."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest

from conftest import names
from linerec.call.events import CallEvent
from linerec.config import load_config
from linerec.daemon import service
from linerec.daemon.backends import open_sim_backend
from linerec.daemon.service import Daemon
from linerec.daemon.simulate import demo_keys
from linerec.daemon.storage import open_store
from linerec.sim.callfile import load_call_file
from linerec.uplink.commands import Command

HANG_UP = 0.5 + 3 * (7.1 + 5.3)  # the call's speech clips: caller 7.1 s, office 5.3 s


def _run(tmp_path: Path, commands: dict[str, str]) -> tuple[list[CallEvent], Path]:
    """`commands`: the event name upon which each command (action) is sent."""
    config_path = tmp_path / "linerec.toml"
    config_path.write_text(
        f'[store]\ndir = "{tmp_path / "ring"}"\n[[line]]\nconsent = "one-party"\n'
    )
    callfile = tmp_path / "call.toml"
    callfile.write_text(
        "[[call]]\n[[call.step]]\nat = 0.5\noff_hook = true\n"
        + '[[call.step]]\nsay = "caller"\n[[call.step]]\nsay = "office"\n' * 3
        + "[[call.step]]\non_hook = true\n"
    )
    config, backend = open_sim_backend(
        load_config(config_path), load_call_file(callfile), speed=0, echo=False
    )
    _private, public = demo_keys(tmp_path / "ring")
    events: list[CallEvent] = []
    daemons: list[Daemon] = []
    senders: list[threading.Thread] = []

    def emit(event: CallEvent) -> None:
        events.append(event)
        if event.name in commands:  # from another thread, as the uplink's commands come
            command = Command(
                counter=len(events), action=commands[event.name], arguments={"line": "line1"}
            )
            sender = threading.Thread(target=daemons[0].submit_command, args=(command,))
            sender.start()
            senders.append(sender)

    store = open_store(config, emit=emit, clock=backend.clock, recipients=[public])
    daemon = Daemon(config, backend, store, emit=emit)
    daemons.append(daemon)
    daemon.start()
    daemon.run(threading.Event(), until=backend.script_end("line1") + 1.5)
    daemon.shutdown()
    for sender in senders:
        sender.join()
    return events, tmp_path / "ring"


def test_an_opt_out_by_command_keeps_nothing_of_the_call(tmp_path: Path) -> None:
    events, ring = _run(tmp_path, {"recording_started": "opt_out"})
    assert names(events).count("opted_out") == 1
    assert "command_done" in names(events)
    assert "recording_sealed" not in names(events)  # no new recording after the opt-out
    assert not list(ring.glob("*.lrec"))


def test_a_pause_and_resume_by_command_act_where_they_came(tmp_path: Path) -> None:
    events, _ring = _run(tmp_path, {"recording_started": "pause", "recording_paused": "resume"})
    paused = next(e for e in events if e.name == "recording_paused")
    resumed = next(e for e in events if e.name == "recording_resumed")
    assert [e.t for e in events if e.name == "command_done"] == [paused.t, resumed.t]
    assert 0.5 < paused.t < resumed.t < HANG_UP
    (sealed,) = [e for e in events if e.name == "recording_sealed"]
    # Kept: off hook to the pause, and the resume to the hang-up.
    kept = (paused.t - 0.5) + (HANG_UP - resumed.t)
    assert abs(sealed.duration - kept) < 0.002  # type: ignore[attr-defined]


def test_a_capture_held_up_by_a_full_queue_never_holds_up_the_main_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The main loop falls behind (a busy machine), the queue fills and the capture threads
    wait on it so long that their lines look stalled; the main loop then takes what they had
    gathered. (A capture thread once waited on the full queue holding the lock the main loop
    takes there: both waited for ever; the bench's four paced lines hung so.)"""
    monkeypatch.setattr(service, "QUEUE_FRAMES", 1)
    config_path = tmp_path / "linerec.toml"
    config_path.write_text(f'[store]\ndir = "{tmp_path / "ring"}"\n[[line]]\n[[line]]\n')
    callfile = tmp_path / "call.toml"
    callfile.write_text(
        "".join(
            f'[[call]]\nline = "{line}"\nconsent = "one-party"\n[[call.step]]\nat = 0.5\n'
            'off_hook = true\n[[call.step]]\nsay = "caller"\n[[call.step]]\non_hook = true\n'
            for line in ("line1", "line2")
        )
    )
    config, backend = open_sim_backend(
        load_config(config_path), load_call_file(callfile), speed=0, echo=False
    )
    _private, public = demo_keys(tmp_path / "ring")
    events: list[CallEvent] = []
    store = open_store(config, emit=events.append, clock=backend.clock, recipients=[public])
    ticks = itertools.count(step=1.0)  # a second between any two looks at the clock: stalled
    daemon = Daemon(config, backend, store, emit=events.append, monotonic=lambda: next(ticks))
    daemon.start()
    runner = threading.Thread(
        target=lambda: (
            daemon.run(threading.Event(), until=backend.script_end("line1") + 1.5),
            daemon.shutdown(),
        ),
        daemon=True,
    )
    runner.start()
    runner.join(timeout=60)
    assert not runner.is_alive(), "the main loop waits on a capture thread"
    assert "fault" in names(events)  # the stall is reported


def test_a_call_hung_up_while_paused_keeps_nothing_after_the_pause(tmp_path: Path) -> None:
    events, _ring = _run(tmp_path, {"recording_started": "pause"})
    paused = next(e for e in events if e.name == "recording_paused")
    (sealed,) = [e for e in events if e.name == "recording_sealed"]
    assert abs(sealed.duration - (paused.t - 0.5)) < 0.002  # type: ignore[attr-defined]
