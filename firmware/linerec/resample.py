"""Streaming rational resampler (polyphase FIR), numpy only.

The line is band-limited to 300-3400 Hz, so a Kaiser-windowed sinc with its cutoff at 3.76 kHz
and about 60 dB of stop-band is plenty. Each call handles one period; the filter history
carries across calls, so a stream resampled period by period equals the whole resampled at once.

A USB interface's 48 (or 16) kHz is a whole multiple of 8 kHz, and those ratios take a fast
path: the FIR becomes one small matrix product and a sum along its diagonals, into arrays
kept from one period to the next (a few numpy calls per period, whatever the filter length).
Other ratios (44.1 kHz) gather each output's taps.
"""

from __future__ import annotations

from math import ceil, gcd

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import as_strided, sliding_window_view

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
        self._fast: _Decimator | _Interpolator | None = None
        if self.up == 1 and self.down > 1:
            self._fast = _Decimator(prototype, self.down)
        elif self.down == 1 and self.up > 1:
            self._fast = _Interpolator(self._phases)

    @property
    def passthrough(self) -> bool:
        return self.up == self.down

    def process(self, samples: npt.NDArray[np.generic]) -> FloatArray:
        """Resample one chunk; returns float samples (the caller rounds and clips)."""
        x = np.asarray(samples, dtype=np.float64)
        if self.passthrough:
            return x
        if self._fast is not None:
            return self._fast.process(x)
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


class _Decimator:
    """FIR and keep every `down`-th output: y[m] = sum_j h[j] x[m*down - j].

    The input, `down` samples to a row, times the filter cut into rows of `down` taps gives
    P[r, k] = row r . taps row k; y[m] is the sum of P's m-th diagonal, P[m + k, k]."""

    def __init__(self, prototype: FloatArray, down: int) -> None:
        rows = -(-len(prototype) // down)
        taps = np.zeros(rows * down)
        taps[: len(prototype)] = prototype
        self.down, self.rows = down, rows
        self._taps_t = np.ascontiguousarray(taps[::-1].reshape(rows, down).T)  # (down, rows)
        self._history = rows * down - 1  # samples kept ahead of each chunk
        self._buffer = np.zeros(self._history + 64 * down)
        self._products = np.zeros((0, rows))

    def process(self, x: FloatArray) -> FloatArray:
        held, down, rows = self._history, self.down, self.rows
        if len(self._buffer) < held + len(x):
            self._buffer = np.concatenate((self._buffer[:held], np.zeros(len(x))))
        self._buffer[held : held + len(x)] = x
        total = (held + len(x)) // down
        count = total - rows + 1  # outputs this chunk completes
        if len(self._products) != total:
            self._products = np.empty((total, rows))
        grouped = self._buffer[: total * down].reshape(total, down)
        np.matmul(grouped, self._taps_t, out=self._products)
        step = self._products.strides
        diagonals = as_strided(
            self._products, shape=(count, rows), strides=(step[0], step[0] + step[1])
        )
        out: FloatArray = diagonals.sum(axis=1)
        used = count * down
        self._history = held + len(x) - used
        self._buffer[: self._history] = self._buffer[used : used + self._history].copy()
        return out


class _Interpolator:
    """Upsample by `up`: y[n*up + p] = sum_k x[n - k] phases[p, k].

    The last `taps` inputs of each output row, a sliding window (a view), times the taps
    arranged (taps, up): one small matrix product gives `up` outputs per input."""

    def __init__(self, phases: FloatArray) -> None:
        self.up, self.taps = phases.shape
        # Column p, row j: the tap that meets input x[n + j - (taps - 1)] at phase p.
        self._taps = np.ascontiguousarray(phases.T[::-1])  # (taps, up)
        self._buffer = np.zeros(self.taps - 1 + 64)
        self._held = self.taps - 1

    def process(self, x: FloatArray) -> FloatArray:
        held = self._held
        if len(self._buffer) < held + len(x):
            self._buffer = np.concatenate((self._buffer[:held], np.zeros(len(x))))
        self._buffer[held : held + len(x)] = x
        windows = sliding_window_view(self._buffer[: held + len(x)], self.taps)
        out: FloatArray = np.matmul(windows, self._taps).ravel()
        self._buffer[:held] = self._buffer[len(x) : len(x) + held].copy()
        return out


def to_int16(samples: FloatArray) -> npt.NDArray[np.int16]:
    """Round and clip float samples to int16."""
    return np.clip(np.rint(samples), -32768, 32767).astype(np.int16)
