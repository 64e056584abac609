"""What a recording on the card is, read without any key: the `Entry` that `store list` shows,
the ring's bookkeeping keeps, and the outbox hands to the uplink."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linerec.codec import RATE, Codec
from linerec.files import check_regular
from linerec.store.digest import sha256
from linerec.store.format import (
    BLOCK,
    CHUNK_AUDIO_BYTES,
    FRAME,
    MAGIC,
    MAX_BODY,
    MAX_BYTES,
    OVERHEAD,
    RecordType,
    scan,
)
from linerec.store.header import check_end, check_header

STATE_OPEN, STATE_SEALED, STATE_CUT = "open", "sealed", "cut"


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
