"""Tone synthesis: the warning tone we play, and the DTMF and call-progress tones the
simulated line plays to us. Phase-continuous oscillators and bursts at 8 kHz int16."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from linerec.codec import RATE, Samples

FULL_SCALE = 32767.0

DTMF_LOW = (697.0, 770.0, 852.0, 941.0)
DTMF_HIGH = (1209.0, 1336.0, 1477.0, 1633.0)
DTMF_KEYS = ("123A", "456B", "789C", "*0#D")


def amplitude(level_dbfs: float) -> float:
    """Peak amplitude of a sine whose level is `level_dbfs` (0 dBFS = full-scale sine)."""
    return float(FULL_SCALE * 10 ** (level_dbfs / 20))


def dtmf_pair(digit: str) -> tuple[float, float]:
    for row, keys in enumerate(DTMF_KEYS):
        column = keys.find(digit.upper())
        if column >= 0:
            return DTMF_LOW[row], DTMF_HIGH[column]
    raise ValueError(f"not a DTMF digit: {digit!r} (expected one of 0-9, *, #, A-D)")


def tone(
    frequencies: tuple[float, ...], seconds: float, level_dbfs: float, rate: int = RATE
) -> Samples:
    """A burst of the sum of sines, each at `level_dbfs`."""
    t = np.arange(round(seconds * rate)) / rate
    wave: npt.NDArray[np.float64] = np.zeros_like(t)
    for frequency in frequencies:
        wave += amplitude(level_dbfs) * np.sin(2 * np.pi * frequency * t)
    return np.clip(np.rint(wave), -32768, 32767).astype(np.int16)


class Oscillator:
    """A sine that continues its phase across calls, so beeps split over frames stay clean."""

    def __init__(self, frequency: float, level_dbfs: float, rate: int = RATE) -> None:
        self._step = 2 * np.pi * frequency / rate
        self._amplitude = amplitude(level_dbfs)
        self._phase = 0.0

    def reset(self) -> None:
        self._phase = 0.0

    def take(self, count: int) -> npt.NDArray[np.float64]:
        phases = self._phase + self._step * np.arange(count)
        self._phase = float((phases[-1] + self._step) % (2 * np.pi)) if count else self._phase
        wave: npt.NDArray[np.float64] = self._amplitude * np.sin(phases)
        return wave
