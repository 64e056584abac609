"""Voice on the line: loud audio whose level and colour keep changing, as speech does.

The call policy uses it as a sign that an outbound call has connected (somebody speaks), so
dialling has ended. Tones (dial tone, ringback, a run of DTMF keys) hold a steady level frame
after frame; line hiss stays below the level floor. Speech rises and falls by many decibels
within a few syllables, and its energy moves between low and high frequencies.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from linerec.codec import RATE
from linerec.dsp.level import least_power, power_dbfs
from linerec.dsp.spectrum import BlockFeatures, FrameFeatures

FRAME = 160
FLOOR_DBFS = -42.0  # quieter than this is not speech on a telephone line
WINDOW = 20  # frames (400 ms) looked at together
LOUD = 10  # of which this many must be above the floor (pauses between syllables allowed)
MIN_LEVEL_SPREAD = 3.0  # dB: standard deviation of the loud frames' levels (a tone: < 1)
MIN_COLOUR_SPREAD = 100.0  # Hz: standard deviation of where their energy sits
REARM = 1.0  # seconds without loud audio before another onset is reported


@dataclass(frozen=True, slots=True, kw_only=True)
class Voice:
    t: float  # when the voiced stretch began


class VoiceDetector:
    def __init__(self) -> None:
        self._position = 0
        self._recent: deque[tuple[float, float, float]] = deque(maxlen=WINDOW)  # t, dB, Hz
        self._last_loud = float("-inf")
        self._active = False

    def feed(self, seen: FrameFeatures) -> list[Voice]:
        """One 20 ms frame's features; a Voice when speech begins."""
        t = self._position / RATE
        self._position += FRAME
        level = power_dbfs(seen.power)
        if level >= FLOOR_DBFS:
            self._recent.append((t, level, seen.centroid))
            self._last_loud = t
        if self._active:
            if t - self._last_loud >= REARM:
                self._active = False
                self._recent.clear()
            return []
        while self._recent and self._recent[0][0] <= t - WINDOW * FRAME / RATE:
            self._recent.popleft()
        if len(self._recent) < LOUD:
            return []
        loud = np.array(self._recent)
        if loud[:, 1].std() < MIN_LEVEL_SPREAD or loud[:, 2].std() < MIN_COLOUR_SPREAD:
            return []
        self._active = True
        return [Voice(t=round(float(loud[0, 0]), 3))]

    def feed_block(self, seen: BlockFeatures) -> list[tuple[int, Voice]]:
        """A block of frames' features: what `feed` would say of each, with the index of the
        frame it said it at. Once speech has been reported, or while too few loud frames are
        about to tell, only the time of the last loud frame matters until a frame says more."""
        power = seen.power
        start = self._position
        if self._active:
            if min(power) >= _LOUD:  # loud throughout
                self._last_loud = (start + (len(power) - 1) * FRAME) / RATE
                self._position += FRAME * len(power)
                return []
            last_loud = self._last_loud
            for i, p in enumerate(power):
                t = (start + i * FRAME) / RATE
                if p >= _LOUD:
                    last_loud = t
                elif t - last_loud >= REARM:
                    break  # speech has ended here: frame by frame, from the block's start
            else:
                # What `feed` keeps of loud frames while active is cleared before it is read.
                self._last_loud = last_loud
                self._position += FRAME * len(power)
                return []
        elif max(power) < _LOUD and len(self._recent) < LOUD:
            t = (start + (len(power) - 1) * FRAME) / RATE  # the last frame's, as `feed` has it
            while self._recent and self._recent[0][0] <= t - WINDOW * FRAME / RATE:
                self._recent.popleft()
            self._position += FRAME * len(power)
            return []
        return [(i, e) for i, each in enumerate(seen.frames()) for e in self.feed(each)]

    def skip(self, samples: int) -> None:
        """Time passes without features (a short last piece)."""
        self._position += samples


# A frame is loud exactly when its power reaches this (no logarithm per frame).
_LOUD = least_power(FLOOR_DBFS)
