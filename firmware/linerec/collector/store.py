"""Where the collector keeps what arrives: files on disk, an index in SQLite.

    <data_dir>/recordings/<device>/<id>.lrec.vault    recordings, as sealed on the appliance, each
                                                     encrypted again under a key of its own
    <data_dir>/incoming/<device>/<id>.part      uploads under way (pieces written at their offset)
    <database> (default <data_dir>/collector.db)

Deleting a recording destroys its key (kept in the database, which `secure_delete` overwrites),
so every copy of the file, backups included, is unreadable from then on: crypto-shredding.
The deletion log is a hash chain: each entry names the hash of the one before.

The call's events go with it: they are erased (each row kept, so that the device's event
numbers stay contiguous and redelivery changes nothing, but its body cut down to the event's
name, line and `"erased": <recording id>`). A call's events are found by sequence number on
the recording's device and line: from the event after the previous call ended (hung_up,
missed_call, notice_abandoned or recording_sealed) up to the `recording_sealed` event that
names the recording; events that arrive later are erased as they arrive.

Everything is idempotent under redelivery: an event or a piece that arrives twice changes
nothing. A recording is indexed only once its file is complete, its SHA-256 matches and it is
synced; only then is it acknowledged to the appliance.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

if TYPE_CHECKING:
    from linerec.collector.search import RecordingQuery

VAULT_MAGIC = b"LRVAULT1"
_CALL_ENDS = ("hung_up", "missed_call", "notice_abandoned", "recording_sealed")
VAULT_SUFFIX = ".lrec.vault"

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    device TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL, received_at REAL NOT NULL,
    PRIMARY KEY (device, seq)
);
CREATE TABLE IF NOT EXISTS recordings (
    id TEXT PRIMARY KEY, device TEXT NOT NULL, seq INTEGER, line TEXT, started_at TEXT,
    duration REAL, state TEXT, caller_number TEXT, called_number TEXT, path TEXT NOT NULL,
    sha256 TEXT NOT NULL, received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    at REAL NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL, recording TEXT, reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS command_counters (device TEXT PRIMARY KEY, counter INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS vault_keys (id TEXT PRIMARY KEY, key BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS holds (id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS deletions (
    id TEXT NOT NULL, device TEXT NOT NULL, at REAL NOT NULL, reason TEXT NOT NULL,
    prev TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chains (
    device TEXT PRIMARY KEY, seq INTEGER NOT NULL, head TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chain_links (
    device TEXT NOT NULL, seq INTEGER NOT NULL, prev TEXT NOT NULL, head TEXT NOT NULL,
    PRIMARY KEY (device, seq)
);
CREATE TABLE IF NOT EXISTS uploads (
    device TEXT NOT NULL, id TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
    received TEXT NOT NULL, PRIMARY KEY (device, id)
);
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Piece:
    device: str
    recording_id: str
    offset: int
    size: int
    sha256: str
    data: bytes


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CollectorStore:
    def __init__(self, data_dir: Path, database: Path) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "PRAGMA secure_delete=ON"
        )  # a deleted key is overwritten, not just unlinked
        self.db.executescript(SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(recordings)")}
        if "clock_synchronized" not in columns:  # added after the first schema
            self.db.execute("ALTER TABLE recordings ADD COLUMN clock_synchronized INTEGER")

    # -- events ------------------------------------------------------------------------------

    def add_event(self, device: str, body: dict[str, Any], received_at: float) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO events (device, seq, body, received_at) VALUES (?, ?, ?, ?)",
            (device, int(body["seq"]), json.dumps(body, sort_keys=True), received_at),
        )
        # Part of a call whose recording was deleted before this arrived: erase it now.
        row = self.db.execute(
            "SELECT e.id FROM (SELECT json_extract(body, '$.id') AS id FROM events "
            "WHERE device = ? AND seq >= ? AND json_extract(body, '$.line') IS ? "
            "AND json_extract(body, '$.event') = 'recording_sealed' ORDER BY seq LIMIT 1) AS e "
            "JOIN deletions AS d ON d.id = e.id AND d.device = ?",
            (device, int(body["seq"]), body.get("line"), device),
        ).fetchone()
        if row is not None:
            self._erase(device, self._call_events(device, str(row[0])), str(row[0]))

    def _call_events(self, device: str, recording_id: str) -> list[int]:
        """Sequence numbers of the events of the call `recording_id` recorded (see above)."""
        sealed = self.db.execute(
            "SELECT seq, json_extract(body, '$.line') FROM events WHERE device = ? "
            "AND json_extract(body, '$.event') = 'recording_sealed' "
            "AND json_extract(body, '$.id') = ?",
            (device, recording_id),
        ).fetchone()
        if sealed is None:
            return []  # not here yet: erased when it comes
        end, line = int(sealed[0]), sealed[1]
        on_line = "device = ? AND json_extract(body, '$.line') IS ?"

        def last_before(seq: int, events: tuple[str, ...]) -> int | None:
            marks = ", ".join("?" * len(events))
            row = self.db.execute(
                f"SELECT MAX(seq) FROM events WHERE {on_line} AND seq < ? "
                f"AND json_extract(body, '$.event') IN ({marks})",
                (device, line, seq, *events),
            ).fetchone()
            return None if row[0] is None else int(row[0])

        started = last_before(end, ("recording_started",))
        previous = last_before(started if started is not None else end, _CALL_ENDS) or 0
        return [
            int(row[0])
            for row in self.db.execute(
                f"SELECT seq FROM events WHERE {on_line} AND seq > ? AND seq <= ? "
                "AND json_extract(body, '$.event') IS NOT 'recording_deleted'",
                (device, line, previous, end),
            )
        ]

    def _erase(self, device: str, seqs: list[int], why: str) -> None:
        """Cut events down to what says nothing of the call (secure_delete zeroes the rest)."""
        for seq in seqs:
            (body,) = self.db.execute(
                "SELECT body FROM events WHERE device = ? AND seq = ?", (device, seq)
            ).fetchone()
            old = json.loads(body)
            if old.get("erased"):
                continue
            kept = {k: old[k] for k in ("seq", "device", "event", "line") if k in old}
            self.db.execute(
                "UPDATE events SET body = ? WHERE device = ? AND seq = ?",
                (json.dumps({**kept, "erased": why}, sort_keys=True), device, seq),
            )

    def _shred_free_pages(self) -> None:
        """Old page images must not outlive a deletion: the WAL is written back and emptied."""
        busy, _, _ = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise sqlite3.OperationalError(
                "the write-ahead log could not be emptied (another process is reading): "
                "deleted data may remain in it until the next deletion or restart"
            )

    def contiguous_seq(self, device: str) -> int:
        """The highest n such that events 1..n of `device` are all here."""
        seqs = [
            row[0]
            for row in self.db.execute(
                "SELECT seq FROM events WHERE device = ? ORDER BY seq", (device,)
            )
        ]
        upto = 0
        for seq in seqs:
            if seq != upto + 1:
                break
            upto = seq
        return upto

    def gaps(self, device: str) -> list[int]:
        """Sequence numbers missing below the highest one received."""
        seqs = {
            row[0] for row in self.db.execute("SELECT seq FROM events WHERE device = ?", (device,))
        }
        return [s for s in range(1, max(seqs, default=0)) if s not in seqs]

    # -- recordings ------------------------------------------------------------------------------

    def stored(self, device: str, recording_id: str) -> tuple[str, str] | None:
        row = self.db.execute(
            "SELECT path, sha256 FROM recordings WHERE id = ? AND device = ?",
            (recording_id, device),
        ).fetchone()
        return (str(row[0]), str(row[1])) if row else None

    def add_piece(self, piece: Piece) -> Path | None:
        """Write a piece; returns the final path once the recording is whole and synced."""
        incoming = self.data_dir / "incoming" / piece.device
        incoming.mkdir(parents=True, exist_ok=True)
        part = incoming / f"{piece.recording_id}.part"
        row = self.db.execute(
            "SELECT size, sha256, received FROM uploads WHERE device = ? AND id = ?",
            (piece.device, piece.recording_id),
        ).fetchone()
        if row is None or row[1] != piece.sha256 or row[0] != piece.size:
            received: list[list[int]] = []  # a new upload (or new content): start afresh
            part.unlink(missing_ok=True)
        else:
            received = json.loads(row[2])
        fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o640)
        try:
            os.pwrite(fd, piece.data, piece.offset)
        finally:
            os.close(fd)
        received = _merge(received, [piece.offset, piece.offset + len(piece.data)])
        self.db.execute(
            "INSERT OR REPLACE INTO uploads (device, id, size, sha256, received) "
            "VALUES (?, ?, ?, ?, ?)",
            (piece.device, piece.recording_id, piece.size, piece.sha256, json.dumps(received)),
        )
        if received != [[0, piece.size]]:
            return None
        data = part.read_bytes()
        if hashlib.sha256(data).hexdigest() != piece.sha256:
            part.unlink()  # corrupt in transit: have it sent again
            self.db.execute(
                "DELETE FROM uploads WHERE device = ? AND id = ?",
                (piece.device, piece.recording_id),
            )
            return None
        final_dir = self.data_dir / "recordings" / piece.device
        final_dir.mkdir(parents=True, exist_ok=True)
        final = final_dir / f"{piece.recording_id}{VAULT_SUFFIX}"
        self._vault(piece.recording_id, data, final)
        part.unlink()
        return final

    # -- at rest: each recording under its own key, so deleting the key shreds every copy ----

    def _vault(self, recording_id: str, data: bytes, path: Path) -> None:
        key, nonce = os.urandom(32), os.urandom(12)
        sealed = (
            VAULT_MAGIC + nonce + ChaCha20Poly1305(key).encrypt(nonce, data, recording_id.encode())
        )
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as file:
            file.write(sealed)
            file.flush()
            os.fsync(file.fileno())
        self.db.execute(
            "INSERT OR REPLACE INTO vault_keys (id, key) VALUES (?, ?)", (recording_id, key)
        )
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def read_recording(self, recording_id: str, path: Path) -> bytes:
        """The recording as the appliance sealed it (ValueError once it has been deleted)."""
        row = self.db.execute("SELECT key FROM vault_keys WHERE id = ?", (recording_id,)).fetchone()
        if row is None:
            raise ValueError(f"{recording_id}: its key is gone (deleted): no copy can be read")
        blob = path.read_bytes()
        if blob[: len(VAULT_MAGIC)] != VAULT_MAGIC:
            raise ValueError(f"{path}: not a collector vault file")
        nonce = blob[len(VAULT_MAGIC) : len(VAULT_MAGIC) + 12]
        try:
            return ChaCha20Poly1305(bytes(row[0])).decrypt(
                nonce, blob[len(VAULT_MAGIC) + 12 :], recording_id.encode()
            )
        except InvalidTag as exc:
            raise ValueError(f"{path}: altered at rest") from exc

    def delete(self, recording_id: str, reason: str) -> dict[str, Any]:
        """Crypto-shred a recording: its key goes, then its file; the deletion log grows."""
        row = self.recording(recording_id)
        if row is None:
            raise KeyError(f"no recording {recording_id!r} at this collector")
        if self.db.execute("SELECT 1 FROM holds WHERE id = ?", (recording_id,)).fetchone():
            raise PermissionError(f"{recording_id} is on legal hold")
        self.db.execute("BEGIN IMMEDIATE")  # key gone and deletion logged together, or neither
        self.db.execute("DELETE FROM vault_keys WHERE id = ?", (recording_id,))
        self.db.execute("DELETE FROM recordings WHERE id = ?", (recording_id,))
        device = row["device"]
        self._erase(device, self._call_events(device, recording_id), recording_id)
        previous = self.db.execute(
            "SELECT hash FROM deletions ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
        entry = {
            "id": recording_id,
            "device": row["device"],
            "at": time.time(),
            "reason": reason,
            "prev": previous[0] if previous else "",
        }
        digest = hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()
        self.db.execute(
            "INSERT INTO deletions (id, device, at, reason, prev, hash) VALUES (?, ?, ?, ?, ?, ?)",
            (recording_id, row["device"], entry["at"], reason, entry["prev"], digest),
        )
        self.db.execute("COMMIT")
        Path(row["path"]).unlink(missing_ok=True)
        self.audit("delete", recording_id, reason)
        self._shred_free_pages()  # no old page keeps the key or a number around
        return {**entry, "hash": digest}

    def hold(self, recording_id: str, held: bool) -> None:
        if held:
            self.db.execute("INSERT OR IGNORE INTO holds (id) VALUES (?)", (recording_id,))
        else:
            self.db.execute("DELETE FROM holds WHERE id = ?", (recording_id,))

    def enforce_retention(self, days: float, now: float | None = None) -> list[str]:
        """Delete what is older than `days`, unless on hold, with its call's events; erase
        events older than that which belong to no recording kept. Returns the ids deleted.

        A recording is aged from when it began if the appliance's clock was synchronised then,
        else from when it arrived here: a Pi without NTP stamps any date, and on the appliance
        such a date never deletes a recording that has not reached the collector either."""
        if not days:
            return []
        limit = (now if now is not None else time.time()) - days * 86400
        gone = []
        rows = self.db.execute(
            "SELECT id, started_at, clock_synchronized, received_at FROM recordings "
            "ORDER BY device, seq"
        ).fetchall()
        for recording_id, started, synchronized, received_at in rows:
            if synchronized and started:
                aged_from = datetime.fromisoformat(started).timestamp()
            else:
                aged_from = float(received_at)
            if aged_from < limit:
                try:
                    self.delete(recording_id, f"retention: older than {days:g} days")
                    gone.append(recording_id)
                except PermissionError:
                    continue
        kept = {
            (str(device), seq)
            for recording_id, device in self.db.execute("SELECT id, device FROM recordings")
            for seq in self._call_events(str(device), str(recording_id))
        }
        old = self.db.execute(
            "SELECT device, seq FROM events WHERE received_at < ? "
            "AND json_extract(body, '$.erased') IS NULL",
            (limit,),
        ).fetchall()
        by_device: dict[str, list[int]] = {}
        for device, seq in old:
            if (str(device), int(seq)) not in kept:
                by_device.setdefault(str(device), []).append(int(seq))
        if by_device:
            self.db.execute("BEGIN IMMEDIATE")
            for device, seqs in by_device.items():
                self._erase(device, seqs, f"retention: older than {days:g} days")
            self.db.execute("COMMIT")
            self._shred_free_pages()
        return gone

    def deletions(self) -> list[dict[str, Any]]:
        cursor = self.db.execute(
            "SELECT id, device, at, reason, prev, hash FROM deletions ORDER BY rowid"
        )
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def audit_log(self) -> list[dict[str, Any]]:
        cursor = self.db.execute(
            "SELECT at, who, action, recording, reason FROM audit ORDER BY rowid"
        )
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def forget(self, device: str, recording_id: str, path: Path) -> None:
        """Drop an upload that must not be kept (its file and key; nothing was indexed)."""
        self.db.execute("DELETE FROM vault_keys WHERE id = ?", (recording_id,))
        self.db.execute("DELETE FROM uploads WHERE device = ? AND id = ?", (device, recording_id))
        path.unlink(missing_ok=True)

    def received(self, device: str, recording_id: str) -> int:
        """Bytes of an upload received from its start without a hole, and synced."""
        row = self.db.execute(
            "SELECT received FROM uploads WHERE device = ? AND id = ?", (device, recording_id)
        ).fetchone()
        ranges = json.loads(row[0]) if row else []
        if not ranges or ranges[0][0] != 0:
            return 0
        part = self.data_dir / "incoming" / device / f"{recording_id}.part"
        with open(part, "rb+") as file:
            os.fsync(file.fileno())
        return int(ranges[0][1])

    def follow_chain(self, device: str, seq: object, prev: object, head: object) -> str:
        """Link one recording into its device's chain; '' if it fits, else what is wrong.

        Recordings may arrive out of order (an outage, a resend), so each is checked against
        both neighbours already here: the one before must hash to its `prev`, the one after
        must name its hash as `prev`. A jump past the highest seen is reported as a gap."""
        if not isinstance(seq, int) or not isinstance(head, str) or not isinstance(prev, str):
            return "no sequence number or header hash"
        self.db.execute(
            "INSERT OR REPLACE INTO chain_links (device, seq, prev, head) VALUES (?, ?, ?, ?)",
            (device, seq, prev, head),
        )

        def link(at: int, column: str) -> str | None:
            row = self.db.execute(
                f"SELECT {column} FROM chain_links WHERE device = ? AND seq = ?", (device, at)
            ).fetchone()
            return None if row is None else str(row[0])

        problems = []
        row = self.db.execute("SELECT seq, head FROM chains WHERE device = ?", (device,)).fetchone()
        last, last_head = (int(row[0]), str(row[1])) if row else (0, "")
        before = link(seq - 1, "head") or (last_head if seq - 1 == last else None)
        if before is not None and before != prev:
            problems.append(
                f"seq {seq} does not follow on from seq {seq - 1} (its prev hash differs)"
            )
        after = link(seq + 1, "prev")
        if after is not None and after != head:
            problems.append(
                f"seq {seq + 1} does not follow on from seq {seq} (its prev hash differs)"
            )
        if row is not None and seq > last + 1:
            problems.append(
                f"recordings {last + 1}..{seq - 1} have not arrived (deleted, or still coming)"
            )
        if seq > last:
            self.db.execute(
                "INSERT OR REPLACE INTO chains (device, seq, head) VALUES (?, ?, ?)",
                (device, seq, head),
            )
        return "; ".join(problems)

    def index(
        self,
        device: str,
        recording_id: str,
        path: Path,
        sha256: str,
        facts: dict[str, Any],
        received_at: float,
    ) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO recordings (id, device, seq, line, started_at, duration, "
            "state, caller_number, called_number, path, sha256, received_at, clock_synchronized) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                recording_id,
                device,
                facts.get("seq"),
                facts.get("line"),
                facts.get("started_at"),
                facts.get("duration"),
                facts.get("state"),
                facts.get("caller_number"),
                facts.get("called_number"),
                str(path),
                sha256,
                received_at,
                bool(facts.get("clock_synchronized")),
            ),
        )
        self.db.execute("DELETE FROM uploads WHERE device = ? AND id = ?", (device, recording_id))

    def recordings(self) -> list[dict[str, Any]]:
        cursor = self.db.execute(
            "SELECT id, device, line, started_at, duration, state, caller_number, "
            "called_number, path FROM recordings ORDER BY device, seq"
        )
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def audit(
        self, action: str, recording_id: str | None, reason: str, who: str | None = None
    ) -> None:
        """Every access at the collector leaves a record: who, when, what, why (hash-chained;
        `who` defaults to the account of the real uid)."""
        from linerec.collector.audit import AuditLog, cli_user

        AuditLog(self.db).record(
            who=who or cli_user(), action=action, recording=recording_id, reason=reason
        )

    def next_command_counter(self, device: str) -> int:
        """The next command number for `device` (the device refuses any not above the last):
        above our own count and above any counter the device's stored events tell of."""
        row = self.db.execute(
            "SELECT counter FROM command_counters WHERE device = ?", (device,)
        ).fetchone()
        told = self.db.execute(
            "SELECT max(max(coalesce(json_extract(body, '$.counter'), 0),"
            " coalesce(json_extract(body, '$.last_counter'), 0))) FROM events"
            " WHERE device = ? AND json_extract(body, '$.event') IN"
            " ('command_done', 'command_refused')",
            (device,),
        ).fetchone()
        known = max(int(row[0]) if row else 0, int(told[0]) if told and told[0] else 0)
        counter = known + 1
        self.db.execute(
            "INSERT OR REPLACE INTO command_counters (device, counter) VALUES (?, ?)",
            (device, counter),
        )
        return counter

    def learn_command_counter(self, device: str, accepted: int) -> None:
        """The device says it has accepted counters up to `accepted` (its status, or a
        refusal): the next command goes above it, even if this database forgot (restored)."""
        self.db.execute(
            "INSERT INTO command_counters (device, counter) VALUES (?, ?) "
            "ON CONFLICT (device) DO UPDATE SET counter = max(counter, excluded.counter)",
            (device, accepted),
        )

    # -- the console's queries (the SQL is in linerec.collector.search) ----------------------

    def search(self, query: RecordingQuery) -> tuple[list[dict[str, Any]], int]:
        """One page of the recordings a query matches, and how many match in all."""
        from linerec.collector.search import run_search

        return run_search(self.db, query)

    def uncatalogued(self, limit: int = 200) -> list[dict[str, Any]]:
        """Recordings whose metadata the search catalog has not read yet."""
        from linerec.collector.search import uncatalogued

        return uncatalogued(self.db, limit)

    def catalog(self, device: str, recording_id: str, metadata: dict[str, Any]) -> None:
        """Keep a recording's label, direction, consent and clock state for search."""
        from linerec.collector.search import catalog

        catalog(self.db, device, recording_id, metadata)

    def recording(self, recording_id: str) -> dict[str, Any] | None:
        return next((r for r in self.recordings() if r["id"] == recording_id), None)


def _merge(ranges: list[list[int]], new: list[int]) -> list[list[int]]:
    merged: list[list[int]] = []
    for start, end in sorted([*ranges, new]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged
