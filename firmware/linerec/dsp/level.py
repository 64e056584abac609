"""Frame level: the cheapest analysis there is, and the hook the rest of `dsp` plugs into."""

from __future__ import annotations

import math
import struct

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
        self._sound = least_power(silence_dbfs)  # the least power that is not silence
        self._loudest = 0.0  # the largest power `feed_powers` has seen

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
        same as `feed` on each, with a logarithm only for the last and a new loudest (the
        level rises with the power)."""
        if not powers:
            return
        quiet = 0  # frames quiet at the end of the block
        for power in reversed(powers):
            if power >= self._sound:
                break
            quiet += 1
        if quiet < len(powers):
            self.silent_for = 0.0
        for _ in range(quiet):
            self.silent_for += samples_each / self.rate
        self.level = power_dbfs(powers[-1])
        loudest = max(powers)
        if loudest > self._loudest:  # else its level is at most the peak already
            self._loudest = loudest
            self.peak = max(self.peak, power_dbfs(loudest))


def power_dbfs(power: float) -> float:
    """The level of a frame whose mean square is `power`, as `level_dbfs` gives it."""
    return max(10 * math.log10(power / _FULL_SCALE_POWER), _FLOOR_DB) if power > 0 else _FLOOR_DB


def least_power(level: float) -> float:
    """The least mean square whose level is `level` or above: a frame is at that level
    exactly when its power reaches this (the level rises with the power), which costs no
    logarithm. Found by bisection on the bits of positive floats, which order as their
    values do."""

    def value(bits: int) -> float:
        return float(struct.unpack("<d", struct.pack("<q", bits))[0])

    low, high = 0, struct.unpack("<q", struct.pack("<d", _FULL_SCALE_POWER))[0]
    if power_dbfs(0.0) >= level:
        return 0.0  # at or below the floor: every frame
    if power_dbfs(value(high)) < level:
        return math.inf  # above full scale: no frame is that loud
    while high - low > 1:
        middle = (low + high) // 2
        if power_dbfs(value(middle)) >= level:
            high = middle
        else:
            low = middle
    return value(high)
