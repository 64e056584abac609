"""Where the collector keeps what arrives: files on disk, an index in its database (SQLite or
PostgreSQL: linerec.collector.database; several collector processes may share one).

    <data_dir>/recordings/<device>/<id>.lrec.vault    recordings, as sealed on the appliance, each
                                                     encrypted again under a key of its own
    <data_dir>/recordings/<device>/.<id>.lrec.vault.<random>    a vault being written (left
                                                     by a killed process: housekeeping removes it)
    <data_dir>/incoming/<device>/<id>.part      uploads under way (pieces written at their offset)
    <data_dir>/quarantine/<device>/<id>.<sha>.bin   uploads that were whole but not a recording
                                                     of that device: kept apart, with the reason
    <database> (default <data_dir>/collector.db, or a PostgreSQL URI; schema and migrations
               in schema.py)

A recording is named by its device and its id together, everywhere: in the tables, in the
paths, and at the command line (`DEVICE/ID`, or an ID only one device has).

Deleting a recording destroys its key (kept in the database; SQLite's `secure_delete`
overwrites it), so every copy of the file, backups included, is unreadable from then on:
crypto-shredding.
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

import json
import logging
import os
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from linerec.collector.audit import entry_hash
from linerec.collector.database import connect, rows_of, upsert
from linerec.collector.schema import prepare
from linerec.collector.uploads import STREAMING, UploadLimits, Uploads
from linerec.collector.vault import SUFFIX as VAULT_SUFFIX
from linerec.collector.vault import VaultFile, is_vault_temp, read_vault, write_vault
from linerec.ids import device_of
from linerec.uplink.commands import MAX_COUNTER

if TYPE_CHECKING:
    from linerec.collector.search import Page, RecordingQuery
    from linerec.store.keys import CollectorPrivate

log = logging.getLogger(__name__)
_CALL_ENDS = ("hung_up", "missed_call", "notice_abandoned", "recording_sealed")

CALL_EVENTS = 1000  # events a call may span up to its recording_sealed (see add_event)
QUARANTINE_KEEP = 20  # quarantined uploads kept per device (the oldest go first)
RECORDING_COLUMNS = (
    "device", "id", "seq", "line", "started_at", "duration", "state", "caller_number",
    "called_number", "path", "sha256", "received_at", "clock_synchronized",
)  # fmt: skip
CATALOG_BATCH = 200  # recordings the console catalogs at a time
_ROWS = 200  # rows a statement writes or reads at most (bounded parameters, either engine)


class CollectorStore:
    def __init__(
        self,
        data_dir: Path,
        database: Path | str,
        limits: UploadLimits | None = None,
        *,
        create: bool = True,
    ) -> None:
        """`database`: a SQLite file or a PostgreSQL URI (linerec.collector.database). An empty
        database gets the schema (unless not `create`); one of another schema version is
        refused (SchemaVersionError: `linerec collector migrate` brings an older one up)."""
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.db = connect(database)
        try:
            prepare(self.db, create=create)
        except BaseException:
            self.db.close()
            raise
        self.uploads = Uploads(self.db, data_dir / "incoming", limits or UploadLimits())

    def transaction(self) -> AbstractContextManager[None]:
        """One write transaction (joined by any begun inside it): what several collector
        processes read and then write stays right whoever else writes (database.py)."""
        return self.db.transaction()

    # -- events ------------------------------------------------------------------------------

    def add_event(self, device: str, body: dict[str, Any], received_at: float) -> bool:
        """Store an event once (False if it was here already); moves the device's mark."""
        stored = self._event_step(device, body, received_at, None)
        assert stored is not None  # no window: never refused
        return stored[0]

    def store_event(
        self, device: str, body: dict[str, Any], received_at: float, *, window: int
    ) -> int | None:
        """Store an event once and move the device's mark: the mark after (the highest n such
        that events 1..n are here). None, and nothing stored, if its seq is more than
        `window` beyond the mark."""
        stored = self._event_step(device, body, received_at, window)
        return None if stored is None else stored[1]

    def store_events(
        self, events: Sequence[tuple[str, dict[str, Any]]], received_at: float, *, window: int
    ) -> list[int | None]:
        """`store_event` for each of `events` (device, body), in order, in one transaction: a
        statement per table for them all, not per event (each statement is a round trip to
        a server). Each event's answer is its device's mark after all of them, or None if it
        was refused. A device whose events the window could refuse, or with deletions (its
        events may be erased as they land), has them stored one by one, as if alone."""
        with self.transaction():
            devices = list(dict.fromkeys(device for device, _ in events))
            self.db.lock_keys([f"device {device}" for device in devices])
            seqs: dict[str, list[int]] = {device: [] for device in devices}
            for device, body in events:
                seqs[device].append(int(body["seq"]))
            marks: dict[str, int] = {}  # the devices stored together: their marks before
            alone: set[str] = set()
            for device, upto, has_deletions in self._marks(devices):
                upto = self.contiguous_seq(device) if upto is None else int(upto)
                if has_deletions or max(seqs[device]) > upto + window:
                    alone.add(device)
                else:
                    marks[device] = upto
            together = [(device, body) for device, body in events if device in marks]
            for chunk in _chunks(together, _ROWS):
                # A number stored before, or twice in the chunk: the first stored is kept.
                self.db.execute(
                    "INSERT INTO events (device, seq, body, received_at) VALUES "
                    f"{rows_of(len(chunk), 4)} ON CONFLICT DO NOTHING",
                    [
                        value
                        for device, body in chunk
                        for value in (
                            device,
                            int(body["seq"]),
                            json.dumps(body, sort_keys=True),
                            received_at,
                        )
                    ],
                )
            marks.update(self._move_marks({d: u for d, u in marks.items() if max(seqs[d]) > u}))
            answers: list[int | None] = []
            for device, body in events:
                if device in alone:
                    stored = self._add_event(device, body, received_at, window)
                    answers.append(None if stored is None else stored[1])
                else:
                    answers.append(marks[device])
            return answers

    def _marks(self, devices: list[str]) -> list[tuple[str, int | None, bool]]:
        """(device, its mark or None if it has none yet, whether it has deletions) of each."""
        found: list[tuple[str, int | None, bool]] = []
        for chunk in _chunks(devices, _ROWS):
            found.extend(
                (str(device), upto, bool(has_deletions))
                for device, upto, has_deletions in self.db.execute(
                    f"WITH v (device) AS (VALUES {rows_of(len(chunk), 1)}) "
                    "SELECT v.device, (SELECT upto FROM event_marks WHERE device = v.device), "
                    "EXISTS (SELECT 1 FROM deletions WHERE device = v.device) FROM v",
                    chunk,
                ).fetchall()
            )
        return found

    def _move_marks(self, marks: dict[str, int]) -> dict[str, int]:
        """Each device's mark moved to the end of the run of events from it up (as `_add_event`
        does for one): the marks now of those that moved."""
        moved: dict[str, int] = {}
        for chunk in _chunks(list(marks.items()), _ROWS):
            ends = [
                (str(device), int(end))
                for device, end in self.db.execute(
                    f"WITH v (device, upto) AS (VALUES {rows_of(len(chunk), 2)}) "
                    "SELECT v.device, CASE WHEN EXISTS (SELECT 1 FROM events "
                    "WHERE device = v.device AND seq = v.upto + 1) THEN (SELECT MIN(seq) FROM "
                    "events AS e WHERE device = v.device AND seq > v.upto AND NOT EXISTS (SELECT "
                    "1 FROM events WHERE device = e.device AND seq = e.seq + 1)) END FROM v",
                    [value for pair in chunk for value in pair],
                ).fetchall()
                if end is not None and int(end) > marks[str(device)]
            ]
            if ends:
                moved.update(
                    (str(device), int(upto))
                    for device, upto in self.db.execute(
                        f"INSERT INTO event_marks (device, upto) VALUES {rows_of(len(ends), 2)} "
                        "ON CONFLICT (device) DO UPDATE SET upto = "
                        f"{self.db.greatest('event_marks.upto', 'excluded.upto')} "
                        "RETURNING device, upto",
                        [value for pair in ends for value in pair],
                    ).fetchall()
                )
        return moved

    def _event_step(
        self, device: str, body: dict[str, Any], received_at: float, window: int | None
    ) -> tuple[bool, int] | None:
        with self.transaction():  # the mark is read and moved as one step
            # One device's events one writer at a time: on PostgreSQL two transactions do not
            # see each other's rows, and neighbours stored at once would leave a false gap.
            self.db.lock_key(f"device {device}")
            return self._add_event(device, body, received_at, window)

    def _add_event(
        self, device: str, body: dict[str, Any], received_at: float, window: int | None
    ) -> tuple[bool, int] | None:
        """(stored now, not before; the mark after), or None if refused (see store_event)."""
        seq = int(body["seq"])
        # The device's mark and whether it has deletions, in one round trip (a server's
        # round trips, not its work, are most of what an event costs).
        upto, has_deletions = self.db.execute(
            "SELECT (SELECT upto FROM event_marks WHERE device = ?), "
            "EXISTS (SELECT 1 FROM deletions WHERE device = ?)",
            (device, device),
        ).fetchone()
        upto = self.contiguous_seq(device) if upto is None else int(upto)
        if window is not None and seq > upto + window:
            return None
        added = self.db.execute(
            "INSERT INTO events (device, seq, body, received_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (device, seq, json.dumps(body, sort_keys=True), received_at),
        ).rowcount
        if seq > upto:  # stored now or before: a write cut off before the mark moved comes again
            # The end of the run of events from the mark up, if the one after the mark is
            # here: each event is stepped over once in all. Looking whenever an event lands
            # above the mark (not only just above it) lets the last of two processes storing
            # neighbours at once see both and move the mark past them.
            (end,) = self.db.execute(
                "SELECT CASE WHEN EXISTS (SELECT 1 FROM events WHERE device = ? AND seq = ?) "
                "THEN (SELECT MIN(seq) FROM events AS e WHERE device = ? AND seq > ? AND NOT "
                "EXISTS (SELECT 1 FROM events WHERE device = e.device AND seq = e.seq + 1)) END",
                (device, upto + 1, device, upto),
            ).fetchone()
            if end is not None and int(end) > upto:
                upto = self._mark(device, int(end))
        # Part of a call whose recording was deleted before this arrived: erase it now. Only
        # a device with deletions can have such a call, and a call's sealing event comes within
        # CALL_EVENTS of its others: so a device sending its numbers backwards costs no scan
        # of everything it sent before.
        row = None
        if has_deletions:
            field = self.db.json_text
            row = self.db.execute(
                f"SELECT e.id FROM (SELECT {field('body', 'id')} AS id FROM "
                "(SELECT seq, body FROM events WHERE device = ? AND seq >= ? ORDER BY seq "
                f"LIMIT ?) AS w WHERE {field('body', 'line')} IS NOT DISTINCT FROM ? "
                f"AND {field('body', 'event')} = 'recording_sealed' ORDER BY seq LIMIT 1) AS e "
                "JOIN deletions AS d ON d.id = e.id AND d.device = ?",
                (device, seq, CALL_EVENTS, _text(body.get("line")), device),
            ).fetchone()
        if row is not None:
            self._erase(device, self._call_events(device, str(row[0])), str(row[0]))
        return bool(added), upto

    def _call_events(self, device: str, recording_id: str) -> list[int]:
        """Sequence numbers of the events of the call `recording_id` recorded (see above)."""
        field = self.db.json_text
        sealed = self.db.execute(
            f"SELECT seq, {field('body', 'line')} FROM events WHERE device = ? "
            f"AND {field('body', 'event')} = 'recording_sealed' "
            f"AND {field('body', 'id')} = ?",
            (device, recording_id),
        ).fetchone()
        if sealed is None:
            return []  # not here yet: erased when it comes
        end, line = int(sealed[0]), sealed[1]
        on_line = f"device = ? AND {field('body', 'line')} IS NOT DISTINCT FROM ?"

        def last_before(seq: int, events: tuple[str, ...]) -> int | None:
            marks = ", ".join("?" * len(events))
            row = self.db.execute(
                f"SELECT MAX(seq) FROM events WHERE {on_line} AND seq < ? "
                f"AND {field('body', 'event')} IN ({marks})",
                (device, line, seq, *events),
            ).fetchone()
            return None if row[0] is None else int(row[0])

        started = last_before(end, ("recording_started",))
        previous = last_before(started if started is not None else end, _CALL_ENDS) or 0
        return [
            int(row[0])
            for row in self.db.execute(
                f"SELECT seq FROM events WHERE {on_line} AND seq > ? AND seq <= ? "
                f"AND {field('body', 'event')} IS DISTINCT FROM 'recording_deleted'",
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
        """Old page images must not outlive a deletion (see Database.shred_free_pages)."""
        self.db.shred_free_pages()

    def _shred_free_pages_later(self) -> None:
        """After a commit that deleted a recording: said if it cannot be done now (the next
        deletion or start does it), never raised into the work that committed."""
        try:
            self._shred_free_pages()
        except Exception as exc:  # sqlite3 or psycopg: what matters is that it is said
            log.warning("deleted data may remain in the database files for now: %s", exc)

    def _mark(self, device: str, upto: int) -> int:
        """Events 1..upto of `device` are all here (a mark never moves back: another process
        may have moved it further already); the mark now."""
        (mark,) = self.db.execute(
            "INSERT INTO event_marks (device, upto) VALUES (?, ?) ON CONFLICT (device) "
            f"DO UPDATE SET upto = {self.db.greatest('event_marks.upto', 'excluded.upto')} "
            "RETURNING upto",
            (device, upto),
        ).fetchone()
        return int(mark)

    def contiguous_seq(self, device: str) -> int:
        """The highest n such that events 1..n of `device` are all here."""
        row = self.db.execute("SELECT upto FROM event_marks WHERE device = ?", (device,)).fetchone()
        if row is not None:
            return int(row[0])
        # No mark yet (a database from before marks): find the first hole once.
        first_missing = self.db.execute(
            "SELECT MIN(seq) + 1 FROM events AS e WHERE device = ? AND NOT EXISTS "
            "(SELECT 1 FROM events WHERE device = e.device AND seq = e.seq + 1)",
            (device,),
        ).fetchone()[0]
        has_first = self.db.execute(
            "SELECT 1 FROM events WHERE device = ? AND seq = 1", (device,)
        ).fetchone()
        upto = int(first_missing) - 1 if has_first and first_missing else 0
        self._mark(device, upto)
        return upto

    def gaps(self, device: str, limit: int = 10) -> list[tuple[int, int]]:
        """The first `limit` runs of missing sequence numbers (first, last), above the mark and
        below the highest received: ranges, never lists, so a far number costs nothing. Each
        run is found by index seeks; the events between two runs are walked only to find a
        next run, so the first costs the same however many events are stored above it."""
        expected = self.contiguous_seq(device) + 1
        runs: list[tuple[int, int]] = []
        while len(runs) < limit:
            (present,) = self.db.execute(
                "SELECT MIN(seq) FROM events WHERE device = ? AND seq >= ?", (device, expected)
            ).fetchone()
            if present is None:
                break
            if present > expected:
                runs.append((expected, present - 1))
                if len(runs) >= limit:
                    break
            (last,) = self.db.execute(  # the end of the run of events that starts there
                "SELECT MIN(seq) FROM events AS e WHERE device = ? AND seq >= ? AND NOT EXISTS "
                "(SELECT 1 FROM events WHERE device = e.device AND seq = e.seq + 1)",
                (device, present),
            ).fetchone()
            expected = int(last) + 1
        return runs

    # -- recordings ------------------------------------------------------------------------------

    def stored(self, device: str, recording_id: str) -> tuple[str, str] | None:
        row = self.db.execute(
            "SELECT path, sha256 FROM recordings WHERE id = ? AND device = ?",
            (recording_id, device),
        ).fetchone()
        return (str(row[0]), str(row[1])) if row else None

    def keep(self, device: str, recording_id: str, part: Path) -> Path:
        """A whole, checked upload becomes a recording at rest under a key of its own."""
        final_dir = self.data_dir / "recordings" / device
        final_dir.mkdir(parents=True, exist_ok=True)
        final = final_dir / f"{recording_id}{VAULT_SUFFIX}"
        # The file and its key change together, under the device's lock: two processes
        # finishing the same upload (a redelivery) leave one file and the key that opens it.
        with self.db.transaction():
            self.db.lock_key(f"device {device}")
            kept = self.db.execute(
                "SELECT 1 FROM vault_keys WHERE device = ? AND id = ?", (device, recording_id)
            ).fetchone()
            if kept is not None and final.exists() and not part.exists():
                return final  # another process kept it (and took the part file)
            key = os.urandom(32)
            write_vault(part, final, key, device, recording_id)
            if kept is None:  # undone, no key opens it: it goes too
                self.db.after_rollback(lambda: final.unlink(missing_ok=True))
            self.db.execute(
                upsert("vault_keys", ("device", "id", "key"), ("device", "id")),
                (device, recording_id, key),
            )
            # kept until it is indexed: the message's transaction commits
            self.db.after_commit(lambda: part.unlink(missing_ok=True))
        return final

    def remove_vault_temps(self, now: float) -> list[str]:
        """Remove the temporary files of vault writes a killed process left in
        `recordings/<device>/` (encrypted audio no row names, kept forever otherwise) once
        unwritten as long as an upload may sit unfinished: another process sharing the data
        directory may be writing one now. Nothing else there is touched. Returns
        'device/name' of each removed."""
        limit = now - self.uploads.limits.expire_after
        gone = []
        for directory in sorted((self.data_dir / "recordings").glob("*/")):
            if directory.is_symlink():  # not a directory the collector made
                continue
            for path in sorted(directory.iterdir()):
                if not is_vault_temp(path.name, directory.name):
                    continue
                try:
                    facts = path.lstat()
                except FileNotFoundError:  # its write finished meanwhile
                    continue
                if not stat.S_ISREG(facts.st_mode) or facts.st_mtime >= limit:
                    continue  # a link or a directory is not one we wrote; a young one may be
                path.unlink(missing_ok=True)
                gone.append(f"{directory.name}/{path.name}")
        return gone

    def read_recording(self, recording_id: str, path: Path, device: str | None = None) -> bytes:
        """The recording as the appliance sealed it (ValueError once it has been deleted)."""
        return b"".join(self.open_recording(recording_id, path, device))

    def open_recording(
        self, recording_id: str, path: Path, device: str | None = None
    ) -> Iterator[bytes]:
        """The recording as the appliance sealed it, block by block (bounded memory)."""
        device, key = self._vault_key(recording_id, device)
        return read_vault(path, key, device, recording_id)

    def vault_file(self, recording_id: str, path: Path, device: str | None = None) -> VaultFile:
        """The recording as the appliance sealed it, read at any offset (a player's seek)."""
        device, key = self._vault_key(recording_id, device)
        return VaultFile(path, key, device, recording_id)

    def _vault_key(self, recording_id: str, device: str | None) -> tuple[str, bytes]:
        if device is None:
            rows = self.db.execute(
                "SELECT device, key FROM vault_keys WHERE id = ?", (recording_id,)
            ).fetchall()
        else:
            rows = self.db.execute(
                "SELECT device, key FROM vault_keys WHERE device = ? AND id = ?",
                (device, recording_id),
            ).fetchall()
        if not rows:
            raise ValueError(f"{recording_id}: its key is gone (deleted): no copy can be read")
        if len(rows) > 1:
            raise ValueError(f"{recording_id}: several devices have this id: name the device")
        return str(rows[0][0]), bytes(rows[0][1])

    # -- quarantine: whole uploads that are not a recording of their device ------------------

    def quarantine(
        self, device: str, recording_id: str, sha256: str, part: Path, reason: str, now: float
    ) -> Path:
        """Keep a whole upload apart from the recordings, with why; the oldest go beyond
        QUARANTINE_KEEP per device, so a device cannot fill the disk this way."""
        where = self.data_dir / "quarantine" / device
        where.mkdir(parents=True, exist_ok=True)
        kept = where / f"{recording_id}.{sha256[:16]}.bin"
        size = part.stat().st_size
        with self.transaction():
            # Linked now, the part file unlinked once committed (uploads.drop): rolled back, the
            # upload is as it was and the link goes, so files and rows never part ways.
            kept.unlink(missing_ok=True)  # left by a rollback a crash cut short
            os.link(part, kept)
            self.db.after_rollback(lambda: kept.unlink(missing_ok=True))
            self.db.execute(
                upsert(
                    "quarantine",
                    ("device", "id", "sha256", "size", "reason", "path", "received_at"),
                    ("device", "id", "sha256"),
                ),
                (device, recording_id, sha256, size, reason, str(kept), now),
            )
            self.uploads.drop(device, recording_id)
            old = self.db.execute(  # at most QUARANTINE_KEEP + 1 rows: the rest went before
                "SELECT id, sha256, path FROM quarantine WHERE device = ? "
                "ORDER BY received_at DESC, rowid DESC",
                (device,),
            ).fetchall()[QUARANTINE_KEEP:]
            for old_id, old_sha, old_path in old:
                self.db.execute(
                    "DELETE FROM quarantine WHERE device = ? AND id = ? AND sha256 = ?",
                    (device, old_id, old_sha),
                )
                # the file once that can no longer be undone
                self.db.after_commit(partial(Path(old_path).unlink, missing_ok=True))
        return kept

    def quarantined(self, device: str | None = None) -> list[dict[str, Any]]:
        where, parameters = ("WHERE device = ?", (device,)) if device is not None else ("", ())
        cursor = self.db.execute(
            "SELECT device, id, sha256, size, reason, path, received_at FROM quarantine "
            f"{where} ORDER BY received_at, device, id",
            parameters,
        )
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def arrival(
        self, device: str, recording_id: str, sha256: str
    ) -> tuple[str | None, str | None, bool]:
        """What a piece of `recording_id` with this SHA-256 meets, in one round trip: the
        SHA-256 it is stored with (None: not stored), why this content was quarantined (None:
        it was not), and whether it is being streamed."""
        stored, quarantined, upload = self.db.execute(
            "SELECT (SELECT sha256 FROM recordings WHERE device = ? AND id = ?), "
            "(SELECT reason FROM quarantine WHERE device = ? AND id = ? AND sha256 = ?), "
            "(SELECT sha256 FROM uploads WHERE device = ? AND id = ?)",
            (device, recording_id, device, recording_id, sha256, device, recording_id),
        ).fetchone()
        return (
            None if stored is None else str(stored),
            None if quarantined is None else str(quarantined),
            upload == STREAMING,
        )

    # -- finding a recording from the command line -------------------------------------------

    def find(self, reference: str, device: str | None = None) -> dict[str, Any]:
        """The one recording `reference` names: `DEVICE/ID`, an ID with `device`, or an ID
        that only one device has. KeyError saying what is wrong otherwise."""
        device, recording_id = split_reference(reference, device)
        rows = [
            r
            for r in self._recordings("WHERE id = ?", (recording_id,))
            if device is None or r["device"] == device
        ]
        if not rows:
            where = f" from device {device!r}" if device else ""
            raise KeyError(f"no recording {recording_id!r}{where} at this collector")
        if len(rows) > 1:
            devices = ", ".join(r["device"] for r in rows)
            raise KeyError(
                f"{recording_id!r} is the id of a recording from several devices ({devices}): "
                "say which, as DEVICE/ID or with --device"
            )
        return rows[0]

    def delete(
        self, recording_id: str, reason: str, device: str | None = None, who: str | None = None
    ) -> dict[str, Any]:
        """Crypto-shred a recording: its key goes, then its file; the deletion log grows.
        `who`: the console's user (by default the account of the real uid)."""
        row = self.find(recording_id, device)
        recording_id, device = row["id"], row["device"]
        if self.is_held(device, recording_id):
            raise PermissionError(f"{device}/{recording_id} is on legal hold")
        # Key gone and deletion logged together, or neither; one chain whoever deletes.
        with self.db.transaction(lock="deletions"):
            self.db.execute(
                "DELETE FROM vault_keys WHERE device = ? AND id = ?", (device, recording_id)
            )
            gone = self.db.execute(
                "DELETE FROM recordings WHERE device = ? AND id = ?", (device, recording_id)
            ).rowcount
            if not gone:  # another process deleted it meanwhile: logged once, by that one
                raise KeyError(f"no recording {recording_id!r} from device {device!r}: deleted")
            # what its metadata said goes with it (and a recording stored again is read again)
            self.db.execute(
                "DELETE FROM console_catalog WHERE device = ? AND id = ?", (device, recording_id)
            )
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
            digest = entry_hash(entry)  # the deletion log is chained as the audit log is
            self.db.execute(
                "INSERT INTO deletions (id, device, at, reason, prev, hash) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (recording_id, row["device"], entry["at"], reason, entry["prev"], digest),
            )
        # Inside a larger transaction (a device's opt-out, in the collector's batch) the file
        # goes once that commits, and the old pages are shredded after it.
        self.db.after_commit(partial(Path(row["path"]).unlink, missing_ok=True))
        self.audit("delete", recording_id, reason, who=who)
        if self.db.in_transaction:
            self.db.after_commit(self._shred_free_pages_later)
        else:
            self._shred_free_pages()  # no old page keeps the key or a number around
        return {**entry, "hash": digest}

    def hold(self, recording_id: str, held: bool, device: str | None = None) -> str:
        """Put on (or lift) a legal hold; returns `DEVICE/ID`. A recording not here yet may be
        held too: its device is the one named, or the one its id begins with."""
        try:
            row = self.find(recording_id, device)
            device, recording_id = row["device"], row["id"]
        except KeyError:
            device, recording_id = split_reference(recording_id, device)
            device = device or device_of(recording_id)
            if (
                device is None
                or self.db.execute(
                    "SELECT 1 FROM recordings WHERE id = ?", (recording_id,)
                ).fetchone()
            ):
                raise
        if held:
            self.db.execute(
                "INSERT INTO holds (device, id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (device, recording_id),
            )
        else:
            self.db.execute("DELETE FROM holds WHERE device = ? AND id = ?", (device, recording_id))
            self._shred_kept_original(device, recording_id)
        return f"{device}/{recording_id}"

    # -- the fleet: each device's retained status and health (linerec.collector.fleet) ------

    def keep_status(self, device: str, kind: str, body: dict[str, Any], now: float) -> None:
        """The latest `status` or `health` a device published (checked by the caller)."""
        from linerec.collector import fleet

        (fleet.keep_status if kind == "status" else fleet.keep_health)(self.db, device, body, now)

    def fleet(self) -> list[dict[str, Any]]:
        """Every device known here: its status, health, last recording and gaps."""
        from linerec.collector import fleet

        return [
            {**fleet.overview(self.db, device), "event_gaps": self.gaps(device)}
            for device in fleet.devices(self.db)
        ]

    # -- versions: a redaction takes the original's place (linerec.collector.redaction) ------

    def keep_version(
        self,
        device: str,
        recording_id: str,
        sealed: bytes,
        *,
        version: int,
        keep_original: bool,
        span: dict[str, Any],
    ) -> Path:
        """A new version of a recording (made and signed here) takes the place of the one
        held: a key of its own, the old key destroyed with the old file, unless
        `keep_original` (legal hold): then the original's key and file are kept aside, read by
        nobody, until the hold is lifted. The SHA-256 the appliance delivered stays in the
        index, so a redelivery of the original is acknowledged again, never stored again."""
        row = self.find(recording_id, device)
        incoming = self.data_dir / "incoming" / device
        incoming.mkdir(parents=True, exist_ok=True)
        part = incoming / f"{recording_id}.v{version}.part"  # sealed to us: no clear audio
        part.write_bytes(sealed)
        final = self.data_dir / "recordings" / device / f"{recording_id}.v{version}{VAULT_SUFFIX}"
        key = os.urandom(32)
        write_vault(part, final, key, device, recording_id)
        part.unlink()
        try:  # new key, new path and the record, or none of them
            with self.db.transaction():
                (old_key,) = self.db.execute(
                    "SELECT key FROM vault_keys WHERE device = ? AND id = ?", (device, recording_id)
                ).fetchone()
                if keep_original:
                    self.db.execute(
                        "INSERT INTO kept_originals (device, id, key, path) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (device, recording_id, old_key, row["path"]),
                    )
                self.db.execute(
                    "UPDATE vault_keys SET key = ? WHERE device = ? AND id = ?",
                    (key, device, recording_id),
                )
                self.db.execute(
                    "UPDATE recordings SET path = ? WHERE device = ? AND id = ?",
                    (str(final), device, recording_id),
                )
                self.db.execute(
                    'INSERT INTO redactions (device, id, version, start, "end", reason, who, at, '
                    "original_kept) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (device, recording_id, version, span["from"], span["to"], span["reason"],
                     span["by"], span["at"], int(keep_original)),
                )  # fmt: skip
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        if not keep_original:
            Path(row["path"]).unlink(missing_ok=True)
        self._shred_free_pages()  # the old key leaves no page behind
        return final

    def redactions(self, device: str, recording_id: str) -> list[dict[str, Any]]:
        """The spans silenced in a recording, oldest first (empty if never redacted)."""
        cursor = self.db.execute(
            'SELECT version, start, "end", reason, who, at, original_kept FROM redactions '
            "WHERE device = ? AND id = ? ORDER BY version",
            (device, recording_id),
        )
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def original_kept(self, device: str, recording_id: str) -> bool:
        """Is the original of a redacted recording kept (for a legal hold)?"""
        return bool(
            self.db.execute(
                "SELECT 1 FROM kept_originals WHERE device = ? AND id = ?", (device, recording_id)
            ).fetchone()
        )

    def read_kept_original(self, device: str, recording_id: str) -> bytes | None:
        """The original a redaction kept for a legal hold, as the appliance sealed it (None if
        none is kept)."""
        row = self.db.execute(
            "SELECT path, key FROM kept_originals WHERE device = ? AND id = ?",
            (device, recording_id),
        ).fetchone()
        if row is None:
            return None
        return b"".join(read_vault(Path(row[0]), bytes(row[1]), device, recording_id))

    def _shred_kept_original(self, device: str, recording_id: str) -> None:
        """The hold is lifted: the original a redaction kept for it goes as a deletion does."""
        row = self.db.execute(
            "SELECT path FROM kept_originals WHERE device = ? AND id = ?", (device, recording_id)
        ).fetchone()
        if row is None:
            return
        self.db.execute(
            "DELETE FROM kept_originals WHERE device = ? AND id = ?", (device, recording_id)
        )
        Path(row[0]).unlink(missing_ok=True)
        self._shred_free_pages()

    def is_held(self, device: str, recording_id: str) -> bool:
        return bool(
            self.db.execute(
                "SELECT 1 FROM holds WHERE device = ? AND id = ?", (device, recording_id)
            ).fetchone()
        )

    def enforce_retention(
        self, days: float, now: float | None = None, who: str | None = None
    ) -> list[str]:
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
            "SELECT device, id, started_at, clock_synchronized, received_at FROM recordings "
            "ORDER BY device, seq"
        ).fetchall()
        for device, recording_id, started, synchronized, received_at in rows:
            if synchronized and started:
                aged_from = datetime.fromisoformat(started).timestamp()
            else:
                aged_from = float(received_at)
            if aged_from < limit:
                try:
                    self.delete(
                        recording_id, f"retention: older than {days:g} days", device, who=who
                    )
                    gone.append(recording_id)
                except PermissionError:  # on hold
                    continue
                except KeyError:  # another collector process's sweep deleted it first
                    continue
        kept = {
            (str(device), seq)
            for recording_id, device in self.db.execute("SELECT id, device FROM recordings")
            for seq in self._call_events(str(device), str(recording_id))
        }
        old = self.db.execute(
            "SELECT device, seq FROM events WHERE received_at < ? "
            f"AND {self.db.json_text('body', 'erased')} IS NULL",
            (limit,),
        ).fetchall()
        by_device: dict[str, list[int]] = {}
        for device, seq in old:
            if (str(device), int(seq)) not in kept:
                by_device.setdefault(str(device), []).append(int(seq))
        if by_device:
            with self.db.transaction():
                for device, seqs in by_device.items():
                    self._erase(device, seqs, f"retention: older than {days:g} days")
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

    def follow_chain(self, device: str, seq: object, prev: object, head: object) -> str:
        """Link one recording into its device's chain; '' if it fits, else what is wrong.

        Recordings may arrive out of order (an outage, a resend), so each is checked against
        both neighbours already here: the one before must hash to its `prev`, the one after
        must name its hash as `prev`. A jump past the highest seen is reported as a gap."""
        if not isinstance(seq, int) or not isinstance(head, str) or not isinstance(prev, str):
            return "no sequence number or header hash"
        self.db.execute(
            upsert("chain_links", ("device", "seq", "prev", "head"), ("device", "seq")),
            (device, seq, prev, head),
        )

        # In one round trip: the neighbours' links, and how far the chain has come.
        linked_before, linked_after, last_seq, last_head = self.db.execute(
            "SELECT (SELECT head FROM chain_links WHERE device = ? AND seq = ?), "
            "(SELECT prev FROM chain_links WHERE device = ? AND seq = ?), "
            "(SELECT seq FROM chains WHERE device = ?), (SELECT head FROM chains WHERE device = ?)",
            (device, seq - 1, device, seq + 1, device, device),
        ).fetchone()
        problems = []
        known = last_seq is not None
        last, last_head = (int(last_seq), str(last_head)) if known else (0, "")
        before = (None if linked_before is None else str(linked_before)) or (
            last_head if seq - 1 == last else None
        )
        if before is not None and before != prev:
            problems.append(
                f"seq {seq} does not follow on from seq {seq - 1} (its prev hash differs)"
            )
        after = None if linked_after is None else str(linked_after)
        if after is not None and after != head:
            problems.append(
                f"seq {seq + 1} does not follow on from seq {seq} (its prev hash differs)"
            )
        if known and seq > last + 1:
            problems.append(
                f"recordings {last + 1}..{seq - 1} have not arrived (deleted, or still coming)"
            )
        if seq > last:  # only ever forward, whichever process saw which recording first
            self.db.execute(
                "INSERT INTO chains (device, seq, head) VALUES (?, ?, ?) ON CONFLICT (device) "
                "DO UPDATE SET seq = excluded.seq, head = excluded.head "
                "WHERE excluded.seq > chains.seq",
                (device, seq, head),
            )
        return "; ".join(problems)

    def absent(
        self,
        device: str,
        seq: object,
        recording_id: object,
        reason: str,
        prev: object,
        head: object,
    ) -> str:
        """Link a number the device deliberately left out (a call opted out while it was being
        recorded) into its chain: the next recording follows on from it, and no gap is said.
        '' if it fits, else what is wrong (as `follow_chain`)."""
        if type(seq) is not int or not 0 < seq < 2**53 or not isinstance(recording_id, str):
            return "no sequence number or id"
        if self.db.execute(
            "SELECT 1 FROM recordings WHERE device = ? AND seq = ?", (device, seq)
        ).fetchone():
            return f"seq {seq} is said to be {reason}, but its recording is here"
        self.db.execute(
            upsert("chain_absences", ("device", "seq", "id", "reason"), ("device", "seq")),
            (device, seq, recording_id, reason),
        )
        return self.follow_chain(device, seq, prev, head)

    def chain(self, device: str | None = None) -> list[dict[str, Any]]:
        """Each device's chain in order: every number linked (`stored`, `deleted` at the
        collector, or the reason it was left out on the device, e.g. `opted-out`), whether it
        follows on from the one before, and the numbers not here as `missing` ranges."""
        where, parameters = ("WHERE l.device = ?", (device,)) if device else ("", ())
        rows = self.db.execute(
            "SELECT l.device, l.seq, l.prev, l.head, r.id, a.id, a.reason FROM chain_links AS l "
            "LEFT JOIN recordings AS r ON r.device = l.device AND r.seq = l.seq "
            "LEFT JOIN chain_absences AS a ON a.device = l.device AND a.seq = l.seq "
            f"{where} ORDER BY l.device, l.seq",
            parameters,
        ).fetchall()
        report: list[dict[str, Any]] = []
        before: tuple[str, int, str] | None = None  # (device, seq, head) of the row before
        for dev, seq, prev, head, stored_id, absent_id, reason in rows:
            expected = 1 if before is None or before[0] != dev else before[1] + 1
            if seq > expected:
                report.append({"device": dev, "seq": expected, "last": seq - 1, "state": "missing"})
            if seq == 1:
                follows: bool | None = prev == ""
            elif before is not None and before[0] == dev and before[1] == seq - 1:
                follows = prev == before[2]
            else:
                follows = None  # the one before is not here: nothing to check against
            state = "stored" if stored_id else (reason or "deleted")
            report.append(
                {
                    "device": dev,
                    "seq": seq,
                    "id": stored_id or absent_id,
                    "state": state,
                    "follows_on": follows,
                }
            )
            before = (dev, seq, head)
        return report

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
            upsert("recordings", RECORDING_COLUMNS, ("device", "id")),
            (
                device,
                recording_id,
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
                int(bool(facts.get("clock_synchronized"))),
            ),
        )
        self.uploads.drop(device, recording_id)

    def recordings(self) -> list[dict[str, Any]]:
        return self._recordings("", ())

    def _recordings(self, where: str, parameters: tuple[object, ...]) -> list[dict[str, Any]]:
        cursor = self.db.execute(
            "SELECT id, device, line, started_at, duration, state, caller_number, "
            f"called_number, path FROM recordings {where} ORDER BY device, seq, id",
            parameters,
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

    def devices(self) -> list[str]:
        """Every device this collector has heard from (an event or a recording)."""
        rows = self.db.execute(
            "SELECT device FROM events UNION SELECT device FROM recordings ORDER BY device"
        )
        return [str(row[0]) for row in rows]

    def next_command_counter(self, device: str) -> int:
        """The next command number for `device` (the device refuses any not above the last):
        above our own count and above any counter the device's stored events tell of. Taken
        in one statement, so two processes never issue the same number."""
        field = self.db.json_text
        told = 0
        # The device writes its events: only whole numbers it could have accepted count, so
        # text, floats or a number past MAX_COUNTER can neither break nor exhaust the numbering.
        for (body,) in self.db.execute(
            f"SELECT body FROM events WHERE device = ? "
            f"AND {field('body', 'event')} IN ('command_done', 'command_refused')",
            (device,),
        ):
            event = json.loads(body)
            for value in (event.get("counter"), event.get("last_counter")):
                if type(value) is int and 0 <= value < MAX_COUNTER:
                    told = max(told, value)
        (counter,) = self.db.execute(
            "INSERT INTO command_counters (device, counter) VALUES (?, ?) ON CONFLICT (device) "
            "DO UPDATE SET counter = "
            f"{self.db.greatest('command_counters.counter + 1', 'excluded.counter')} "
            "RETURNING counter",
            (device, told + 1),
        ).fetchone()
        return int(counter)

    def learn_command_counter(self, device: str, accepted: int) -> None:
        """The device says it has accepted counters up to `accepted` (its status, or a
        refusal): the next command goes above it, even if this database forgot (restored)."""
        self.db.execute(
            "INSERT INTO command_counters (device, counter) VALUES (?, ?) ON CONFLICT (device) "
            "DO UPDATE SET counter = "
            f"{self.db.greatest('command_counters.counter', 'excluded.counter')}",
            (device, accepted),
        )

    # -- the console's queries (the SQL is in linerec.collector.search) ----------------------

    def search(self, query: RecordingQuery) -> tuple[list[dict[str, Any]], int]:
        """One page of the recordings a query matches, and how many match in all."""
        from linerec.collector.search import run_search

        return run_search(self.db, query)

    def search_page(self, query: RecordingQuery) -> Page:
        """One page of the recordings a query matches, how many match, the pages beside it."""
        from linerec.collector.search import search_page

        return search_page(self.db, query)

    def uncatalogued(self, limit: int = CATALOG_BATCH) -> list[dict[str, Any]]:
        """Recordings whose metadata the search catalog has not read yet."""
        from linerec.collector.search import uncatalogued

        return uncatalogued(self.db, limit)

    def catalog_new(self, key: CollectorPrivate) -> None:
        """Read the metadata of recordings not searched before (once each), for the catalog:
        the records around the audio, not the audio (linerec.store.chunks)."""
        from linerec.store.chunks import open_audio
        from linerec.store.reader import IntegrityError

        while True:
            batch = self.uncatalogued(CATALOG_BATCH)
            for row in batch:
                try:
                    source = self.vault_file(row["id"], Path(row["path"]), row["device"])
                    metadata = open_audio(source, key).metadata
                except (IntegrityError, ValueError, OSError):
                    metadata = {}  # kept in the catalog all the same: not read again and again
                self.catalog(row["device"], row["id"], metadata)
            if len(batch) < CATALOG_BATCH:  # the last: looking again would scan every row
                return

    def catalog(self, device: str, recording_id: str, metadata: dict[str, Any]) -> None:
        """Keep a recording's label, direction, consent and clock state for search."""
        from linerec.collector.search import catalog

        catalog(self.db, device, recording_id, metadata)

    def call_events(self, device: str, recording_id: str) -> list[dict[str, Any]]:
        """The events of the call a recording was made of, in order (see the top)."""
        seqs = self._call_events(device, recording_id)
        if not seqs:
            return []
        marks = ", ".join("?" * len(seqs))
        return [
            json.loads(body)
            for (body,) in self.db.execute(
                f"SELECT body FROM events WHERE device = ? AND seq IN ({marks}) ORDER BY seq",
                (device, *seqs),
            )
        ]

    def newest_rowid(self) -> int:
        """Grows with each recording indexed (the console reads new ones' metadata then)."""
        row = self.db.execute("SELECT max(rowid) FROM recordings").fetchone()
        return int(row[0] or 0)

    def recording(self, recording_id: str, device: str | None = None) -> dict[str, Any] | None:
        """Like `find`, None if there is no such recording (KeyError if it is ambiguous)."""
        try:
            return self.find(recording_id, device)
        except KeyError:
            if self._recordings("WHERE id = ?", (recording_id.rpartition("/")[2],)):
                raise
            return None


def split_reference(reference: str, device: str | None) -> tuple[str | None, str]:
    """(device or None, id) of `DEVICE/ID` or `ID` (KeyError if the two devices differ)."""
    named, slash, recording_id = reference.rpartition("/")
    if slash and device is not None and named != device:
        raise KeyError(f"{reference!r} names device {named!r}, not {device!r}")
    return (named if slash else device), recording_id


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _text(value: object) -> str | None:
    """A JSON value as the text `Database.json_text` reads it as (None stays NULL)."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)
