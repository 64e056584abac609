"""Frames handled together (a backlog, capture running ahead of the main loop, or periods a
capture thread hands over in blocks while nothing on the line is urgent) keep and silence
exactly what frames handled one by one do: the same recording sample for sample, the same
events at the same times, the same line output."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from conftest import recording
from linerec.codec import Samples
from linerec.daemon import service
from linerec.daemon.line import LinePipeline
from linerec.daemon.simulate import Simulation, simulate
from linerec.hardware.pcm import Frame

CALL = """
[[call]]
consent = "CONSENT"
[[call.step]]
ring = 1
[[call.step]]
wait = 0.5
[[call.step]]
off_hook = true
[[call.step]]
say = "office"
[[call.step]]
wait = 1.0
[[call.step]]
say = "caller"
[[call.step]]
dtmf = "*1"
[[call.step]]
say = "office"
[[call.step]]
dtmf = "*2"
[[call.step]]
say = "caller"
[[call.step]]
dtmf = "4"
[[call.step]]
wait = 0.3
[[call.step]]
on_hook = true
[[call.step]]
wait = 3.0
"""


def _run(
    tmp_path: Path, name: str, consent: str
) -> tuple[Simulation, list[tuple[str, float]], bytes]:
    call = tmp_path / f"{name}.toml"
    call.write_text(CALL.replace("CONSENT", consent))
    # Without the echo the capture thread runs ahead and frames queue up for the main loop.
    sim = simulate([call], config=None, store_dir=tmp_path / name, emit=lambda e: None, echo=False)
    events = [(e.name, round(e.t, 4)) for e in sim.events if e.name != "recording_sealed"]
    return sim, events, sim.backend.line_out("line1").read_bytes()


# notice+beep: the line is urgent through the call (a beep may start any period); one-party:
# between the hook edges the capture threads hand over 100 ms blocks.
@pytest.mark.parametrize("consent", ["notice+beep", "one-party"])
def test_frames_taken_together_keep_and_silence_what_frames_one_by_one_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, consent: str
) -> None:
    handed: list[int] = []
    frame_run = LinePipeline.frame_run

    def counting(self: LinePipeline, frames: Sequence[Frame]) -> Samples:
        handed.append(len(frames))
        return frame_run(self, frames)

    monkeypatch.setattr(LinePipeline, "frame_run", counting)
    batched, batched_events, batched_out = _run(tmp_path, "batched", consent)
    if consent == "one-party":  # blocks were handed over, and not only at the end
        assert sum(n >= service.HANDOFF_FRAMES for n in handed) > 20
    monkeypatch.setattr(service, "BATCH_FRAMES", 1)
    monkeypatch.setattr(service, "HANDOFF_FRAMES", 1)
    handed.clear()
    single, single_events, single_out = _run(tmp_path, "single", consent)
    assert set(handed) == {1}
    assert {"recording_paused", "recording_resumed", "dtmf"} <= {n for n, _ in single_events}
    assert batched_events == single_events
    # The run stops once the script is over; how far capture had run ahead by then varies.
    common = min(len(batched_out), len(single_out))
    assert common >= 2 * 8000 * 10  # the whole call, in 16-bit samples
    assert batched_out[:common] == single_out[:common]
    kept, reference = recording(batched), recording(single)
    assert len(reference.samples) > 8000 * 5
    assert np.array_equal(kept.samples, reference.samples)
    assert kept.metadata["markers"] == reference.metadata["markers"]
