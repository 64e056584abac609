"""Listening to a call in progress: the chunks an appliance streams, decrypted as they land.

The stream of an open recording is written into its upload's part file at its offsets
(collector/uploads.py). Audio chunk i is the 4 KiB block at byte 4096 * (i + 1), so a
listener needs no index: it reads the header block once (the recording key, unwrapped with
the collector's key, is held in memory only), then each next block as soon as it is whole
and authentic. It starts at the newest chunk (live, not from the beginning) and, when the
stream skipped ahead over a slow link, skips with it. What is heard is WAV on `out`
(16-bit, 8 kHz, mono, length unknown), ready for `aplay`.

Every session is audited by the caller: who, which call, when, why, and how long.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from linerec.codec import RATE, Codec, decode
from linerec.collector.store import CollectorStore
from linerec.store.format import (
    BLOCK,
    CHUNK_AUDIO_BYTES,
    FINAL,
    RecordType,
    chunk_aad,
    chunk_nonce,
    scan,
)
from linerec.store.keys import CollectorPrivate
from linerec.store.reader import Inspected, IntegrityError, decrypt, file_key, inspect

_UNLOCKED = nullcontext()  # the command line's store is its own
POLL = 0.05  # seconds between looks at the part file: far below the 2 s the listener may lag
_ID = re.compile(r"(?P<device>.+)-(?P<seq>\d+)-\d{8}T\d{6}Z-(?P<line>[A-Za-z0-9_-]+)\Z")


class NothingToHear(LookupError):
    """No call in progress on that line: says which device and line."""


@dataclass(frozen=True, slots=True)
class Heard:
    id: str
    seconds: float  # of audio written out
    ended: str  # why listening stopped: "sealed", "discarded", "stopped"


def line_of(recording_id: str) -> str:
    match = _ID.match(recording_id)
    return match["line"] if match else ""


def call_in_progress(store: CollectorStore, device: str, line: str) -> str:
    """The id of the newest recording streaming from `device` on `line`."""
    found = [
        (int(match["seq"]), str(row["id"]))
        for row in store.uploads.in_progress()
        if row["device"] == device
        and (match := _ID.match(str(row["id"]))) is not None
        and match["line"] == line
    ]
    if not found:
        raise NothingToHear(f"{device}/{line}: no call in progress (nothing is streaming)")
    return max(found)[1]


def wav_stream_header(rate: int = RATE) -> bytes:
    """A WAV header for 16-bit mono audio of unknown length (players read to the end)."""
    unknown = 0xFFFFFFFF
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", unknown - 36)
    )


def listen(
    store: CollectorStore,
    key: CollectorPrivate,
    device: str,
    recording_id: str,
    out: BinaryIO,
    *,
    stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
    lock: AbstractContextManager[object] = _UNLOCKED,
) -> Heard:
    """Write the call's audio to `out` as it arrives, until it is sealed or discarded (or
    `stop`). IntegrityError if what arrives is not authentic. `lock` is held around each use
    of the store (the console shares one connection between its threads)."""
    part = store.uploads.part(device, recording_id)
    aead, header_hash, codec = None, b"", Codec.ULAW
    index: int | None = None
    written = 0
    out.write(wav_stream_header())
    out.flush()
    while not stop():
        with lock:
            streaming = store.uploads.is_streaming(device, recording_id)
        try:
            with open(part, "rb") as file:
                if aead is None:
                    inspected = _header(file.read(BLOCK))
                    if inspected is not None:
                        named = (inspected.header.get("device"), inspected.header.get("id"))
                        if named != (device, recording_id):
                            raise IntegrityError(
                                f"byte 0: the header names {named[0]}/{named[1]}, "
                                "not this stream's device and id"
                            )
                        aead = ChaCha20Poly1305(file_key(inspected, key))
                        header_hash = inspected.header_hash
                        codec = Codec(inspected.header["codec"])
                if aead is not None:
                    size = _size(file)
                    newest = max(size // BLOCK - 2, 0)  # the last whole chunk on the disk
                    if index is None or newest - index > 2:  # join live, or skip with the stream
                        index = newest
                    while True:
                        file.seek(BLOCK * (index + 1))
                        audio, final = _chunk(file.read(BLOCK), index, aead, header_hash)
                        if audio is None:
                            break
                        samples = decode(codec, audio)
                        out.write(samples.astype("<i2").tobytes())
                        out.flush()
                        written += len(samples)
                        index += 1
                        if final:
                            return Heard(recording_id, written / RATE, "sealed")
        except FileNotFoundError:
            pass
        if not streaming:  # sealed (the whole arrived or is arriving) or dropped (opted out)
            with lock:
                stored = store.stored(device, recording_id)
                under_way = stored is None and store.uploads.is_under_way(device, recording_id)
            if under_way:
                sleep(POLL)  # the hang-up: the sealed upload is bringing the rest
                continue
            if stored is None:
                return Heard(recording_id, written / RATE, "discarded")
            # The last chunks came with the sealed upload, not the stream: the listener hears
            # the call to its very end, from the recording as stored.
            with lock:
                sealed = store.read_recording(recording_id, Path(stored[0]), device)
            whole = decrypt(sealed, key).samples
            per_chunk = CHUNK_AUDIO_BYTES // codec.bytes_per_sample
            rest = whole[(index or 0) * per_chunk :] if index is not None else whole[:0]
            out.write(rest.astype("<i2").tobytes())
            out.flush()
            return Heard(recording_id, (written + len(rest)) / RATE, "sealed")
        sleep(POLL)
    return Heard(recording_id, written / RATE, "stopped")


def _size(file: BinaryIO) -> int:
    file.seek(0, 2)
    return file.tell()


def _header(block: bytes) -> Inspected | None:
    if len(block) < BLOCK:
        return None
    try:
        return inspect(block)
    except IntegrityError:
        return None  # not all here yet


def _chunk(
    block: bytes, index: int, aead: ChaCha20Poly1305, header_hash: bytes
) -> tuple[bytes | None, bool]:
    """The audio of chunk `index` if its block is whole and authentic, else None (not yet)."""
    record = next(scan(block), None)  # a hole not filled yet reads as zeros: no record
    if record is None or record.type is not RecordType.CHUNK:
        return None, False
    if int.from_bytes(record.body[:4], "little") != index:
        return None, False
    final = bool(record.flags & FINAL)
    try:
        audio = aead.decrypt(
            chunk_nonce(index), record.body[4:], chunk_aad(header_hash, index, final)
        )
    except InvalidTag as exc:
        raise IntegrityError(f"chunk {index}: failed authentication") from exc
    return audio, final
