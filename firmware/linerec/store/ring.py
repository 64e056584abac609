"""The encrypted ring: recordings on the card, bounded, power-cut safe, and the uplink's outbox.

Files in the ring directory:

    <id>.lrec           one recording each (format.py; the id holds device, seq, start, line)
    <id>.ack            the collector acknowledged it (the uplink writes the signed ack here)
    <id>.hold           legal hold: never evicted, never deleted by retention
    chain.json          the last sequence number and header hash handed out
    ring.log            append-only JSON lines: every eviction and deletion
    identity.key        the appliance's signing key (0600; decrypts nothing)

Every file is created 0600 and the directory is 0700 (store/private.py), whatever the umask.

Audio reaches the card in 4 KiB chunks (half a second of µ-law), each written at an aligned
offset into space reserved ahead (fallocate) and fdatasync'ed, so a power cut loses at most
the chunk being filled plus the delay line, and no sync has to write file-size metadata. In
the daemon the syncs run on a thread of their own (`background_sync`): a slow card delays
durability by one sync, never the audio loop.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from linerec.codec import RATE, Codec, Samples, encode
from linerec.files import UnreadableFile, check_regular
from linerec.store.base import RecordingInfo, RecordingWriter, SealedRecording, Store
from linerec.store.digest import Sha256, sha256
from linerec.store.disk import Disk, OsDisk
from linerec.store.format import (
    BLOCK,
    CHUNK_AUDIO_BYTES,
    FINAL,
    FRAME,
    MAGIC,
    MAX_BODY,
    MAX_BYTES,
    OVERHEAD,
    SUFFIX,
    RecordType,
    chunk_aad,
    chunk_nonce,
    frame,
    json_body,
    pad_to_block,
    scan,
)
from linerec.store.header import VERSION, check_end, check_header
from linerec.store.keys import CollectorPublic, b64, raw_public
from linerec.store.private import private_dir, write_private
from linerec.store.seal import seal_metadata, sign_end, wrap_key

T = TypeVar("T")
CUT_METADATA = 2  # the number of the metadata record written when a store error cuts a recording
NOTICE_MARK = "notice played; conversation follows"
RESERVE_STEP = 64 * BLOCK  # reserve card space 256 KiB at a time
STATE_OPEN, STATE_SEALED, STATE_CUT = "open", "sealed", "cut"
LOG = "ring.log"


class BackgroundSync:
    """fdatasync off the main loop: the audio path never waits for the card.

    A writer asks for a sync after each chunk; one thread performs them in order. An error is
    kept on the writer and raised by its next write, so it is never retried into silent loss;
    what each sync made durable is told to the writer (`synced`), so after a failure it can
    close the recording where the card provably holds it.
    """

    def __init__(self, disk: Disk) -> None:
        self._disk = disk
        self._cond = threading.Condition()
        self._queue: list[EncryptedWriter] = []
        self._busy: EncryptedWriter | None = None
        threading.Thread(target=self._run, name="store-sync", daemon=True).start()

    def request(self, writer: EncryptedWriter) -> None:
        with self._cond:
            if writer not in self._queue:
                self._queue.append(writer)
                self._cond.notify_all()

    def settle(self, writer: EncryptedWriter) -> None:
        """Wait until no sync of `writer` is queued or running (before it closes its file)."""
        with self._cond:
            while writer in self._queue or self._busy is writer:
                self._cond.wait()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                writer = self._busy = self._queue.pop(0)
            mark = writer.written  # everything in it was written before this sync began
            try:
                self._disk.datasync(writer.handle)
            except OSError as exc:
                writer.failed(exc)
            else:
                writer.synced(mark)
            with self._cond:
                self._busy = None
                self._cond.notify_all()


@dataclass(frozen=True, slots=True)
class _Mark:
    """A point in a recording being written: its length, the digest of those bytes, and the
    whole chunks and samples they hold."""

    offset: int
    digest: Sha256  # the digest's state (copied: it goes on growing in the writer)
    chunks: int
    samples: int


class StoreFull(OSError):
    """No room: every recording left is held or open, or `when_full = "stop"`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingDeleted:
    """A recording left the card: evicted to make room, past its retention, deleted on
    request, or opted out (discarded while it was being written, or a part of an opted-out
    call sealed before the opt-out: its number is deliberately absent from the chain).

    `header_hash` and `prev` let the collector link the absent number into the device's chain,
    so the recording after it still verifies ("" where not known)."""

    id: str
    seq: int
    reason: str  # "evicted", "retention", "command", "opted-out" or "discarded"
    acknowledged: bool
    header_hash: str = ""
    prev: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreFilling:
    """The ring passed its warning level."""

    fill: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingQuarantined:
    """A file in the ring is not a recording we can use: moved aside, never read again."""

    path: Path  # where it is now: <ring>/quarantine/<name>
    reason: str


