"""Audio capture and playback through ALSA (pyalsaaudio).

The rest of the program sees one thing: 20 ms frames of 8 kHz mono int16. Devices that only
offer 16, 44.1 or 48 kHz (most USB sound cards) are resampled here, and a stereo device gives
the configured channel. An overrun is counted and the samples it lost are reported on the next
frame (`Frame.lost`), so the recording can mark the gap instead of closing it up silently.
"""

from __future__ import annotations

import contextlib
import errno
import threading
import time
from collections.abc import Callable

import alsaaudio
import numpy as np

from linerec.codec import RATE, Samples
from linerec.errors import HardwareError
from linerec.hardware.pcm import (
    DEVICE_RATES,
    FRAME_SAMPLES,
    AudioCapture,
    AudioPlayback,
    AudioSettings,
    Frame,
)
from linerec.resample import Resampler, to_int16


def _open_pcm(
    kind: int, device: str, settings: AudioSettings, key: str, periods: int = 4
) -> alsaaudio.PCM:
    period = settings.rate * settings.period_ms // 1000
    try:
        pcm = alsaaudio.PCM(
            kind,
            alsaaudio.PCM_NORMAL,
            device=device,
            channels=settings.channels,
            rate=settings.rate,
            format=alsaaudio.PCM_FORMAT_S16_LE,
            periodsize=period,
            periods=periods,
        )
    except alsaaudio.ALSAAudioError as exc:
        raise HardwareError(
            f"{settings.where}.{key}: cannot open ALSA device {device!r}: {exc}"
        ) from exc
    info = pcm.info()
    if info["rate"] != settings.rate or info["channels"] != settings.channels:
        pcm.close()
        raise HardwareError(
            f"{settings.where}.rate: ALSA device {device!r} gives {info['rate']} Hz with "
            f"{info['channels']} channel(s), not the configured {settings.rate} Hz with "
            f"{settings.channels} (try one of {', '.join(map(str, DEVICE_RATES))}, "
            "or a 'plughw:' device)"
        )
    return pcm


class Wakeup:
    """What a capture waiting for its block is woken by (a pin edge, a stop): an Event,
    made of one lock, so that a timed wait is one system call. An Event's runs a Condition
    in Python, some 5 µs more of CPU each time here, once per block on every line."""

    def __init__(self) -> None:
        self._given = threading.Lock()
        self._given.acquire()  # held while not set

    def wait(self, timeout: float) -> bool:
        """Whether it is set, waiting up to `timeout` seconds for that; waiting clears it."""
        return self._given.acquire(timeout=timeout)

    def set(self) -> None:
        with contextlib.suppress(RuntimeError):  # set already
            self._given.release()

    def clear(self) -> None:
        self._given.acquire(blocking=False)


