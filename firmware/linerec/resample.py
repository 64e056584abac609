"""Streaming rational resampler (polyphase FIR), numpy only.

The line is band-limited to 300-3400 Hz, so a Kaiser-windowed sinc with its cutoff at 3.76 kHz
and about 60 dB of stop-band is plenty. Each call handles one period; the filter history
carries across calls, so a stream resampled period by period equals the whole resampled at once.
"""

from __future__ import annotations

from math import ceil, gcd

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_STOPBAND_DB = 60.0
_TRANSITION_HZ = 600.0


class Resampler:
    """Converts a stream of samples from `rate_in` to `rate_out`."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        if rate_in <= 0 or rate_out <= 0:
            raise ValueError(f"rates must be positive (got {rate_in} -> {rate_out})")
        common = gcd(rate_in, rate_out)
        self.up = rate_out // common
        self.down = rate_in // common
        self.rate_in = rate_in
        self.rate_out = rate_out
        upsampled_rate = rate_in * self.up
        cutoff = 0.47 * min(rate_in, rate_out)  # 3.76 kHz when one side is 8 kHz
        beta = 0.1102 * (_STOPBAND_DB - 8.7)
        length = ceil((_STOPBAND_DB - 8.0) / (2.285 * 2 * np.pi * _TRANSITION_HZ / upsampled_rate))
        # Centre the filter on a whole sample of the slower side, so the delay through the
        # resampler is a whole number of 8 kHz samples and waveforms line up after it.
        step = upsampled_rate // min(rate_in, rate_out)
        centre = step * ceil(length / 2 / step)
        span = 2 * centre + 1
        self.taps_per_phase = max(ceil(span / self.up), 2)
        total = self.taps_per_phase * self.up
        prototype = np.zeros(total)
        n = np.arange(span) - centre
        prototype[:span] = np.sinc(2 * cutoff / upsampled_rate * n) * np.kaiser(span, beta)
        prototype *= self.up / prototype.sum()
        self.delay = centre / step  # in samples of the slower side
        # phases[p, k] = h[p + k*up]: the taps that meet input sample x[i-k] at output phase p.
        self._phases: FloatArray = prototype.reshape(self.taps_per_phase, self.up).T.copy()
        self._history: FloatArray = np.zeros(self.taps_per_phase - 1)
        self._next = 0  # upsampled index of the next output, relative to this chunk's start
        self._lags = np.arange(self.taps_per_phase)

    @property
    def passthrough(self) -> bool:
        return self.up == self.down

    def process(self, samples: npt.NDArray[np.generic]) -> FloatArray:
        """Resample one chunk; returns float samples (the caller rounds and clips)."""
        x = np.asarray(samples, dtype=np.float64)
        if self.passthrough:
            return x
        buffer = np.concatenate((self._history, x))
        limit = len(x) * self.up
        positions = np.arange(self._next, limit, self.down)
        base = positions // self.up + (self.taps_per_phase - 1)
        windows = buffer[base[:, None] - self._lags[None, :]]
        out: FloatArray = np.einsum("ij,ij->i", windows, self._phases[positions % self.up])
        self._next = (
            int(positions[-1] + self.down - limit) if len(positions) else self._next - limit
        )
        self._history = buffer[len(buffer) - (self.taps_per_phase - 1) :]
        return out


def to_int16(samples: FloatArray) -> npt.NDArray[np.int16]:
    """Round and clip float samples to int16."""
    return np.clip(np.rint(samples), -32768, 32767).astype(np.int16)
