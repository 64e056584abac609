"""The delay line between analysis and the store.

Frames reach analysis and the call flow at once but the store only `delay` later, so what
is decided about a moment (recording began at off hook, the line went on hook, a digit must
not be kept) still applies to audio that is not yet on the card. While a hook break is being
judged (flash or hang-up?) the line holds everything from the break on.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

from linerec.codec import RATE, Samples

FRAME_SECONDS = 0.020


class Keep(Enum):
    DROP = "drop"  # not kept: before consent, between calls
    NOTICE = "notice"  # the notice as played to the line: the head of the recording
    RECORD = "record"  # the conversation


@dataclass(slots=True, kw_only=True)
class Slot:
    t: float  # time of the first sample
    samples: Samples
    keep: Keep
    lost: int = 0  # samples the capture lost just before this frame

    @property
    def end(self) -> float:
        return self.t + len(self.samples) / RATE


class DelayLine:
    def __init__(self, delay: float) -> None:
        self.frames = max(round(delay / FRAME_SECONDS), 0)
        self._slots: deque[Slot] = deque()
        self._hold_from: float | None = None

    def push(self, slot: Slot) -> list[Slot]:
        """Add the newest frame; returns the frames now old enough for the store."""
        self._slots.append(slot)
        released = []
        while len(self._slots) > self.frames:
            front = self._slots[0]
            if self._hold_from is not None and front.end > self._hold_from:
                break
            released.append(self._slots.popleft())
        return released

    def hold(self, t: float) -> None:
        """Keep every frame that reaches past `t` until `release`."""
        self._hold_from = t

    def release(self, *, drop_from: float | None = None) -> None:
        """Stop holding; with `drop_from`, frames starting at or after it are not kept."""
        if drop_from is not None:
            for slot in self._slots:
                if slot.t >= drop_from:
                    slot.keep = Keep.DROP
        self._hold_from = None

    def retag(self, *, since: float, only: Keep, keep: Keep) -> None:
        """Frames that reach past `since` and are tagged `only` become `keep`."""
        for slot in self._slots:
            if slot.end > since and slot.keep is only:
                slot.keep = keep

    def mute(self, start: float, end: float) -> None:
        """Silence what lies between `start` and `end` (a key pressed: it may be a card digit)."""
        for slot in self._slots:
            a, b = max(start, slot.t), min(end, slot.end)
            if a < b:
                samples = slot.samples.copy()
                samples[round((a - slot.t) * RATE) : round((b - slot.t) * RATE)] = 0
                slot.samples = samples

    def drain(self) -> list[Slot]:
        """Everything still held, oldest first (shutdown, or the end of a call)."""
        slots = list(self._slots)
        self._slots.clear()
        self._hold_from = None
        return slots
