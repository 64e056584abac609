"""The main loop sleeps until something is due: the next block of audio, an LED's next change,
the watchdog, a capture that could count as stalled. A quiet line hands over a block each
200 ms, and the loop must not wake between blocks as well to look at the LEDs and the
watchdog (on a Pi those wake-ups cost as much CPU as the blocks themselves).

Counted on an injected clock, not in real time: the loop's own decisions (how long to sleep)
are taken as they are, and the queue it sleeps on hands over a block of silence each 200 ms of
that clock, as a card would, or wakes it when the sleep it asked for runs out first. The count
of wake-ups with nothing handed over is then exact whatever the machine's load. Stall
detection and the watchdog pings while capture is alive are held by test_daemon.py and
test_opt_out_stall.py.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from linerec.codec import RATE
from linerec.daemon import service
from linerec.daemon.backends import open_sim_backend
from linerec.daemon.service import Daemon
from linerec.daemon.simulate import default_config, demo_keys
from linerec.daemon.storage import open_store
from linerec.hardware.pcm import FRAME_SAMPLES, Frame
from linerec.sim.callfile import load_call_file

BLOCK = 0.2  # seconds of audio a quiet line hands over at once
SPAN = 4.0  # seconds of quiet line the loop is watched over
LATER = "[[call]]\n[[call.step]]\nat = 60.0\noff_hook = true\n"  # after the span: a quiet line


def watched_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[tuple[float, bool]], list[tuple[float, bool]]]:
    """The main loop over SPAN seconds of a quiet line, on an injected clock: per wake-up,
    when and whether a block came; and the status LED's history (its changes, in order)."""
    call = tmp_path / "call.toml"
    call.write_text(LATER)
    config = default_config(["line1"], tmp_path / "ring", {"line1": "one-party"})
    config, backend = open_sim_backend(config, load_call_file(call), speed=1.0, echo=False)
    now = [0.0]  # one clock for the line and the loop, as on a Pi (the monotonic clock)
    monkeypatch.setattr(backend, "clock", lambda: now[0])
    _private, public = demo_keys(tmp_path / "ring")
    events: list[object] = []
    store = open_store(config, emit=events.append, clock=backend.clock, recipients=[public])
    daemon = Daemon(config, backend, store, emit=events.append, monotonic=lambda: now[0])
    # The blocks come from the queue below, on the injected clock: no capture thread.
    monkeypatch.setattr(daemon, "_capture_loop", lambda index, capture: None)
    woke: list[tuple[float, bool]] = []  # per wake-up: when, and whether a block came
    blocks = [0]
    silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    period = FRAME_SAMPLES / RATE

    def get(timeout: float) -> object:
        """Sleep `timeout` on the injected clock, or less if a block comes first."""
        assert timeout >= 0
        end = (blocks[0] + 1) * BLOCK
        if end <= now[0] + timeout:
            blocks[0] += 1
            now[0] = end
            daemon._heartbeats[0] = end
            frames = tuple(
                Frame(samples=silence, t=end - BLOCK + i * period)
                for i in range(round(BLOCK / period))
            )
            woke.append((end, True))
            return service._Captured(0, frames)
        now[0] += timeout
        woke.append((now[0], False))
        return None

    daemon.start()
    monkeypatch.setattr(daemon._queue, "get", get)
    daemon.run(threading.Event(), until=SPAN)
    looped = list(woke)  # the loop's (shutdown empties the queue without waiting)
    daemon.shutdown()
    return looped, backend.pins.outputs[config.hardware.status_led].history


def test_a_quiet_line_wakes_the_main_loop_only_for_its_blocks_and_the_leds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    woke, status = watched_loop(tmp_path, monkeypatch)
    assert [t for t, block in woke if block] == pytest.approx(
        [BLOCK * k for k in range(1, round(SPAN / BLOCK) + 1)]
    )
    # Between blocks, only where something is due: at start (the first checks and health
    # report), and where the status heartbeat (lit 0.1 s every 3 s) goes off, at 0.1 s and
    # 3.1 s (it comes on at 3.0 s with a block).
    idle = [t for t, block in woke if not block]
    assert len(idle) <= 3, woke
    # The LED changes when its pattern says, not at the next block.
    assert any(0.1 <= t < 0.1 + 0.01 for t in idle), woke
    assert [lit for _, lit in status[:2]] == [True, False], status


def test_the_count_tells_a_loop_that_wakes_every_50_ms_for_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same watch over a loop that never sleeps longer than 50 ms: it fails the bound."""
    until_due = Daemon._until_due
    monkeypatch.setattr(Daemon, "_until_due", lambda self: min(until_due(self), 0.05))
    woke, _ = watched_loop(tmp_path, monkeypatch)
    assert len([t for t, block in woke if not block]) > 3 * 10, woke
