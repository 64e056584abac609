"""The encrypted ring: recordings on the card, bounded, power-cut safe, and the uplink's outbox.

Files in the ring directory:

    <id>.lrec           one recording each (format.py; the id holds device, seq, start, line)
    <id>.ack            the collector acknowledged it (the uplink writes the signed ack here)
    <id>.hold           legal hold: never evicted, never deleted by retention
    chain.json          the last sequence number and header hash handed out
    ring.log            append-only JSON lines: every eviction and deletion (deletions.py)
    identity.key        the appliance's signing key (0600; decrypts nothing)

Every file is created 0600 and the directory is 0700 (store/private.py), whatever the umask.

This module keeps the ring's state (its entries, the chain, the markers) and hands out writers;
the jobs around it live beside it: writer.py writes one recording, sync.py syncs off the main
loop, space.py holds the rules of room and retention, recovery.py finishes what a power cut
left, entry.py reads a recording's summary, events.py is what the ring reports.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from linerec.codec import RATE, Codec
from linerec.store import space
from linerec.store.base import RecordingInfo, RecordingWriter, SealedRecording, Store
from linerec.store.deletions import LOG, DeletionLog
from linerec.store.digest import sha256
from linerec.store.disk import Disk, OsDisk
from linerec.store.entry import (
    STATE_CUT,
    STATE_OPEN,
    STATE_SEALED,
    Entry,
    RecordingUnreadable,
    read_entry,
)
from linerec.store.events import RecordingDeleted, RecordingQuarantined, StoreEvent, StoreFilling
from linerec.store.format import SUFFIX, json_body
from linerec.store.header import VERSION
from linerec.store.keys import CollectorPublic, b64, raw_public
from linerec.store.private import private_dir
from linerec.store.recovery import QUARANTINE, Recovery
from linerec.store.seal import wrap_key
from linerec.store.space import StoreFull
from linerec.store.sync import BackgroundSync
from linerec.store.writer import NOTICE_MARK, RESERVE_STEP, EncryptedWriter

# Imported from here by the daemon, the uplink, the CLI and the tests: one place to name them.
__all__ = [
    "LOG",
    "NOTICE_MARK",
    "QUARANTINE",
    "RESERVE_STEP",
    "STATE_CUT",
    "STATE_OPEN",
    "STATE_SEALED",
    "EncryptedWriter",
    "Entry",
    "RecordingDeleted",
    "RecordingQuarantined",
    "RecordingUnreadable",
    "RingStore",
    "StoreEvent",
    "StoreFilling",
    "StoreFull",
    "read_entry",
]

T = TypeVar("T")


def _locked(method: Callable[..., T]) -> Callable[..., T]:
    """The ring is used from the main loop and from the uplink's thread (acks): one at a time."""

    @functools.wraps(method)
    def locked(self: RingStore, *args: Any, **kwargs: Any) -> T:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


