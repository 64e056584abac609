"""Writing one recording into the ring: header, encrypted chunks, metadata, signed trailer.

Audio reaches the card in 4 KiB chunks (half a second of µ-law), each written at an aligned
offset into space reserved ahead (fallocate) and fdatasync'ed, so a power cut loses at most
the chunk being filled plus the delay line, and no sync has to write file-size metadata. In
the daemon the syncs run on a thread of their own (store/sync.py): a slow card delays
durability by one sync, never the audio loop.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, Protocol

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from linerec.codec import RATE, Codec, Samples, encode
from linerec.store.base import RecordingInfo, RecordingWriter, SealedRecording
from linerec.store.digest import sha256
from linerec.store.disk import Disk
from linerec.store.entry import STATE_CUT, STATE_OPEN, STATE_SEALED, Entry
from linerec.store.events import RecordingDeleted, StoreEvent
from linerec.store.format import (
    BLOCK,
    CHUNK_AUDIO_BYTES,
    FINAL,
    SUFFIX,
    RecordType,
    chunk_aad,
    chunk_nonce,
    frame,
    json_body,
    pad_to_block,
)
from linerec.store.seal import seal_metadata, sign_end
from linerec.store.sync import BackgroundSync, Mark

CUT_METADATA = 2  # the number of the metadata record written when a store error cuts a recording
NOTICE_MARK = "notice played; conversation follows"
RESERVE_STEP = 64 * BLOCK  # reserve card space 256 KiB at a time


class Ring(Protocol):
    """What a writer works on of the ring that began it (store/ring.py's RingStore): the card,
    the keys, its entries and room, under its lock; the writer keeps them true as it goes."""

    dir: Path
    disk: Disk
    codec: Codec
    identity: Ed25519PrivateKey
    syncer: BackgroundSync | None
    entries: dict[str, Entry]
    on_synced: Callable[[str, int], None]
    on_discard: Callable[[str], None]
    _open: dict[str, int]  # id -> bytes reserved by writers in progress
    _on_event: Callable[[StoreEvent], None]
    _wall: Callable[[], datetime]

    @property
    def _lock(self) -> contextlib.AbstractContextManager[Any]: ...

    def reserve(self, recording_id: str, size: int, *, force: bool = False) -> None: ...

    def _finished(self, entry: Entry) -> None: ...

    def _forget(self, recording_id: str) -> None: ...

    def _log_deletion(self, recording_id: str, seq: int, header_hash: str, reason: str) -> None: ...


class EncryptedWriter(RecordingWriter):
    def __init__(
        self,
        store: Ring,
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

    def _mark(self) -> Mark:
        return Mark(self._offset, self._digest.copy(), self._index, self._chunked)

    def synced(self, mark: Mark) -> None:
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
