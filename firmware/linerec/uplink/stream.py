"""Streaming open recordings: which bytes of which recording may go to the collector now.

Bookkeeping only, no I/O, safe from any thread: the store's sync thread says how far a
recording is on the card (`synced`), the main loop that one was discarded (`discard`), the
writer thread what the collector acknowledged (`acknowledged`), and the sender asks what to
publish (`due`). Only synced bytes are ever offered, so what the collector holds is always a
prefix of what the card holds (the sealed file begins with exactly those bytes).

The window bounds what is published and not yet acknowledged by the collector. When a slow
link has let the stream fall further behind than one window, it skips ahead to the newest
chunks (a hole at the collector) rather than queue: live listening stays live, the audio path
never waits, and the sealed upload fills the hole afterwards from the collector's `received`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from linerec.store.format import BLOCK

WINDOW = 4 * BLOCK  # bytes published and not acknowledged (about 2 s of G.711)
STALL = 3.0  # seconds with a full window and no ack: what is in flight is lost; go on from live


@dataclass(slots=True)
class _Stream:
    path: Path
    line: str
    durable: int  # bytes of the file on the card
    sent: int = 0  # bytes up to which it was published in this session
    acked: int = 0  # end of the furthest piece the collector acknowledged
    skipped_to: int = 0  # where the stream last skipped ahead to: in flight counts from here
    heard_at: float = 0.0  # when the collector last acknowledged a piece (or the stream began)
    received: int = 0  # bytes the collector holds from byte 0 without a hole (signed)


@dataclass(frozen=True, slots=True)
class Due:
    """Bytes start..end of an open recording to publish now."""

    id: str
    path: Path
    start: int
    end: int


class Streams:
    def __init__(
        self,
        *,
        window: int = WINDOW,
        piece: int = 8 * BLOCK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._window = window
        self._piece = piece
        self._open: dict[str, _Stream] = {}
        # Of streams not open: ended (where the sealed upload resumes), or held before a
        # restart (noted on the card; a stream that opens again goes on from there).
        self._received: dict[str, int] = {}
        self._discarded: set[str] = set()  # to tell the collector (until it acknowledges)
        self.skipped = 0  # bytes skipped ahead over, since start (telemetry)

    # -- from the store ----------------------------------------------------------------------

    def synced(self, recording_id: str, path: Path, line: str, offset: int) -> None:
        with self._lock:
            if recording_id in self._discarded:
                return
            stream = self._open.get(recording_id)
            if stream is None:
                held = self._received.pop(recording_id, 0)  # what it held before a restart
                self._open[recording_id] = _Stream(
                    path=path,
                    line=line,
                    durable=offset,
                    sent=held,
                    acked=held,
                    skipped_to=held,
                    heard_at=self._clock(),
                    received=held,
                )
            else:
                stream.durable = max(stream.durable, offset)

    def discard(self, recording_id: str) -> None:
        """Opted out: nothing more of it goes, and the collector must drop what it got."""
        with self._lock:
            self._open.pop(recording_id, None)
            self._received.pop(recording_id, None)
            self._discarded.add(recording_id)

    # -- from the collector (its signed acks) -------------------------------------------------

    def acknowledged(self, recording_id: str, end: int, received: int) -> bool:
        """True if this made room in a full window: bytes waiting on the card may go now."""
        with self._lock:
            stream = self._open.get(recording_id)
            if stream is not None:
                full = self._in_flight(stream) >= self._window
                stream.acked = max(stream.acked, end)
                stream.received = received
                stream.heard_at = self._clock()
                return full and self._in_flight(stream) < self._window
            if recording_id not in self._discarded:
                self._received[recording_id] = received
            return False

    @staticmethod
    def _in_flight(stream: _Stream) -> int:
        """Bytes published and not acknowledged (counted from where it last skipped ahead)."""
        return stream.sent - min(max(stream.acked, stream.skipped_to), stream.sent)

    def restore(self, recording_id: str, received: int) -> None:
        """After a restart: the collector said it holds bytes 0..received (kept on the card).
        A stream of it that opens again goes on from there; a sealed upload begins there."""
        with self._lock:
            if recording_id not in self._discarded and recording_id not in self._open:
                self._received[recording_id] = max(self._received.get(recording_id, 0), received)

    def discard_acknowledged(self, recording_id: str) -> None:
        with self._lock:
            self._discarded.discard(recording_id)

    def reconnected(self) -> None:
        """A new session: what was in flight may be lost, so send again from what is held."""
        with self._lock:
            for stream in self._open.values():
                stream.sent = stream.acked = stream.skipped_to = stream.received
                stream.heard_at = self._clock()

    # -- for the sender ------------------------------------------------------------------------

    def due(self) -> list[Due]:
        """One piece per open recording that has new bytes on the card and room in its window."""
        pieces = []
        with self._lock:
            for recording_id, stream in self._open.items():
                if stream.durable <= stream.sent:
                    continue
                if self._in_flight(stream) >= self._window:
                    if self._clock() - stream.heard_at < STALL:
                        continue  # the window is full: wait for the collector
                    # No answer: lost on the way (a broker restarted before the collector
                    # subscribed again). Go on from what is held; the seal fills any hole.
                    stream.sent = stream.skipped_to = max(stream.acked, stream.received)
                    stream.heard_at = self._clock()
                start = stream.sent
                if stream.durable - start > self._window:  # too far behind live: skip ahead
                    ahead = (stream.durable - self._window) // BLOCK * BLOCK
                    if ahead > start:
                        self.skipped += ahead - start
                        start = stream.skipped_to = ahead
                end = min(stream.durable, start + self._piece)
                pieces.append(Due(recording_id, stream.path, start, end))
        return pieces

    def sent(self, recording_id: str, end: int) -> None:
        with self._lock:
            stream = self._open.get(recording_id)
            if stream is not None:
                stream.sent = max(stream.sent, end)

    def ended(self, recording_id: str) -> None:
        """Sealed (or cut): the stream stops; the sealed upload sends the rest."""
        with self._lock:
            stream = self._open.pop(recording_id, None)
            if stream is not None:
                self._received[recording_id] = stream.received

    def open_ids(self) -> list[str]:
        with self._lock:
            return list(self._open)

    def is_discarded(self, recording_id: str) -> bool:
        with self._lock:
            return recording_id in self._discarded

    def discarded(self) -> list[str]:
        with self._lock:
            return sorted(self._discarded)

    def resume_at(self, recording_id: str) -> int:
        """Where the sealed upload of a streamed recording begins: what the collector holds."""
        with self._lock:
            return self._received.get(recording_id, 0)

    def forget(self, recording_id: str) -> None:
        with self._lock:
            self._received.pop(recording_id, None)

    def holdings(self) -> dict[str, int]:
        """What the collector holds from byte 0 of every stream not yet uploaded whole."""
        with self._lock:
            return {
                **self._received,
                **{recording_id: s.received for recording_id, s in self._open.items()},
            }

    def held(self, recording_id: str) -> int:
        """Bytes of an open recording the collector has said it holds from byte 0."""
        with self._lock:
            stream = self._open.get(recording_id)
            return stream.received if stream is not None else 0

    def lag(self, bytes_per_second: float) -> dict[str, float]:
        """Per line: seconds of audio on the card the collector has not acknowledged yet."""
        with self._lock:
            return {
                stream.line: round(max(stream.durable - stream.acked, 0) / bytes_per_second, 3)
                for stream in self._open.values()
            }