StoreEvent = RecordingDeleted | StoreFilling | RecordingQuarantined
QUARANTINE = "quarantine"


class RecordingUnreadable(ValueError):
    """A recording's file cannot be summarised: the message names the file and why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """What `store list` shows of a recording, read without any key."""

    id: str
    seq: int
    path: Path
    line: str
    started_at: str
    clock_synchronized: bool
    duration: float
    state: str  # open, sealed, cut
    acknowledged: bool
    held: bool
    size: int
    header_hash: str
    retention_days: float = 0.0  # from the header; 0 = the store's max_age_days
    prev: str = ""  # the header hash of the recording before it in the chain

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seq": self.seq,
            "line": self.line,
            "start": self.started_at,
            "clock_synchronized": self.clock_synchronized,
            "duration": round(self.duration, 3),
            "state": self.state,
            "acknowledged": self.acknowledged,
            "held": self.held,
            "bytes": self.size,
            "path": str(self.path),
        }


def read_entry(path: Path, ring: Path | None = None) -> Entry:
    """Summarise a recording by walking its record frames (bodies skipped, no key).

    Raises RecordingUnreadable, naming the file and the field or byte, for anything that is
    not a recording as docs/format.md has it: the header's and the end record's fields are
    checked (store/header.py), however validly signed the file is."""
    try:
        return _read_entry(path, ring or path.parent)
    except (OSError, ValueError, RecursionError) as exc:
        raise RecordingUnreadable(f"{path.name}: {exc}") from exc


def _read_entry(path: Path, ring: Path) -> Entry:
    check_regular(path, limit=MAX_BYTES)
    with open(path, "rb") as file:
        data = file.read(BLOCK)
        records = list(scan(data))
        if not records or records[0].type is not RecordType.HEADER:
            raise ValueError("byte 0: not a linerec recording (no header)")
        header_body = records[0].body
        header = check_header(json.loads(header_body), 0)
        offset, chunks, state, samples = records[0].end, 0, STATE_OPEN, None
        size = os.fstat(file.fileno()).st_size
        while offset + FRAME.size <= size:
            file.seek(offset)
            magic, kind, _, length = FRAME.unpack(file.read(FRAME.size))
            if magic != MAGIC or length > MAX_BODY or offset + OVERHEAD + length > size:
                break
            if kind == RecordType.CHUNK:
                chunks += 1
            elif kind in (RecordType.TRAILER, RecordType.CUT):
                name = "trailer" if kind == RecordType.TRAILER else "cut"
                end = check_end(json.loads(file.read(length)), offset, name)
                state = STATE_SEALED if kind == RecordType.TRAILER else STATE_CUT
                samples = end["samples"]
            offset += OVERHEAD + length
    bytes_per_sample = Codec(header["codec"]).bytes_per_sample
    if samples is None:  # open: count whole chunks
        samples = chunks * CHUNK_AUDIO_BYTES // bytes_per_sample
    recording_id = header["id"]
    return Entry(
        id=recording_id,
        seq=int(header["seq"]),
        path=path,
        line=header.get("line", ""),
        started_at=header.get("started_at", ""),
        clock_synchronized=bool(header.get("clock_synchronized")),
        duration=samples / RATE,
        state=state,
        acknowledged=(ring / f"{recording_id}.ack").exists(),
        held=(ring / f"{recording_id}.hold").exists(),
        size=size,
        header_hash=sha256(header_body).hexdigest(),
        retention_days=float(header.get("retention_days", 0) or 0),
        prev=str(header.get("prev", "")),
    )


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
        self._log_size: int | None = None  # ring.log's length up to its last whole line
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
            victim = self._victim()
            if victim is None or self.when_full == "stop":
                self._open[recording_id] -= size
                raise StoreFull(
                    f"ring full: {self.used()} of {self.capacity} bytes and "
                    + (
                        "when_full = 'stop'"
                        if self.when_full == "stop"
                        else "nothing may be evicted"
                    )
                )
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
        return sum(e.size for e in self.entries.values() if e.id not in self._open) + sum(
            self._open.values()
        )

    def _victim(self) -> Entry | None:
        candidates = [
            e
            for e in self.entries.values()
            if e.state != STATE_OPEN and not e.held and e.id not in self._open
        ]
        acknowledged = [e for e in candidates if e.acknowledged]
        pool = acknowledged or candidates
        return min(pool, key=lambda e: e.seq) if pool else None

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
        """Append one line to ring.log and sync it, through the Disk like every durable step.

        A line a power cut tore is cut away by the next append: its deletion had not begun
        (the files go only after the line is synced)."""
        line = (
            json.dumps(
                {
                    "event": reason,
                    "id": recording_id,
                    "seq": seq,
                    "header_hash": header_hash,
                    "at": self._wall().isoformat(),
                }
            ).encode()
            + b"\n"
        )
        path = self.dir / LOG
        end = self._log_end()
        if end is None:
            handle = self.disk.create(path)
            end = 0
        else:
            handle = self.disk.open(path)
        try:
            self.disk.pwrite(handle, line, end)
            self.disk.truncate(handle, end + len(line))  # whatever a torn line left after it
            self.disk.datasync(handle)
        finally:
            self.disk.close(handle)
        if end == 0:
            self.disk.sync_dir(self.dir)  # the log's own name
        self._log_size = end + len(line)

    def _log_end(self) -> int | None:
        """Where the next ring.log line goes (after its last whole line); None: no log yet."""
        if self._log_size is None:
            try:
                data = self.disk.read(self.dir / LOG)
            except FileNotFoundError:
                return None
            self._log_size = data.rfind(b"\n") + 1
        return self._log_size

    def _logged_ids(self) -> set[str]:
        """The recordings ring.log says were deleted (read once, at recovery)."""
        try:
            data = self.disk.read(self.dir / LOG)
        except FileNotFoundError:
            return set()
        ids = set()
        for line in data[: data.rfind(b"\n") + 1].splitlines():
            try:
                ids.add(str(json.loads(line)["id"]))
            except (ValueError, KeyError, TypeError):
                continue  # verify names it; recovery only finishes what it can read
        return ids

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

        def past(entry: Entry) -> bool:
            days = entry.retention_days or self.max_age_days
            if not days or entry.state == STATE_OPEN or entry.held or entry.id in self._open:
                return False
            if not entry.clock_synchronized and not entry.acknowledged:
                return False  # its date may be wrong (no NTP yet): never delete it unsent
            return datetime.fromisoformat(entry.started_at) < now - timedelta(days=days)

        expired = [e for e in self.entries.values() if past(e)]
        for entry in sorted(expired, key=lambda e: e.seq):
            self._delete(entry, "retention")
        return [e.id for e in expired]

    # -- recovery ------------------------------------------------------------------------------

    @_locked
    def recover(self) -> list[SealedRecording]:
        """Close what a power cut left open: keep every intact chunk, mark the file cut, sign it.

        Safe to interrupt and to repeat: truncating to the last intact record is idempotent,
        and a torn cut marker is cut away and written again on the next run.
        """
        recovered = []
        logged = self._logged_ids()
        for name in sorted(self.disk.listdir(self.dir)):
            if not name.endswith(SUFFIX):
                continue
            path = self.dir / name
            if name.removesuffix(SUFFIX) in logged:
                # Its deletion was logged and synced, then the power went: finish it (an
                # opted-out call must not come back as a recovered recording).
                self._forget(name.removesuffix(SUFFIX))
                continue
            try:
                sealed = self._recover_file(path)
            except (UnreadableFile, ValueError, RecursionError) as exc:
                # Not a recording we can use (a stolen or buggy box can sign anything): it
                # must not stop the recorder. Moved aside with the reason, reported, kept.
                self._quarantine(path, str(exc).removeprefix(f"{name}: "))
                continue
            if sealed is not None:
                recovered.append(sealed)
        return recovered

    def _quarantine(self, path: Path, reason: str) -> None:
        directory = private_dir(self.dir / QUARANTINE)
        target = directory / path.name
        number = 0
        while target.exists() or target.with_name(target.name + ".why").exists():
            number += 1
            target = directory / f"{path.name}.{number}"
        self.disk.replace(path, target)
        write_private(target.with_name(target.name + ".why"), (reason + "\n").encode())
        self.disk.sync_dir(directory)
        self.disk.sync_dir(self.dir)
        for key in [key for key, entry in self.entries.items() if entry.path == path]:
            del self.entries[key]
        self._on_event(RecordingQuarantined(path=target, reason=reason))

    def _recover_file(self, path: Path) -> SealedRecording | None:
        """Recover one file: None if it needed nothing (or held nothing and went)."""
        check_regular(path, limit=MAX_BYTES)
        data = self.disk.read(path)
        records = list(scan(data))
        if not records or records[0].type is not RecordType.HEADER:
            # The header never reached the card whole: no audio can follow it.
            self.disk.unlink(path)
            self.disk.sync_dir(self.dir)
            return None
        header = check_header(json.loads(records[0].body), 0)
        kinds = [r.type for r in records]
        end = records[-1].end
        if RecordType.TRAILER in kinds or RecordType.CUT in kinds:
            known = any(entry.path == path for entry in self.entries.values())
            if end < len(data):  # reserved space after a finished file: give it back
                handle = self.disk.open(path)
                self.disk.truncate(handle, end)
                self.disk.datasync(handle)
                self.disk.close(handle)
                known = False
            if not known:  # read_entry refused it at start, or it changed: its end is checked
                entry = read_entry(path, self.dir)
                self.entries[entry.id] = entry
            return None
        header_hash = sha256(records[0].body).digest()
        chunks = sum(1 for r in records if r.type is RecordType.CHUNK)
        samples = chunks * CHUNK_AUDIO_BYTES // Codec(header["codec"]).bytes_per_sample
        cut = sign_end(
            self.identity,
            RecordType.CUT,
            header_hash,
            {
                "chunks": chunks,
                "samples": samples,
                "reason": "power-loss",
                "recovered_at": self._wall().isoformat(timespec="seconds"),
                "digest": sha256(data[:end]).hexdigest(),
            },
        )
        handle = self.disk.open(path)
        self.disk.truncate(handle, end)
        self.disk.pwrite(handle, frame(RecordType.CUT, json_body(cut)), end)
        self.disk.datasync(handle)
        self.disk.close(handle)
        entry = read_entry(path, self.dir)
        self.entries[entry.id] = entry
        return SealedRecording(
            id=entry.id,
            path=path,
            duration=entry.duration,
            metadata={"line": entry.line, "state": STATE_CUT},
        )


class EncryptedWriter(RecordingWriter):
    def __init__(
        self,
        store: RingStore,
        info: RecordingInfo,
        recording_id: str,
        header: dict[str, Any],
        header_body: bytes,
        file_key: bytes,
    ) -> None:
        self.id = recording_id
        self._store = store
        self._disk = store.disk
        self._info = info
        self._codec = store.codec
        self._header_hash = sha256(header_body).digest()
        self._prev = str(header["prev"])
        self._file_key = file_key
        self._aead = ChaCha20Poly1305(file_key)
        self.path = store.dir / f"{recording_id}{SUFFIX}"  # sorts by device, then sequence
        store.reserve(
            recording_id, RESERVE_STEP
        )  # before the file exists: StoreFull leaves nothing
        self._reserved = RESERVE_STEP
        self.handle = -1
        self._handle_open = False
        self.sync_error: OSError | None = None  # from the background sync, raised by write()
        self._sync_failed = False  # once a sync failed, no later one proves anything
        # Closed after a store error: cut (what seal() returns), or left for recovery (the
        # error): then discard() is all that may still be done with it.
        self._closed: SealedRecording | OSError | None = None
        self._digest = sha256()
        self._offset = 0
        self._sealing = False
        self._buffer = bytearray()
        self._index = 0
        self._samples = 0
        self._chunked = 0  # samples in the chunks written so far
        self._gaps: list[dict[str, Any]] = []
        self._markers: list[dict[str, Any]] = []
        self._facts: dict[str, object] = {}
        self._started = time.monotonic()
        head = frame(RecordType.HEADER, header_body)
        if info.notice_seconds:
            self._markers.append({"at": round(info.notice_seconds, 3), "label": NOTICE_MARK})
        # What the call is, before any audio: a recording cut by a power loss still says it.
        head += frame(
            RecordType.METADATA, seal_metadata(file_key, self._header_hash, 0, self._metadata(None))
        )
        try:
            self.handle = self._disk.create(self.path)
            self._handle_open = True
            self._disk.allocate(self.handle, self._reserved)
            self._append(head + pad_to_block(len(head)))
            self.written = self._mark()
            self._disk.datasync(self.handle)
            self._durable = self.written  # what the card provably holds
            self._disk.sync_dir(store.dir)
        except OSError:
            self._abandon()
            raise
        self._entry = store.entries[recording_id] = Entry(
            id=recording_id,
            seq=header["seq"],
            path=self.path,
            line=info.line,
            started_at=header["started_at"],
            clock_synchronized=info.clock_synchronized,
            duration=0.0,
            state=STATE_OPEN,
            acknowledged=False,
            held=False,
            size=self._offset,
            header_hash=self._header_hash.hex(),
            retention_days=info.retention_days,
            prev=self._prev,
        )

    def write(self, samples: Samples) -> None:
        if self._closed is not None:
            raise OSError(f"{self.path}: closed after a store error")
        if self.sync_error is not None:  # the card failed a sync: this recording ends here
            self._cut(self.sync_error)
        self._buffer += encode(self._codec, samples)
        self._samples += len(samples)
        while len(self._buffer) >= CHUNK_AUDIO_BYTES:
            payload = bytes(self._buffer[:CHUNK_AUDIO_BYTES])
            del self._buffer[:CHUNK_AUDIO_BYTES]
            self._chunk(payload, final=False)

    def mark_gap(self, samples: int, reason: str) -> None:
        at = self._samples / RATE
        self._gaps.append({"at": round(at, 3), "seconds": samples / RATE, "reason": reason})
        self.write(np.zeros(samples, dtype=np.int16))

    def annotate(self, key: str, value: object) -> None:
        self._facts[key] = value

    def mark(self, label: str) -> None:
        self._markers.append({"at": round(self._samples / RATE, 3), "label": label})

    def seal(self, *, ended_by: str) -> SealedRecording:
        if isinstance(self._closed, SealedRecording):  # a store error cut it (and was raised)
            return self._closed
        if self._closed is not None:
            raise OSError(f"{self.path}: left open for recovery: {self._closed}")
        try:
            return self._seal(ended_by)
        except OSError as exc:
            if self._closed is None:  # not cut either: the next start's recovery cuts it
                self._closed = exc
                self._file_key = b""
                self._close_handle()
            raise

    def _seal(self, ended_by: str) -> SealedRecording:
        self._sealing = True
        if self._store.syncer is not None:
            self._store.syncer.settle(self)
        if self.sync_error is not None:
            self._cut(self.sync_error)
        self._chunk(bytes(self._buffer), final=True)
        self._buffer.clear()
        metadata = self._metadata(ended_by)
        self._append(
            frame(
                RecordType.METADATA, seal_metadata(self._file_key, self._header_hash, 1, metadata)
            )
        )
        trailer = sign_end(
            self._store.identity,
            RecordType.TRAILER,
            self._header_hash,
            {
                "chunks": self._index,
                "samples": self._samples,
                "ended_by": ended_by,
                "digest": self._digest.hexdigest(),
            },
        )
        self._append(frame(RecordType.TRAILER, json_body(trailer)))
        self._disk.truncate(self.handle, self._offset)
        self._sync()
        self._close_handle()
        self._file_key = b""  # forgotten: the appliance cannot decrypt what it recorded
        self._store._finished(
            replace(
                self._entry, duration=self._samples / RATE, state=STATE_SEALED, size=self._offset
            )
        )
        return SealedRecording(
            id=self.id, path=self.path, duration=self._samples / RATE, metadata=metadata
        )

    def _metadata(self, ended_by: str | None, samples: int | None = None) -> dict[str, Any]:
        info = self._info
        samples = self._samples if samples is None else samples
        return {
            "id": self.id,
            "device_id": info.device_id,
            "line": info.line,
            "label": info.label,
            "direction": info.direction,
            "consent": info.consent,
            "started_at": info.started_at.astimezone(UTC).isoformat(timespec="milliseconds"),
            "clock_synchronized": info.clock_synchronized,
            "duration": round(samples / RATE, 3),
            "monotonic_duration": round(time.monotonic() - self._started, 3),
            "codec": self._codec.value,
            "rate": RATE,
            "markers": self._markers,
            "gaps": self._gaps,
            "ended_by": ended_by,
            **self._facts,
        }

    def discard(self, reason: str = "discarded") -> None:
        """Nothing of this recording is kept (opt-out); the chain logs why its number is gone,
        and the store reports it (RecordingDeleted, with the header hash and prev that let the
        collector link the number as deliberately absent). Refused (PermissionError) while on
        legal hold.

        Also once a store error closed it, cut or left open for recovery: the logged deletion
        tells recovery to finish it, never to seal it. If the card fails the log line too, the
        file goes all the same (an opted-out call is not kept for its number's sake), the
        deletion is reported, and the error raised. Under the ring's lock: the uplink thread
        reads the entries meanwhile."""
        store = self._store
        entry = self._entry
        if store.entries.get(self.id, entry).held:  # a legal hold outranks an opt-out
            raise PermissionError(f"{self.id} is on legal hold: release it first")
        store.on_discard(self.id)  # first: not one more byte of it may leave the box
        with store._lock:
            acknowledged = store.entries.get(self.id, entry).acknowledged  # if a cut went
            errors: list[OSError] = []
            steps: tuple[Callable[[], None], ...] = (
                functools.partial(
                    store._log_deletion, self.id, entry.seq, entry.header_hash, reason
                ),
                self._settle,  # a failed sync must not keep what was to be discarded
                self._close_handle,
            )
            for step in steps:
                try:
                    step()
                except OSError as exc:
                    errors.append(exc)
            self._file_key = b""
            try:
                store._forget(self.id)  # the file, and an ack or hold a cut part was given
            finally:
                store._open.pop(self.id, None)
                store.entries.pop(self.id, None)
                store._on_event(
                    RecordingDeleted(
                        id=self.id,
                        seq=entry.seq,
                        reason=reason,
                        acknowledged=acknowledged,
                        header_hash=entry.header_hash,
                        prev=self._prev,
                    )
                )
            if errors:
                raise errors[0]

    def _abandon(self) -> None:
        """The card failed the recording's beginning: its number was not taken (the chain
        moves on only once the header is on the card), so the file goes with nothing to log,
        else the next recording would take the same number; its room is given back. If the
        card fails that too, recovery at the next start finds the file."""
        self._store._open.pop(self.id, None)
        if not self._handle_open:
            return  # not created: a file of that name, if any, is not this one's
        with contextlib.suppress(OSError):
            self._close_handle()
        with contextlib.suppress(OSError):
            self._disk.unlink(self.path)
            self._disk.sync_dir(self._store.dir)

    def _close_handle(self) -> None:
        """Once only: a number closed twice may by then be another file's."""
        if self._handle_open:
            self._handle_open = False
            self._disk.close(self.handle)

    def _chunk(self, payload: bytes, *, final: bool) -> None:
        index = self._index
        sealed = self._aead.encrypt(
            chunk_nonce(index), payload, chunk_aad(self._header_hash, index, final)
        )
        self._append(
            frame(RecordType.CHUNK, index.to_bytes(4, "little") + sealed, FINAL if final else 0)
        )
        self._index += 1
        self._chunked += len(payload) // self._codec.bytes_per_sample
        self.written = self._mark()
        if self._store.syncer is None or final:
            self._sync()
        else:
            self._store.syncer.request(self)

    # -- what is provably on the card ------------------------------------------------------

    def _mark(self) -> _Mark:
        return _Mark(self._offset, self._digest.copy(), self._index, self._chunked)

    def synced(self, mark: _Mark) -> None:
        """A sync that began after `mark` was written succeeded (from the sync thread too)."""
        if not self._sync_failed and mark.offset > self._durable.offset:
            self._durable = mark
            self._store.on_synced(self.id, mark.offset)  # bytes 0..offset are on the card

    def failed(self, error: OSError) -> None:
        """A sync failed: what it covered may not be on the card, and Linux marks those pages
        clean, so no later sync writes them: nothing after the last good sync is proven."""
        self._sync_failed = True
        self.sync_error = error

    def _sync(self) -> None:
        mark = self.written
        try:
            self._disk.datasync(self.handle)
        except OSError as exc:
            self.failed(exc)
            self._cut(exc)
        self.synced(mark)

    def _cut(self, error: OSError) -> NoReturn:
        """Close the recording at the last good sync, marked cut and signed over exactly what
        the card holds, then raise `error` (the caller reports a store fault).

        Signing what was meant to be written instead would make a good prefix on the card
        fail verification as damaged. If the card fails this too, the file is left for
        recovery at the next start, which cuts it the same way from what it reads back."""
        self.sync_error = None
        self._sync_failed = True
        if self._store.syncer is not None:
            self._store.syncer.settle(self)
        durable = self._durable
        store = self._store
        try:
            self._sealing = True
            self._offset, self._digest = durable.offset, durable.digest.copy()
            self._disk.truncate(self.handle, durable.offset)
            metadata = self._metadata("store-error", durable.samples)
            self._append(
                frame(
                    RecordType.METADATA,
                    seal_metadata(self._file_key, self._header_hash, CUT_METADATA, metadata),
                )
            )
            cut = sign_end(
                store.identity,
                RecordType.CUT,
                self._header_hash,
                {
                    "chunks": durable.chunks,
                    "samples": durable.samples,
                    "reason": "store-error",
                    "cut_at": store._wall().isoformat(timespec="seconds"),
                    "digest": self._digest.hexdigest(),
                },
            )
            self._append(frame(RecordType.CUT, json_body(cut)))
            self._disk.datasync(self.handle)
        except OSError:
            self._closed = error
            self._file_key = b""
            raise error from None
        finally:
            self._close_handle()
        self._file_key = b""
        store._finished(
            replace(
                self._entry,
                duration=durable.samples / RATE,
                state=STATE_CUT,
                size=self._offset,
            )
        )
        self._closed = SealedRecording(
            id=self.id, path=self.path, duration=durable.samples / RATE, metadata=metadata
        )
        raise error

    def _settle(self) -> None:
        if self._store.syncer is not None:
            self._store.syncer.settle(self)
        if self.sync_error is not None:
            error, self.sync_error = self.sync_error, None
            raise error

    def _append(self, record: bytes) -> None:
        end = self._offset + len(record)
        if end > self._reserved:
            grow = max(RESERVE_STEP, end - self._reserved)
            self._store.reserve(self.id, grow, force=self._sealing)
            self._reserved += grow
            self._disk.allocate(self.handle, self._reserved)
        self._disk.pwrite(self.handle, record, self._offset)
        self._digest.update(record)
        self._offset = end
