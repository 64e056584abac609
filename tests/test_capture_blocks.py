"""A quiet line's capture on a sound card: one wait for a block of periods, then the periods
read from the device's buffer in one go, each stamped with the time it was captured; a pin
edge (`wake`) ends the wait at once with what has been captured so far.

Through the real ALSA library (the `file` plugin reading a raw file whose samples count up, so
each tells where it came from). What a card adds, periods that arrive on its own clock and
wait in its buffer, is modelled at the PCM boundary (`avail()` and a blocking `read()` as
pyalsaaudio answers them), and the capture's wait on that same injected clock.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from linerec.codec import RATE
from linerec.hardware.audio import AlsaCapture, Wakeup
from linerec.hardware.pcm import FRAME_SAMPLES, AudioSettings

PERIOD = FRAME_SAMPLES / RATE
START = 50.0


class CardPcm:
    """The real PCM, read as a card delivers it: period n is there from START + (n+1)
    periods on the injected clock; a read of one not yet captured waits for it."""

    def __init__(self, pcm: Any, clock: list[float]) -> None:
        self._pcm = pcm
        self._clock = clock
        self.reads = 0

    def _captured(self) -> int:
        return int((self._clock[0] - START) / PERIOD + 1e-9)

    def avail(self) -> int:
        return (self._captured() - self.reads) * FRAME_SAMPLES

    def read(self) -> tuple[int, bytes]:
        if self._captured() <= self.reads:  # blocks until the period is in
            self._clock[0] = START + (self.reads + 1) * PERIOD
        self.reads += 1
        return self._pcm.read()  # type: ignore[no-any-return]

    def close(self) -> None:
        self._pcm.close()


class ClockedWait:
    """The capture's wait for a block, on the injected clock; `set` (a pin edge) ends it."""

    def __init__(self, clock: list[float]) -> None:
        self._clock = clock
        self.woken = False
        self.waits: list[float] = []

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        if self.woken:
            return True
        self._clock[0] += timeout
        return False

    def set(self) -> None:
        self.woken = True

    def clear(self) -> None:
        self.woken = False


@pytest.fixture
def card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[AlsaCapture, list[float]]:
    ramp = np.arange(4 * RATE, dtype=np.int16)
    (tmp_path / "ramp.raw").write_bytes(ramp.astype("<i2").tobytes())
    config = tmp_path / "asound.conf"
    config.write_text(
        'pcm.ramp {\n  type file\n  slave.pcm { type null }\n  file "/dev/null"\n'
        f'  infile "{tmp_path / "ramp.raw"}"\n  format "raw"\n}}\n'
    )
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(config))
    settings = AudioSettings(capture_device="ramp", playback_device="ramp", where="line[0]")
    clock = [START]
    capture = AlsaCapture(settings, clock=lambda: clock[0])
    capture._pcm = CardPcm(capture._pcm, clock)
    capture._woken = ClockedWait(clock)  # type: ignore[assignment]
    return capture, clock


def test_a_block_is_one_wait_and_each_period_keeps_its_own_time(
    card: tuple[AlsaCapture, list[float]],
) -> None:
    capture, clock = card
    try:
        first = capture.read_frames(5)
        second = capture.read_frames(5)
    finally:
        capture.close()
    frames = first + second
    assert [len(first), len(second)] == [5, 5]
    assert capture._woken.waits == [pytest.approx(5 * PERIOD)] * 2  # type: ignore[attr-defined]
    assert [int(f.samples[0]) for f in frames] == [n * FRAME_SAMPLES for n in range(10)]
    # Stamped when captured, not when read: the block's periods were read at its end.
    assert [f.t for f in frames] == pytest.approx([START + n * PERIOD for n in range(10)])
    assert clock[0] == pytest.approx(START + 10 * PERIOD)


def test_a_pin_edge_ends_the_wait_with_what_is_captured_so_far(
    card: tuple[AlsaCapture, list[float]],
) -> None:
    capture, clock = card
    try:
        capture.read_frames(5)
        clock[0] += 2 * PERIOD  # two more periods captured, then an edge
        capture.wake()
        frames = capture.read_frames(5)
        after = capture.read_frames(1)  # the line is urgent now: period by period
    finally:
        capture.close()
    assert [int(f.samples[0]) for f in frames] == [5 * FRAME_SAMPLES, 6 * FRAME_SAMPLES]
    assert [f.t for f in frames] == pytest.approx([START + 5 * PERIOD, START + 6 * PERIOD])
    assert [int(f.samples[0]) for f in after] == [7 * FRAME_SAMPLES]
    assert after[0].t == pytest.approx(START + 7 * PERIOD)


def test_the_periods_of_a_block_are_stamped_back_to_back_however_long_each_read_takes(
    card: tuple[AlsaCapture, list[float]],
) -> None:
    """Read from the buffer, a block's periods were captured one after the other: a slow read
    (a busy Pi) must not push the later ones' times apart, or the main loop would see a gap
    in the audio where there is none (and take the block frame by frame)."""
    capture, clock = card
    pcm = capture._pcm
    read = pcm.read

    def slow_read() -> tuple[int, bytes]:
        clock[0] += 0.0003  # 300 µs a read
        return read()  # type: ignore[no-any-return]

    pcm.read = slow_read  # type: ignore[method-assign]
    try:
        capture.read_frames(5)
        frames = capture.read_frames(5)
    finally:
        capture.close()
    assert [int(f.samples[0]) for f in frames] == [n * FRAME_SAMPLES for n in range(5, 10)]
    steps = np.diff([f.t for f in frames])
    assert np.all(np.abs(steps - PERIOD) < 1e-9)
    # The first of them stamped by what was still buffered behind it, as before.
    assert frames[0].t == pytest.approx(START + 5 * PERIOD, abs=0.002)


def test_a_wake_up_given_before_the_wait_ends_it_at_once_and_is_used_up() -> None:
    wakeup = Wakeup()
    assert not wakeup.wait(0)  # nothing given
    wakeup.set()
    wakeup.set()  # twice is once
    assert wakeup.wait(0)
    assert not wakeup.wait(0)  # used up by the wait
    wakeup.set()
    wakeup.clear()
    assert not wakeup.wait(0)
    # From another thread, during the wait (bounded: it must not need the timeout).
    giver = threading.Timer(0.01, wakeup.set)
    giver.start()
    assert wakeup.wait(30.0)
    giver.join()


def test_a_block_asks_for_no_more_than_half_the_buffer_the_device_gave(
    card: tuple[AlsaCapture, list[float]],
) -> None:
    """The daemon's 200 ms block waits in the card's buffer with room to spare; a block as
    long as the buffer would overrun it at the first late wake-up."""
    capture, _clock = card
    try:
        block = capture.read_frames(10)  # the daemon's quiet block
        capped = capture.read_frames(40)
    finally:
        capture.close()
    assert AlsaCapture.PERIODS * PERIOD >= 0.6  # 640 ms at 20 ms periods
    assert [len(block), len(capped)] == [10, AlsaCapture.PERIODS // 2]
    assert capture._woken.waits == [  # type: ignore[attr-defined]
        pytest.approx(10 * PERIOD),
        pytest.approx(AlsaCapture.PERIODS // 2 * PERIOD),
    ]
    assert [int(f.samples[0]) for f in block + capped] == [
        n * FRAME_SAMPLES for n in range(10 + AlsaCapture.PERIODS // 2)
    ]
