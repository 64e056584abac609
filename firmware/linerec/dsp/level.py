"""Frame level: the cheapest analysis there is, and the hook the rest of `dsp` plugs into."""

from __future__ import annotations

import math

import numpy as np

from linerec.codec import RATE, Samples

_FLOOR_DB = -96.0
_FULL_SCALE_POWER = 32767.0**2 / 2  # mean power of a full-scale sine


def level_dbfs(samples: Samples) -> float:
    """RMS level of a frame in dB relative to a full-scale sine."""
    if not len(samples):
        return _FLOOR_DB
    x = samples.astype(np.float32)
    power = float(np.dot(x, x)) / len(x)
    if power <= 0:
        return _FLOOR_DB
    return max(10 * math.log10(power / _FULL_SCALE_POWER), _FLOOR_DB)


class LevelMeter:
    """Tracks the level of the line and how long it has been quiet."""

    def __init__(self, *, silence_dbfs: float = -55.0, rate: int = RATE) -> None:
        self.silence_dbfs = silence_dbfs
        self.rate = rate
        self.level = _FLOOR_DB
        self.peak = _FLOOR_DB
        self.silent_for = 0.0

    def feed(self, samples: Samples) -> float:
        self.level = level_dbfs(samples)
        self.peak = max(self.peak, self.level)
        if self.level < self.silence_dbfs:
            self.silent_for += len(samples) / self.rate
        else:
            self.silent_for = 0.0
        return self.level

    def feed_powers(self, powers: list[float], samples_each: int) -> None:
        """Frames whose mean squares are known already (analysis computed them in bulk): the
        same as `feed` on each, with a logarithm only for the last, the loudest and those
        quiet at the end (the level rises with the power)."""
        if not powers:
            return
        quiet = 0  # frames quiet at the end of the block
        for power in reversed(powers):
            if _level(power) >= self.silence_dbfs:
                break
            quiet += 1
        if quiet < len(powers):
            self.silent_for = 0.0
        for _ in range(quiet):
            self.silent_for += samples_each / self.rate
        self.level = _level(powers[-1])
        self.peak = max(self.peak, _level(max(powers)))


def _level(power: float) -> float:
    return max(10 * math.log10(power / _FULL_SCALE_POWER), _FLOOR_DB) if power > 0 else _FLOOR_DB
