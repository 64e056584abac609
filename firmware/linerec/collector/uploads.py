"""Uploads under way at the collector: pieces written at their offset into
`<incoming>/<device>/<id>.part`, what has arrived kept as merged byte ranges, one row each.

Every cost here is bounded whatever a device sends: the size of a recording, the uploads one
device may have open (the least recently active one gives way), the separate ranges (holes)
one upload may have, and how long an upload may sit unfinished. Adding a piece looks at the
range just before it and those it overlaps (an index seek), so its cost does not grow with the
holes; a finished file is hashed as a stream, never read whole.

A recording streamed while it is open (docs/mqtt-api.md, "Streaming") is an upload like any
other, counted against the same limits, whose size and SHA-256 are not known yet (its row has
size 0 and sha256 `STREAMING`): "in progress". Its bytes are the beginning of the sealed file,
so when the sealed upload's first piece names the size and digest, the row takes them and
keeps what it holds; only the rest has to come.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from linerec.codec import RATE
from linerec.collector.database import rows_of, upsert
from linerec.store.format import BLOCK, CHUNK_AUDIO_BYTES, MAX_BODY

if TYPE_CHECKING:
    from linerec.collector.database import Database

log = logging.getLogger(__name__)

LONGEST_CALL = 4 * 3600  # seconds: the call the default size limit is made for
BYTES_PER_SECOND = RATE  # G.711 (the default codec): one byte a sample at 8 kHz
# Audio chunks of a 4-hour G.711 call, plus room for header, metadata and trailer records.
DEFAULT_MAX_RECORDING_BYTES = -(-LONGEST_CALL * BYTES_PER_SECOND // CHUNK_AUDIO_BYTES) * BLOCK + (
    4 * MAX_BODY
)
_ROWS = 200  # rows a statement writes or reads at most
STREAMING = ""  # the sha256 of an upload still being recorded: its whole is not known yet


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadLimits:
    max_bytes: int = DEFAULT_MAX_RECORDING_BYTES  # of one recording (about 120 MB)
    max_open: int = 4  # uploads one device may have under way
    max_holes: int = 1024  # gaps between the received ranges of one upload
    expire_after: float = 86400.0  # seconds without a piece before an upload is dropped


@dataclass(frozen=True, slots=True, kw_only=True)
class Piece:
    device: str
    recording_id: str
    offset: int
    size: int
    sha256: str
    data: bytes


class UploadRefused(ValueError):
    """A piece this collector will not keep; says which limit and its value."""


class Uploads:
    def __init__(self, db: Database, incoming: Path, limits: UploadLimits) -> None:
        self.db = db
        self.incoming = incoming
        self.limits = limits

    def part(self, device: str, recording_id: str) -> Path:
        return self.incoming / device / f"{recording_id}.part"

    def add(self, piece: Piece, now: float) -> Path | None:
        """Write a piece; the part file once the upload is whole and its SHA-256 matches.
        A piece of a stream (`sha256` STREAMING) only ever adds to what is held.

        What is held is read and written back in one transaction, the device locked, so two
        processes given pieces of one upload (a redelivery to another) merge them in turn."""
        with self.db.transaction():
            self.db.lock_key(f"device {piece.device}")
            piece, count, merged = self._place(piece, now)
        if piece.sha256 == STREAMING:
            return None
        device, recording_id = piece.device, piece.recording_id
        part = self.part(device, recording_id)
        if merged is not None:  # the range this piece joined: with no other, all that is held
            whole = count == 1 and merged == (0, piece.size)
        else:
            whole = count == 1 and self.received(device, recording_id) == piece.size
        if not whole and piece.size > 0:
            return None
        if _sha256(part) != piece.sha256:
            log.warning(
                "device %s: upload %s is whole but its SHA-256 differs: dropped, to be sent again",
                device,
                recording_id,
            )
            self.drop(device, recording_id)
            return None
        return part

    def _place(self, piece: Piece, now: float) -> tuple[Piece, int, tuple[int, int] | None]:
        """Write a piece at its offset and merge its range into those held: (the piece, as
        the sealed upload's if it was streamed after that began; the ranges held now; the
        range it is part of now, None for an empty piece)."""
        limits = self.limits
        device, recording_id = piece.device, piece.recording_id
        row, near = self._held(piece)
        if piece.sha256 == STREAMING and row is not None and row[1] != STREAMING:
            # streamed bytes of a recording whose sealed upload has begun: a piece of that
            piece = replace(piece, size=int(row[0]), sha256=str(row[1]))
            if piece.offset + len(piece.data) > piece.size:
                raise UploadRefused(
                    f"byte {piece.offset}: a streamed piece beyond the recording's "
                    f"{piece.size} bytes"
                )
        streaming = piece.sha256 == STREAMING
        size = piece.offset + len(piece.data) if streaming else piece.size
        if size > limits.max_bytes:
            raise UploadRefused(
                f"a recording of {size} bytes is over this collector's limit of "
                f"{limits.max_bytes} bytes ([collector] max_recording_bytes)"
            )
        adopt = (  # the sealed whole of a stream: keeps what the stream brought, if it fits
            row is not None
            and row[1] == STREAMING
            and not streaming
            and self._held_end(device, recording_id) <= piece.size
        )
        if streaming:
            fresh = row is None
        else:
            fresh = not adopt and (row is None or row[0] != piece.size or row[1] != piece.sha256)
        if fresh:
            if row is not None:  # new content under the same id: start afresh
                self.drop(device, recording_id)
                near = []  # dropped with it
            self._make_room(device)
        count = 0 if fresh else int(row[2])
        start, end = piece.offset, piece.offset + len(piece.data)
        absorbed: list[tuple[int, int]] = []
        if end > start:
            before = next(((a, b) for a, b in near if a < start), None)
            if before is not None and before[1] >= start:  # it reaches the piece: one with it
                start = int(before[0])
            absorbed = [(a, b) for a, b in near if a >= start]
            end = max([end, *(int(b) for _, b in absorbed)])
            count += 1 - len(absorbed)
            if count - 1 > limits.max_holes:
                raise UploadRefused(
                    f"byte {piece.offset}: the upload would have more than {limits.max_holes} "
                    "holes between the pieces received ([collector] max_upload_holes)"
                )
        part = self.part(device, recording_id)
        part.parent.mkdir(parents=True, exist_ok=True)
        # A fresh upload starts from an empty file (what a dropped one held may still be there:
        # its part file goes only once the drop is committed).
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if fresh else 0), 0o640)
        try:
            os.pwrite(fd, piece.data, piece.offset)
        finally:
            os.close(fd)
        upload = (
            upsert(
                "uploads",
                ("device", "id", "size", "sha256", "ranges", "touched_at"),
                ("device", "id"),
            ),
            (device, recording_id, 0 if streaming else piece.size, piece.sha256, count, now),
        )
        if not piece.data:
            self.db.execute(*upload)
            return piece, count, None
        # Sent together (one round trip to a server): nothing is read back.
        self.db.execute_all(
            [
                upload,
                (
                    "DELETE FROM upload_ranges WHERE device = ? AND id = ? "
                    "AND start >= ? AND start <= ?",
                    (device, recording_id, start, piece.offset + len(piece.data)),
                ),
                (
                    'INSERT INTO upload_ranges (device, id, start, "end") VALUES (?, ?, ?, ?)',
                    (device, recording_id, start, end),
                ),
            ]
        )
        return piece, count, (start, end)

    def _held(self, piece: Piece) -> tuple[Any, list[tuple[int, int]]]:
        """In one round trip: the upload's row (size, sha256, ranges; None if there is none)
        and, for a piece with data, the range just before it and those starting within it."""
        device, recording_id = piece.device, piece.recording_id
        start, end = piece.offset, piece.offset + len(piece.data)
        rows = self.db.execute(
            "SELECT 0, size, sha256, ranges, NULL, NULL FROM uploads WHERE device = ? AND id = ? "
            'UNION ALL SELECT 1, NULL, NULL, NULL, start, "end" FROM (SELECT start, "end" FROM '
            "upload_ranges WHERE device = ? AND id = ? AND start < ? ORDER BY start DESC "
            'LIMIT 1) AS before UNION ALL SELECT 1, NULL, NULL, NULL, start, "end" FROM '
            "upload_ranges WHERE device = ? AND id = ? AND start >= ? AND start <= ?",
            (device, recording_id, device, recording_id, start, device, recording_id, start, end),
        ).fetchall()
        row = next((r[1:4] for r in rows if r[0] == 0), None)
        near = [(int(r[4]), int(r[5])) for r in rows if r[0] == 1] if end > start else []
        return row, near

    def received(self, device: str, recording_id: str) -> int:
        """Bytes of an upload received from its start without a hole."""
        row = self.db.execute(
            'SELECT "end" FROM upload_ranges WHERE device = ? AND id = ? AND start = 0',
            (device, recording_id),
        ).fetchone()
        return int(row[0]) if row else 0

    def _held_end(self, device: str, recording_id: str) -> int:
        row = self.db.execute(
            'SELECT MAX("end") FROM upload_ranges WHERE device = ? AND id = ?',
            (device, recording_id),
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def in_progress(self) -> list[dict[str, object]]:
        """Recordings streamed while still open: device, id, bytes held from the start, and
        when the last piece came."""
        rows = self.db.execute(
            "SELECT device, id, touched_at FROM uploads WHERE sha256 = ? ORDER BY device, id",
            (STREAMING,),
        ).fetchall()
        return [
            {
                "device": device,
                "id": recording_id,
                "received": self.received(device, recording_id),
                "touched_at": touched_at,
            }
            for device, recording_id, touched_at in rows
        ]

    def is_streaming(self, device: str, recording_id: str) -> bool:
        row = self.db.execute(
            "SELECT sha256 FROM uploads WHERE device = ? AND id = ?", (device, recording_id)
        ).fetchone()
        return row is not None and row[0] == STREAMING

    def is_under_way(self, device: str, recording_id: str) -> bool:
        """Streamed or sealed, some of it is here and the rest is to come."""
        row = self.db.execute(
            "SELECT 1 FROM uploads WHERE device = ? AND id = ?", (device, recording_id)
        ).fetchone()
        return row is not None

    def sync(self, device: str, recording_id: str) -> None:
        """What has been written of an upload is on the disk (before saying so)."""
        with open(self.part(device, recording_id), "rb+") as file:
            os.fsync(file.fileno())

    def drop(self, device: str, recording_id: str) -> None:
        """Forget an upload: its ranges, its row, its part file."""
        with self.db.transaction():
            self.db.execute_all(
                [
                    (
                        "DELETE FROM upload_ranges WHERE device = ? AND id = ?",
                        (device, recording_id),
                    ),
                    ("DELETE FROM uploads WHERE device = ? AND id = ?", (device, recording_id)),
                ]
            )
            self.db.after_commit(lambda: self._unlink_unowned(device, recording_id))

    def _unlink_unowned(self, device: str, recording_id: str) -> None:
        """The part file of a dropped upload, unless the upload began again meanwhile."""
        if not self.db.execute(
            "SELECT 1 FROM uploads WHERE device = ? AND id = ?", (device, recording_id)
        ).fetchone():
            self.part(device, recording_id).unlink(missing_ok=True)

    def under_way(self) -> list[dict[str, object]]:
        cursor = self.db.execute(
            "SELECT device, id, size, ranges, touched_at FROM uploads ORDER BY device, id"
        )
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def expire(self, now: float) -> list[str]:
        """Drop uploads with no piece for `expire_after` seconds, and part files no upload
        owns (left by a crash) unwritten as long; returns 'device/id' of each dropped."""
        # In one write transaction: on SQLite no other process writes meanwhile; on
        # PostgreSQL another's batch may hold a part file whose row it has not committed yet,
        # which is why a stray must be as old as an expired upload before it goes.
        with self.db.transaction():
            return self._expire(now)

    def _expire(self, now: float) -> list[str]:
        gone = []
        limit = now - self.limits.expire_after
        dropped = set()  # their part files go below with the strays, said once
        for device, recording_id in self.db.execute(
            "SELECT device, id FROM uploads WHERE touched_at < ?", (limit,)
        ).fetchall():
            self.drop(device, recording_id)
            gone.append(f"{device}/{recording_id}")
            dropped.add(self.part(device, recording_id))
        owned = {
            self.part(device, recording_id)
            for device, recording_id in self.db.execute("SELECT device, id FROM uploads")
        }
        for stray in self.incoming.glob("*/*"):
            if stray in owned or not stray.is_file():
                continue
            # Another process's batch writes a part file before its row is committed (on
            # PostgreSQL this does not wait for it): a stray is one left as long as an upload
            # may sit unfinished, not one being written now.
            if stray not in dropped and not _older_than(stray, limit):
                continue
            stray.unlink(missing_ok=True)
            if stray not in dropped:
                gone.append(f"{stray.parent.name}/{stray.name}")
        for directory in self.incoming.glob("*"):
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
        return gone

    def _make_room(self, device: str) -> None:
        """Before a new upload: if the device has `max_open` under way, the one that has been
        quiet longest gives way (an appliance sends one at a time; the rest are leftovers)."""
        rows = self.db.execute(
            "SELECT id FROM uploads WHERE device = ? ORDER BY touched_at, id", (device,)
        ).fetchall()
        for (recording_id,) in rows[: max(len(rows) - self.limits.max_open + 1, 0)]:
            log.warning(
                "device %s: %d uploads under way (limit %d, [collector] max_open_uploads): "
                "dropped the quietest, %s",
                device,
                len(rows),
                self.limits.max_open,
                recording_id,
            )
            self.drop(device, recording_id)


def _older_than(path: Path, when: float) -> bool:
    """Whether the file was last written before `when` (False if it is gone)."""
    try:
        return path.stat().st_mtime < when
    except FileNotFoundError:
        return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@dataclass(slots=True)
class _Held:
    """An upload under way held as one range from byte 0 (what `Appends` may add to)."""

    size: int
    sha256: str
    received: int


class Appends:
    """Pieces that carry on an upload from where what it holds ends, as an appliance sends
    them, placed together (a batch's): what each upload holds is read for all of them in one
    statement, and their rows are written a statement per table (`flush`), not three round
    trips a piece. `take` places only such a piece, leaving the database as `Uploads.add`
    would; anything else (a new upload, a hole, a piece that makes one whole, content stored
    or quarantined already) is not taken: the caller flushes and hands it to `Uploads.add`,
    and the device's uploads are then read from the database again, not from here.

    To be made inside the transaction that holds the devices' locks (Database.lock_key), so
    what was read stays true until it commits; flushed before it commits."""

    def __init__(self, uploads: Uploads, pieces: Sequence[tuple[str, str, str]]) -> None:
        """`pieces`: (device, recording id, sha256) of the pieces that may be taken."""
        self.uploads = uploads
        self._held: dict[tuple[str, str], _Held] = {}
        self._pending: dict[tuple[str, str], tuple[_Held, float]] = {}
        wanted = list(dict.fromkeys(pieces))
        for start in range(0, len(wanted), _ROWS):
            chunk = wanted[start : start + _ROWS]
            rows = uploads.db.execute(
                f"WITH v (device, id, sha256) AS (VALUES {rows_of(len(chunk), 3)}) "
                "SELECT v.device, v.id, v.sha256, "
                "(SELECT sha256 FROM recordings WHERE device = v.device AND id = v.id), "
                "(SELECT reason FROM quarantine WHERE device = v.device AND id = v.id "
                "AND sha256 = v.sha256), u.size, u.sha256, u.ranges, "
                '(SELECT "end" FROM upload_ranges WHERE device = v.device AND id = v.id '
                "AND start = 0) FROM v LEFT JOIN uploads AS u "
                "ON u.device = v.device AND u.id = v.id",
                [value for piece in chunk for value in piece],
            ).fetchall()
            for device, recording_id, sha256, stored, quarantined, size, held, ranges, end in rows:
                if (
                    stored is None
                    and quarantined is None
                    and held == sha256
                    and held != STREAMING
                    and ranges == 1
                    and end is not None
                ):
                    self._held[(str(device), str(recording_id))] = _Held(
                        int(size), str(held), int(end)
                    )
        # Two contents under one id in the batch: what one holds is no longer the other's.
        for key, count in Counter((device, rid) for device, rid, _ in wanted).items():
            if count > 1:
                self._held.pop(key, None)

    def take(self, piece: Piece, now: float) -> int | None:
        """Place `piece` if it carries on its upload (see above): the bytes held from byte 0
        after it. None, and nothing done, if it does not."""
        key = (piece.device, piece.recording_id)
        held = self._held.get(key)
        end = piece.offset + len(piece.data)
        if (
            held is None
            or held.size != piece.size
            or held.sha256 != piece.sha256
            or not piece.data
            or piece.offset > held.received
            or max(end, held.received) >= held.size
            or held.size > self.uploads.limits.max_bytes
        ):
            return None
        part = self.uploads.part(piece.device, piece.recording_id)
        part.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o640)
        try:
            os.pwrite(fd, piece.data, piece.offset)
        finally:
            os.close(fd)
        held.received = max(end, held.received)
        self._pending[key] = (held, now)
        return held.received

    def forget(self, device: str) -> None:
        """The device's uploads are written by other means from now on: flushed, and read
        from the database again."""
        self.flush()
        for key in [key for key in self._held if key[0] == device]:
            del self._held[key]

    def flush(self) -> None:
        """What was taken, written: each upload's row and its one range, as `Uploads.add`
        leaves them."""
        pending, self._pending = list(self._pending.items()), {}
        for start in range(0, len(pending), _ROWS):
            chunk = pending[start : start + _ROWS]
            columns = ("device", "id", "size", "sha256", "ranges", "touched_at")
            self.uploads.db.execute_all(
                [
                    (
                        upsert("uploads", columns, ("device", "id"), rows=len(chunk)),
                        [
                            value
                            for (device, recording_id), (held, now) in chunk
                            for value in (device, recording_id, held.size, held.sha256, 1, now)
                        ],
                    ),
                    (
                        upsert(
                            "upload_ranges",
                            ("device", "id", "start", "end"),
                            ("device", "id", "start"),
                            rows=len(chunk),
                        ),
                        [
                            value
                            for (device, recording_id), (held, _) in chunk
                            for value in (device, recording_id, 0, held.received)
                        ],
                    ),
                ]
            )
