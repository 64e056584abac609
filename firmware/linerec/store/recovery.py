"""Recovery after a power loss: what the card holds is finished so that it verifies.

An open recording is cut at its last intact record and signed; a finished one gives back the
space reserved after it; a file whose deletion ring.log holds is removed; anything that is
not a recording we can use is moved aside into quarantine/ with the reason beside it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from linerec.codec import Codec
from linerec.files import UnreadableFile, check_regular
from linerec.store.base import SealedRecording
from linerec.store.digest import sha256
from linerec.store.disk import Disk
from linerec.store.entry import STATE_CUT, Entry, read_entry
from linerec.store.events import RecordingQuarantined, StoreEvent
from linerec.store.format import (
    CHUNK_AUDIO_BYTES,
    MAX_BYTES,
    SUFFIX,
    RecordType,
    frame,
    json_body,
    scan,
)
from linerec.store.header import check_header
from linerec.store.private import private_dir, write_private
from linerec.store.seal import sign_end

QUARANTINE = "quarantine"


class Recovery:
    """One pass over the ring directory, on the ring's own entries (it keeps them true)."""

    def __init__(
        self,
        directory: Path,
        *,
        disk: Disk,
        identity: Ed25519PrivateKey,
        entries: dict[str, Entry],
        forget: Callable[[str], None],
        on_event: Callable[[StoreEvent], None],
        wall: Callable[[], datetime],
    ) -> None:
        self._dir = directory
        self._disk = disk
        self._identity = identity
        self._entries = entries
        self._forget_files = forget  # removes a recording's files whose deletion is logged
        self._on_event = on_event
        self._wall = wall

    def run(self, logged: set[str]) -> list[SealedRecording]:
        """Close what a power cut left open: keep every intact chunk, mark the file cut, sign it.

        Safe to interrupt and to repeat: truncating to the last intact record is idempotent,
        and a torn cut marker is cut away and written again on the next run.
        """
        recovered = []
        for name in sorted(self._disk.listdir(self._dir)):
            if not name.endswith(SUFFIX):
                continue
            path = self._dir / name
            if name.removesuffix(SUFFIX) in logged:
                # Its deletion was logged and synced, then the power went: finish it (an
                # opted-out call must not come back as a recovered recording).
                self._forget_files(name.removesuffix(SUFFIX))
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
        directory = private_dir(self._dir / QUARANTINE)
        target = directory / path.name
        number = 0
        while target.exists() or target.with_name(target.name + ".why").exists():
            number += 1
            target = directory / f"{path.name}.{number}"
        self._disk.replace(path, target)
        write_private(target.with_name(target.name + ".why"), (reason + "\n").encode())
        self._disk.sync_dir(directory)
        self._disk.sync_dir(self._dir)
        for key in [key for key, entry in self._entries.items() if entry.path == path]:
            del self._entries[key]
        self._on_event(RecordingQuarantined(path=target, reason=reason))

    def _recover_file(self, path: Path) -> SealedRecording | None:
        """Recover one file: None if it needed nothing (or held nothing and went)."""
        check_regular(path, limit=MAX_BYTES)
        data = self._disk.read(path)
        records = list(scan(data))
        if not records or records[0].type is not RecordType.HEADER:
            # The header never reached the card whole: no audio can follow it.
            self._disk.unlink(path)
            self._disk.sync_dir(self._dir)
            return None
        header = check_header(json.loads(records[0].body), 0)
        kinds = [r.type for r in records]
        end = records[-1].end
        if RecordType.TRAILER in kinds or RecordType.CUT in kinds:
            known = any(entry.path == path for entry in self._entries.values())
            if end < len(data):  # reserved space after a finished file: give it back
                handle = self._disk.open(path)
                self._disk.truncate(handle, end)
                self._disk.datasync(handle)
                self._disk.close(handle)
                known = False
            if not known:  # read_entry refused it at start, or it changed: its end is checked
                entry = read_entry(path, self._dir)
                self._entries[entry.id] = entry
            return None
        header_hash = sha256(records[0].body).digest()
        chunks = sum(1 for r in records if r.type is RecordType.CHUNK)
        samples = chunks * CHUNK_AUDIO_BYTES // Codec(header["codec"]).bytes_per_sample
        cut = sign_end(
            self._identity,
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
        handle = self._disk.open(path)
        self._disk.truncate(handle, end)
        self._disk.pwrite(handle, frame(RecordType.CUT, json_body(cut)), end)
        self._disk.datasync(handle)
        self._disk.close(handle)
        entry = read_entry(path, self._dir)
        self._entries[entry.id] = entry
        return SealedRecording(
            id=entry.id,
            path=path,
            duration=entry.duration,
            metadata={"line": entry.line, "state": STATE_CUT},
        )