class RingStore(Store):
    def __init__(
        self,
        directory: Path,
        *,
        recipients: list[CollectorPublic],
        identity: Ed25519PrivateKey,
        codec: Codec = Codec.ULAW,
        capacity: int = 0,  # bytes; 0 = unbounded (the card's own size is the bound)
        when_full: str = "overwrite",
        warn_fill: float = 0.8,
        max_age_days: float = 0.0,  # 0 = keep until evicted
        device_id: str = "",
        disk: Disk | None = None,
        on_event: Callable[[StoreEvent], None] = lambda event: None,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        background_sync: bool = False,
    ) -> None:
        if not recipients:
            raise ValueError("a recording needs at least one recipient key")
        self.dir = directory
        self.recipients = recipients
        self.identity = identity
        self.codec = codec
        self.capacity = capacity
        self.when_full = when_full
        self.warn_fill = warn_fill
        self.max_age_days = max_age_days
        self.device_id = device_id
        self._lock = threading.RLock()
        self.disk = disk or OsDisk()
        self.syncer = BackgroundSync(self.disk) if background_sync else None
        self._on_event = on_event
        self._wall = wall
        self._warned = False
        # Watchers of open recordings (the uplink's stream), called on the thread that syncs
        # or discards, so they must only note what happened and return: no I/O.
        self.on_synced: Callable[[str, int], None] = lambda recording_id, offset: None
        self.on_discard: Callable[[str], None] = lambda recording_id: None
        private_dir(directory)
        self.entries: dict[str, Entry] = {}
        self._open: dict[str, int] = {}  # id -> bytes reserved by writers in progress
        # The ring's card as it is at each step: a test may swap in one that fails.
        self.log = DeletionLog(directory, lambda: self.disk, wall)
        for name in self.disk.listdir(directory):
            if name.endswith(SUFFIX):
                try:
                    entry = read_entry(directory / name, directory)
                except RecordingUnreadable:
                    continue  # recover() removes a torn header, quarantines anything else
                self.entries[entry.id] = entry
        self._seq, self._head = self._load_chain()

    # -- the chain ---------------------------------------------------------------------------

    def _load_chain(self) -> tuple[int, str]:
        seq, head = 0, ""
        try:
            state = json.loads(self.disk.read(self.dir / "chain.json"))
            seq, head = int(state["seq"]), str(state["head"])
        except (OSError, ValueError, KeyError):
            pass
        for entry in self.entries.values():
            if entry.seq > seq:
                seq, head = entry.seq, entry.header_hash
        return seq, head

    def _save_chain(self) -> None:
        tmp, target = self.dir / "chain.json.tmp", self.dir / "chain.json"
        if tmp.exists():
            self.disk.unlink(tmp)
        handle = self.disk.create(tmp)
        self.disk.pwrite(handle, json_body({"seq": self._seq, "head": self._head}), 0)
        self.disk.datasync(handle)
        self.disk.close(handle)
        self.disk.replace(tmp, target)
        self.disk.sync_dir(self.dir)

    @_locked
    def set_recipients(self, recipients: list[CollectorPublic]) -> None:
        """Encrypt to `recipients` from the next recording on (a new key epoch); a recording
        already begun keeps the keys it began with."""
        if not recipients:
            raise ValueError("a recording needs at least one recipient key")
        self.recipients = list(recipients)

    # -- writing -----------------------------------------------------------------------------

    @_locked
    def begin(self, info: RecordingInfo) -> RecordingWriter:
        seq = self._seq + 1
        stamp = info.started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
        recording_id = f"{info.device_id}-{seq:08d}-{stamp}Z-{info.line}"
        file_key = os.urandom(32)
        header = {
            "v": VERSION,
            "id": recording_id,
            "device": info.device_id,
            "seq": seq,
            "prev": self._head,
            "line": info.line,
            "started_at": info.started_at.astimezone(UTC).isoformat(timespec="milliseconds"),
            "clock_synchronized": info.clock_synchronized,
            "retention_days": info.retention_days,
            "codec": self.codec.value,
            "rate": RATE,
            "device_key": b64(raw_public(self.identity.public_key())),
            "recipients": [wrap_key(file_key, r.encryption) for r in self.recipients],
        }
        body = json_body(header)
        # The header is on the card before the chain moves on: a power cut in between leaves
        # a file whose sequence number the next start reads back, never a gap.
        writer = EncryptedWriter(self, info, recording_id, header, body, file_key)
        self._seq, self._head = seq, sha256(body).hexdigest()
        self._save_chain()
        return writer

    @_locked
    def reserve(self, recording_id: str, size: int, *, force: bool = False) -> None:
        """Make room for `size` more bytes, evicting as the rules allow; StoreFull if it cannot.

        `force` (sealing: a few hundred bytes) takes the room even past capacity, so a
        recording that has begun can always be finished.
        """
        self._open[recording_id] = self._open.get(recording_id, 0) + size
        if not self.capacity or force:
            return
        while self.used() > self.capacity:
            victim = space.victim(self.entries.values(), self._open)
            if victim is None or self.when_full == "stop":
                self._open[recording_id] -= size
                raise space.full(self.used(), self.capacity, self.when_full)
            self._delete(victim, "evicted")
        fill = self.used() / self.capacity
        if fill >= self.warn_fill and not self._warned:
            self._warned = True
            self._on_event(StoreFilling(fill=fill))
        elif fill < self.warn_fill:
            self._warned = False

    @_locked
    def fill(self) -> float | None:
        return self.used() / self.capacity if self.capacity else None

    @_locked
    def used(self) -> int:
        return space.used(self.entries, self._open)

    def _delete(self, entry: Entry, reason: str) -> None:
        # Logged (and synced) first: a power cut in between leaves a logged deletion of a
        # file still there (recovery deletes nothing), never a gap the log cannot explain.
        self._log_deletion(entry.id, entry.seq, entry.header_hash, reason)
        self._forget(entry.id)
        self._on_event(
            RecordingDeleted(
                id=entry.id,
                seq=entry.seq,
                reason=reason,
                acknowledged=entry.acknowledged,
                header_hash=entry.header_hash,
                prev=entry.prev,
            )
        )

    def _forget(self, recording_id: str) -> None:
        """Remove a recording's files (its deletion is already logged)."""
        names = set(self.disk.listdir(self.dir))
        for suffix in (SUFFIX, ".ack", ".hold"):
            if f"{recording_id}{suffix}" in names:
                self.disk.unlink(self.dir / f"{recording_id}{suffix}")
        self.disk.sync_dir(self.dir)
        self.entries.pop(recording_id, None)

    def _log_deletion(self, recording_id: str, seq: int, header_hash: str, reason: str) -> None:
        self.log.append(recording_id, seq, header_hash, reason)

    @_locked
    def _finished(self, entry: Entry) -> None:
        self._open.pop(entry.id, None)
        self.entries[entry.id] = entry

    # -- the outbox and policy -----------------------------------------------------------------

    @_locked
    def sealed(self) -> list[Entry]:
        """Recordings waiting for the collector, oldest first (the uplink's outbox)."""
        return sorted(
            (e for e in self.entries.values() if e.state != STATE_OPEN and not e.acknowledged),
            key=lambda e: e.seq,
        )

    def on_card(self) -> set[str]:
        """The ids of every recording file the ring holds, in any state (open, sealed, cut,
        or one recovery has yet to look at), read from the card itself: a recording another
        process began after this store was opened is there too."""
        return {
            name.removesuffix(SUFFIX)
            for name in self.disk.listdir(self.dir)
            if name.endswith(SUFFIX)
        }

    @_locked
    def acknowledge(self, recording_id: str, ack: bytes) -> None:
        """The collector has the recording durably: keep its signed ack beside it."""
        self._marker(recording_id, "ack", ack)

    @_locked
    def hold(self, recording_id: str) -> None:
        self._marker(recording_id, "hold", b"")

    @_locked
    def release(self, recording_id: str) -> None:
        path = self.dir / f"{recording_id}.hold"
        if path.exists():
            self.disk.unlink(path)
            self.disk.sync_dir(self.dir)
            self.entries[recording_id] = replace(self.entries[recording_id], held=False)

    def _marker(self, recording_id: str, kind: str, content: bytes) -> None:
        if recording_id not in self.entries:
            raise KeyError(f"no recording {recording_id!r} in {self.dir}")
        path = self.dir / f"{recording_id}.{kind}"
        tmp = path.with_suffix(f".{kind}.tmp")
        if tmp.exists():
            self.disk.unlink(tmp)
        handle = self.disk.create(tmp)
        self.disk.pwrite(handle, content, 0)
        self.disk.datasync(handle)
        self.disk.close(handle)
        self.disk.replace(tmp, path)
        self.disk.sync_dir(self.dir)
        entry = self.entries[recording_id]
        if kind == "ack":
            self.entries[recording_id] = replace(entry, acknowledged=True)
        else:
            self.entries[recording_id] = replace(entry, held=True)

    @_locked
    def delete(self, recording_id: str, reason: str) -> None:
        """Delete one recording on request (never one on hold or still being written)."""
        entry = self.entries.get(recording_id)
        if entry is None:
            raise KeyError(f"no recording {recording_id!r} in {self.dir}")
        if entry.held:
            raise PermissionError(f"{recording_id} is on legal hold: release it first")
        if entry.state == STATE_OPEN or recording_id in self._open:
            raise PermissionError(f"{recording_id} is still being recorded")
        self._delete(entry, reason)

    @_locked
    def enforce_retention(self) -> list[str]:
        """Delete recordings past their retention (their line's, else `max_age_days`), unless
        held; returns their ids."""
        now = self._wall()
        expired = [
            e
            for e in self.entries.values()
            if space.past_retention(e, now, self.max_age_days, self._open)
        ]
        for entry in sorted(expired, key=lambda e: e.seq):
            self._delete(entry, "retention")
        return [e.id for e in expired]

    # -- recovery ------------------------------------------------------------------------------

    @_locked
    def recover(self) -> list[SealedRecording]:
        """Close what a power cut left open: keep every intact chunk, mark the file cut, sign it.

        Safe to interrupt and to repeat (store/recovery.py)."""
        recovery = Recovery(
            self.dir,
            disk=self.disk,
            identity=self.identity,
            entries=self.entries,
            forget=self._forget,
            on_event=self._on_event,
            wall=self._wall,
        )
        return recovery.run(self.log.ids())
