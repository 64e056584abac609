"""The main loop sleeps until something is due: the next block of audio, an LED's next change,
the watchdog, a capture that could count as stalled. A quiet line hands over a block each
200 ms, and the loop must not wake between blocks as well to look at the LEDs and the
watchdog (on a Pi those wake-ups cost as much CPU as the blocks themselves).

Paced in real time on the simulated line, as a card paces it; what is counted is how often
the loop woke with nothing to do, not how long anything took. Stall detection and the
watchdog pings while capture is alive are held by test_daemon.py and test_opt_out_stall.py.
"""

from __future__ import annotations

import threading
from pathlib import Path

from linerec.daemon.backends import open_sim_backend
from linerec.daemon.service import Daemon
from linerec.daemon.simulate import default_config, demo_keys
from linerec.daemon.storage import open_store
from linerec.sim.callfile import load_call_file

CALL = (
    "[[call]]\n[[call.step]]\nat = 0.2\noff_hook = true\n"
    '[[call.step]]\nsay = "caller"\nseconds = 2.5\n[[call.step]]\non_hook = true\n'
)


def test_a_quiet_line_wakes_the_main_loop_only_for_its_blocks_and_the_leds(
    tmp_path: Path,
) -> None:
    call = tmp_path / "call.toml"
    call.write_text(CALL)
    config = default_config(["line1"], tmp_path / "ring", {"line1": "one-party"})
    config, backend = open_sim_backend(config, load_call_file(call), speed=1.0, echo=False)
    _private, public = demo_keys(tmp_path / "ring")
    events: list[object] = []
    store = open_store(config, emit=events.append, clock=backend.clock, recipients=[public])
    daemon = Daemon(config, backend, store, emit=events.append)
    queue_get = daemon._queue.get
    woke: list[bool] = []  # per wake-up of the main loop: whether an item came

    def get(timeout: float) -> object:
        item = queue_get(timeout)
        woke.append(item is not None)
        return item

    daemon._queue.get = get  # type: ignore[method-assign]
    daemon.start()
    end = backend.script_end("line1") + 0.5
    daemon.run(threading.Event(), until=end)
    daemon.shutdown()

    names = [getattr(e, "name", "") for e in events]
    assert "recording_sealed" in names, names
    items = woke.count(True)
    idle = woke.count(False)
    # About 20 blocks over 3.5 s of line, and periods one by one while the hook settles
    # (some 30 items; 47 with 100 ms blocks). Between them the status LED's heartbeat (lit
    # 0.1 s every 3 s) is due twice; a few more where a loaded machine delays a block.
    assert items >= 10, woke  # fewer where a busy loop took several from the queue at once
    assert idle <= 8, (idle, items)
    # The LEDs still change when their patterns say. The simulated line's clock is the end
    # of the last block read, up to a block (200 ms) ahead of the moment the loop looks.
    status = backend.pins.outputs[config.hardware.status_led].history
    assert [lit for _, lit in status[:2]] == [True, False], status
    assert status[1][0] < 0.45, status  # the heartbeat's 0.1 s flash
