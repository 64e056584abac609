"""A capture overrun as pyalsaaudio reports it: counted, and the lost audio a marked gap.

The capture reads through the real ALSA library (the `file` plugin reading a raw file). The
overrun itself is made at the PCM boundary: no plugin of the ALSA library overruns on its own,
so one read is answered as pyalsaaudio answers it after an overrun (it has already re-prepared
the device and returns -EPIPE with no data), after the program stalled and the device lost
what came meanwhile. The daemon's handling of `Frame.lost` (the `audio_gap` event and the gap
in the recording's metadata) is tested in test_simulate.py.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from linerec.codec import RATE
from linerec.hardware.audio import AlsaCapture
from linerec.hardware.pcm import FRAME_SAMPLES, AudioSettings, Frame

PERIOD = FRAME_SAMPLES / RATE


class OverrunningPcm:
    """The real ALSA PCM, a clock that runs one period per read, and one stall: before read
    number `at`, the program stalls for `stalled` periods, the device loses them, and the read
    reports the overrun."""

    def __init__(self, pcm: Any, clock: list[float], at: int, stalled: int) -> None:
        self._pcm = pcm
        self._clock = clock
        self._at = at
        self._stalled = stalled
        self.reads = 0

    def read(self) -> tuple[int, bytes]:
        self.reads += 1
        if self.reads == self._at:
            for _ in range(self._stalled):  # captured while nobody read: gone
                self._pcm.read()
            self._clock[0] += self._stalled * PERIOD
            return -errno.EPIPE, b""
        length, data = self._pcm.read()
        self._clock[0] += PERIOD
        return length, data

    def close(self) -> None:
        self._pcm.close()


@pytest.fixture
def ramp_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AudioSettings:
    """An ALSA capture device whose samples count up from 0: each tells where it came from."""
    ramp = np.arange(4 * RATE, dtype=np.int16)
    (tmp_path / "ramp.raw").write_bytes(ramp.astype("<i2").tobytes())
    config = tmp_path / "asound.conf"
    config.write_text(
        'pcm.ramp {\n  type file\n  slave.pcm { type null }\n  file "/dev/null"\n'
        f'  infile "{tmp_path / "ramp.raw"}"\n  format "raw"\n}}\n'
    )
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(config))
    return AudioSettings(capture_device="ramp", playback_device="ramp", where="line[0]")


def test_an_overrun_is_counted_and_the_lost_audio_reported_on_the_next_frame(
    ramp_device: AudioSettings,
) -> None:
    clock = [100.0]
    capture = AlsaCapture(ramp_device, clock=lambda: clock[0])
    pcm = OverrunningPcm(capture._pcm, clock, at=6, stalled=10)
    capture._pcm = pcm
    try:
        frames: list[Frame] = [capture.read() for _ in range(10)]
    finally:
        capture.close()
    assert capture.overruns == 1
    assert [f.lost for f in frames[:5]] == [0] * 5
    first = [int(f.samples[0]) for f in frames]
    assert first[:5] == [n * FRAME_SAMPLES for n in range(5)]  # the device's own samples
    # After the overrun: audio resumes where the device picked up again, ten periods on ...
    assert first[5:] == [n * FRAME_SAMPLES for n in range(15, 20)]
    # ... and the frame says how much was lost: the ten periods the timeline jumps over.
    assert frames[5].lost == 10 * FRAME_SAMPLES
    assert [f.lost for f in frames[6:]] == [0] * 4
    # The timeline is kept: the frame after the gap is stamped after it.
    assert frames[5].t - frames[4].t == pytest.approx(11 * PERIOD, abs=PERIOD / 2)


def test_without_a_wall_clock_an_overrun_is_still_counted(ramp_device: AudioSettings) -> None:
    """On the sample clock (the simulator's: clock=None) there is nothing to measure a stall
    by, so the frame cannot say what was lost; the overrun is counted all the same. The real
    board's capture always has the wall clock (hardware/backend.py)."""
    clock = [0.0]
    capture = AlsaCapture(ramp_device, clock=None)
    capture._pcm = OverrunningPcm(capture._pcm, clock, at=3, stalled=4)
    try:
        frames = [capture.read() for _ in range(4)]
    finally:
        capture.close()
    assert capture.overruns == 1
    assert [int(f.samples[0]) for f in frames] == [0, 160, 960, 1120]