class AlsaCapture(AudioCapture):
    """Reads periods from an ALSA capture device and delivers 8 kHz frames.

    `clock` stamps each frame with the time it was captured (the real backend's monotonic
    clock); with no clock, frames are stamped by counting samples from zero (the simulated
    line, whose pin edges are scripted on that same sample clock).

    With a clock, `read_frames` sleeps until a block of periods has been captured and reads
    them from the device's buffer (32 periods, 640 ms at 20 ms) in one go, at most half the
    buffer the device gave (so that a late wake-up has room to spare); the first period
    read from the buffer is stamped by what is still buffered behind it, and those after it
    back to back with it (they were captured so, whatever the reads in between took).
    """

    PERIODS = 32  # device buffer, in periods: a block of 200 ms waits in it with room to spare

    def __init__(
        self, settings: AudioSettings, clock: Callable[[], float] | None = time.monotonic
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._pcm = _open_pcm(
            alsaaudio.PCM_CAPTURE,
            settings.capture_device,
            settings,
            "capture_device",
            periods=self.PERIODS,
        )
        self._resampler = Resampler(settings.rate, RATE)
        buffer = int(self._pcm.info()["buffer_size"]) * RATE // settings.rate  # as granted
        self._block_max = max(buffer // FRAME_SAMPLES // 2, 1)
        self._woken = Wakeup()
        self._draining = False  # reading periods already captured: stamp them by the buffer
        self._next_t: float | None = None  # while draining: when the next period began
        self._position = 0  # 8 kHz samples read or lost so far
        self._last_t: float | None = None
        # Periods of 10 or 40 ms are cut into 20 ms frames here.
        self._pending = np.zeros(0, dtype=np.int16)
        self._pending_t = 0.0
        self._lost = 0
        self.overruns = 0

    def read_frames(self, count: int) -> list[Frame]:
        count = min(count, self._block_max)
        if self._clock is None or count <= 1:
            return [self.read()]
        # One sleep until the block is captured; `wake` cuts it short.
        ready = (len(self._pending) + self._buffered()) // FRAME_SAMPLES
        if ready < count and self._woken.wait((count - ready) * FRAME_SAMPLES / RATE):
            self._woken.clear()
        self._draining = True
        try:
            frames = [self.read()]
            # What else is captured, looked at once: each period of it is there to be read.
            more = (len(self._pending) + self._buffered()) // FRAME_SAMPLES
            frames += [self.read() for _ in range(min(count - 1, more))]
        finally:
            self._draining = False
            self._next_t = None
        return frames

    def wake(self) -> None:
        self._woken.set()

    def _buffered(self) -> int:
        """Captured and not read yet, in 8 kHz samples."""
        return max(int(self._pcm.avail()), 0) * RATE // self._settings.rate

    def interrupt(self) -> None:
        self._woken.set()

    def read(self) -> Frame:
        while len(self._pending) < FRAME_SAMPLES:
            self._read_period()
        if len(self._pending) == FRAME_SAMPLES:
            samples, self._pending = self._pending, self._pending[:0]
        else:
            samples, self._pending = self._pending[:FRAME_SAMPLES], self._pending[FRAME_SAMPLES:]
        t = self._pending_t
        self._pending_t += FRAME_SAMPLES / RATE
        lost, self._lost = self._lost, 0
        return Frame(samples=samples, t=t, lost=lost)

    def _read_period(self) -> None:
        lost = 0
        while True:
            length, data = self._pcm.read()
            if length > 0:
                break
            if length == -errno.EPIPE:  # overrun; pyalsaaudio has already re-prepared
                self.overruns += 1
                lost += self._estimate_lost()
            elif length < 0:
                raise HardwareError(
                    f"{self._settings.where}.capture_device: read failed: "
                    f"{errno.errorcode.get(-length, length)}"
                )
        raw = np.frombuffer(data, dtype="<i2")
        if self._settings.channels > 1:
            raw = raw[self._settings.channel :: self._settings.channels]
        samples = raw if self._resampler.passthrough else to_int16(self._resampler.process(raw))
        self._position += lost
        self._lost += lost
        # Sample clock for the simulator; on a real device the read time minus this period and
        # what was captured after it (still in the buffer when the periods are read in a block).
        if self._clock is None:
            t = self._position / RATE
        elif self._next_t is not None and not lost:
            t = self._next_t
        else:
            behind = self._buffered() if self._draining else 0
            t = self._clock() - (len(samples) + behind) / RATE
        if self._draining:
            self._next_t = t + len(samples) / RATE
        self._position += len(samples)
        self._last_t = t
        if len(self._pending):
            self._pending = np.concatenate((self._pending, samples))
        else:
            self._pending, self._pending_t = samples, t

    def _estimate_lost(self) -> int:
        # The device does not say how much it dropped; the clock does, to a period or so.
        # The last period read began at _last_t; everything after it until now is gone (the
        # device, re-prepared, captures again from now).
        if self._clock is None or self._last_t is None:
            return 0
        period = self._settings.period_ms / 1000
        missing = self._clock() - (self._last_t + period)
        step = round(period * RATE)
        return max(round(missing * RATE / step) * step, 0)

    def close(self) -> None:
        self._pcm.close()


class AlsaPlayback(AudioPlayback):
    """Writes 8 kHz frames to an ALSA playback device at its own rate and channel count.

    While a line is quiet the daemon writes its (silent) output a 200 ms block at a time, so
    the buffer holds several blocks and such a write never waits; before anything sounds again
    the daemon has the silence queued meanwhile dropped (`restart`). `restartable=False` (the
    simulated line's file device, which has already written what it was given, and keeps
    the line output sample-aligned with capture) leaves that out."""

    PERIODS = 32  # 640 ms of buffer at 20 ms periods: a block of 200 ms fits with room

    def __init__(self, settings: AudioSettings, *, restartable: bool = True) -> None:
        self._settings = settings
        self._pcm = _open_pcm(
            alsaaudio.PCM_PLAYBACK,
            settings.playback_device,
            settings,
            "playback_device",
            periods=self.PERIODS,
        )
        self._resampler = Resampler(RATE, settings.rate)
        self._restartable = restartable
        self._buffer = int(self._pcm.info()["buffer_size"])  # device frames, as granted
        self.underruns = 0
        self._prefill()

    def _prefill(self) -> None:
        # One period of silence ahead of the first frame: the line output then runs one period
        # behind capture, which is the whole latency from a decision to the line.
        self.write(np.zeros(FRAME_SAMPLES, dtype=np.int16))

    def restart(self) -> None:
        if self._restartable:
            self._pcm.drop()  # the next write prepares the device again (pyalsaaudio)
            self._prefill()

    def write(self, samples: Samples) -> None:
        out = samples if self._resampler.passthrough else to_int16(self._resampler.process(samples))
        if self._restartable and len(samples) > FRAME_SAMPLES and not samples.any():
            # A block of silence, from a quiet line: keep a block queued ahead, or the device
            # runs dry before the next one comes (silence either way; this spares the
            # underruns). Never before sound: that would come late.
            queued = max(self._buffer - self._pcm.avail(), 0)
            pad = min(len(out) - queued, self._buffer - queued - len(out))  # never to wait
            if pad > 0:
                out = np.concatenate((np.zeros(pad, dtype=out.dtype), out))
        if self._settings.channels > 1:
            out = np.repeat(out, self._settings.channels)
        written = self._pcm.write(out.astype("<i2", copy=False).tobytes())
        if written < 0:
            self.underruns += 1
            self._pcm.write(out.astype("<i2", copy=False).tobytes())

    def close(self) -> None:
        self._pcm.close()
