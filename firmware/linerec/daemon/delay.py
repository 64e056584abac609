"""The delay line between analysis and the store.

Frames reach analysis and the call flow at once but the store only `delay` later, so what
is decided about a moment (recording began at off hook, the line went on hook, a digit must
not be kept) still applies to audio that is not yet on the card. While a hook break is being
judged (flash or hang-up?) the line holds everything from the break on.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from linerec.call.policy import Keep
from linerec.codec import RATE, Samples

FRAME_SECONDS = 0.020


@dataclass(slots=True, kw_only=True)
class Slot:
    t: float  # time of the first sample
    samples: Samples
    keep: Keep
    lost: int = 0  # samples the capture lost just before this frame

    @property
    def end(self) -> float:
        return self.t + len(self.samples) / RATE

    def split(self, at: float) -> tuple[Slot, Slot] | None:
        """This slot cut in two at the sample nearest `at`, if that falls inside it."""
        if not self.t < at < self.end:
            return None
        index = round((at - self.t) * RATE)
        if not 0 < index < len(self.samples):
            return None
        head = Slot(t=self.t, samples=self.samples[:index], keep=self.keep, lost=self.lost)
        tail = Slot(t=self.t + index / RATE, samples=self.samples[index:], keep=self.keep)
        return head, tail


class DelayLine:
    def __init__(self, delay: float) -> None:
        self.samples = max(round(delay / FRAME_SECONDS), 0) * round(FRAME_SECONDS * RATE)
        self._slots: deque[Slot] = deque()
        self._held = 0  # samples in _slots
        self._hold_from: float | None = None

    def push(self, slot: Slot) -> list[Slot]:
        """Add the newest frame; returns the frames now old enough for the store."""
        self._slots.append(slot)
        self._held += len(slot.samples)
        released = []
        while self._slots and self._held - len(self._slots[0].samples) >= self.samples:
            front = self._slots[0]
            if self._hold_from is not None and front.end > self._hold_from:
                break
            released.append(self._slots.popleft())
            self._held -= len(front.samples)
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
        """Audio from `since` on that is tagged `only` becomes `keep`, from that very sample
        (a frame that straddles `since` is cut in two)."""
        slots: deque[Slot] = deque()
        for slot in self._slots:
            pieces = slot.split(since) if slot.keep is only else None
            if pieces is not None:
                slots.extend(pieces)
            else:
                slots.append(slot)
        for slot in slots:
            if slot.t >= since - 0.5 / RATE and slot.keep is only:
                slot.keep = keep
        self._slots = slots

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
        self._held = 0
        self._hold_from = None
        return slots
