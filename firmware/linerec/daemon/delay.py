"""The delay line between analysis and the store.

Frames reach analysis and the call flow at once but the store only `delay` later, so what
is decided about a moment (recording began at off hook, the line went on hook, a digit must
not be kept) still applies to audio that is not yet on the card. While a hook break is being
judged (flash or hang-up?) the line holds everything from the break on.

A quiet block of several frames goes in as one slot, and leaves frame by frame exactly as if
its frames had gone in one by one (a frame's worth is let go once a delay's worth of audio
is behind it), so that what a later decision can still reach is the same either way.
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
    # A run of frames of `frame` samples each, back to back (0: one frame, or part of one);
    # `into` samples of the first of them lie before this slot (it was cut there).
    frame: int = 0
    into: int = 0

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
        return self.cut(index)

    def cut(self, index: int) -> tuple[Slot, Slot]:
        """This slot in two, the first `index` samples and the rest."""
        head = Slot(
            t=self.t,
            samples=self.samples[:index],
            keep=self.keep,
            lost=self.lost,
            frame=self.frame,
            into=self.into,
        )
        tail = Slot(
            t=self.t + index / RATE,
            samples=self.samples[index:],
            keep=self.keep,
            frame=self.frame,
            into=(self.into + index) % self.frame if self.frame else 0,
        )
        return head, tail

    def releasable(self, room: int, hold_from: float | None) -> int:
        """How many of the first samples leave now, frame by frame as if each frame had been
        a slot of its own: each frame whose samples fit in `room` and that does not reach past
        `hold_from`."""
        size = len(self.samples)
        if not self.frame:
            fits = size <= room and (hold_from is None or self.end <= hold_from)
            return size if fits else 0
        done = 0
        edge = self.frame - self.into
        while done < size:
            edge = min(edge, size)
            if edge > room or (hold_from is not None and self.t + edge / RATE > hold_from):
                break
            done, edge = edge, edge + self.frame
        return done


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
        while self._slots:
            front = self._slots[0]
            size = front.releasable(self._held - self.samples, self._hold_from)
            if not size:
                break
            self._held -= size
            if size == len(front.samples):
                released.append(self._slots.popleft())
                continue
            head, self._slots[0] = front.cut(size)
            released.append(head)
            break
        return released

    def hold(self, t: float) -> None:
        """Keep every frame that reaches past `t` until `release`."""
        self._hold_from = t

    def release(self, *, drop_from: float | None = None) -> None:
        """Stop holding; with `drop_from`, frames starting at or after it are not kept."""
        if drop_from is not None:
            slots: deque[Slot] = deque()
            for slot in self._slots:
                pieces = _from_frame_at(slot, drop_from) if slot.frame else None
                for piece in pieces or (slot,):
                    if piece.t >= drop_from:
                        piece.keep = Keep.DROP
                    slots.append(piece)
            self._slots = slots
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


def _from_frame_at(slot: Slot, t: float) -> tuple[Slot, Slot] | None:
    """A run of frames cut where its first frame that starts at or after `t` begins, if that
    is inside it (frames pushed one by one are kept or dropped whole, by their start)."""
    start = (slot.frame - slot.into) % slot.frame
    while start < len(slot.samples) and slot.t + start / RATE < t:
        start += slot.frame
    if not 0 < start < len(slot.samples):
        return None
    return slot.cut(start)
