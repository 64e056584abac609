"""The recording file format (docs/format.md): framed, checksummed records.

    record = "LR" | type u8 | flags u8 | length u32 LE | body | crc32 u32 LE

The CRC (zlib's CRC-32, over type..body) lets recovery find the last whole record without any
key. Record types:

    HEADER    plaintext JSON, authenticated (its SHA-256 is in every chunk's AAD and signed)
    PAD       zeros, so that audio chunks start on 4 KiB boundaries
    CHUNK     u32 index | ChaCha20-Poly1305 ciphertext of audio; flags bit 0 = final chunk
    METADATA  ChaCha20-Poly1305 ciphertext of JSON (call metadata), under a derived key
    TRAILER   JSON, signed by the appliance: a complete recording
    CUT       JSON, signed by the appliance's recovery: cut by a power loss after N chunks

This module is pure: bytes in, records out. It knows no keys.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from linerec.jsonlimit import TooDeep, loads

MAGIC = b"LR"
FRAME = struct.Struct("<2sBBI")  # magic, type, flags, length
CRC = struct.Struct("<I")
OVERHEAD = FRAME.size + CRC.size  # 12 bytes around every body
BLOCK = 4096  # one audio chunk record fills one block exactly
TAG = 16  # Poly1305 tag
CHUNK_AUDIO_BYTES = BLOCK - OVERHEAD - 4 - TAG  # 4064 bytes of codec payload per chunk
FINAL = 0x01
MAX_BODY = 1 << 20  # nothing we write is larger; a bigger length is corruption
SUFFIX = ".lrec"
MAX_BYTES = 1 << 30  # a recording file read whole: over 9 hours of PCM16, 37 of µ-law


class RecordType(IntEnum):
    HEADER = 1
    PAD = 2
    CHUNK = 3
    METADATA = 4
    TRAILER = 5
    CUT = 6


class FormatError(ValueError):
    """The bytes of a recording are not what the format says; names the offset."""

    def __init__(self, offset: int, message: str) -> None:
        self.offset = offset
        super().__init__(f"byte {offset}: {message}")


@dataclass(frozen=True, slots=True)
class Record:
    type: RecordType
    flags: int
    body: bytes
    offset: int  # where the record starts in the file

    @property
    def end(self) -> int:
        return self.offset + OVERHEAD + len(self.body)


def frame(kind: RecordType, body: bytes, flags: int = 0) -> bytes:
    head = FRAME.pack(MAGIC, kind, flags, len(body))
    return head + body + CRC.pack(zlib.crc32(head[2:] + body))


def pad_to_block(offset: int) -> bytes:
    """A PAD record that brings `offset` to the next 4 KiB boundary (at least one record)."""
    room = (-offset - OVERHEAD) % BLOCK
    return frame(RecordType.PAD, bytes(room))


def scan(data: bytes) -> Iterator[Record]:
    """Every whole, intact record from the start; stops quietly at the first that is not.

    Recovery uses this to find a torn tail; `read_records` is the strict version.
    """
    offset = 0
    while offset + OVERHEAD <= len(data):
        magic, kind, flags, length = FRAME.unpack_from(data, offset)
        end = offset + FRAME.size + length + CRC.size
        if magic != MAGIC or length > MAX_BODY or end > len(data):
            return
        body = data[offset + FRAME.size : offset + FRAME.size + length]
        (crc,) = CRC.unpack_from(data, end - CRC.size)
        if crc != zlib.crc32(data[offset + 2 : offset + FRAME.size] + body):
            return
        try:
            record_type = RecordType(kind)
        except ValueError:
            return
        yield Record(record_type, flags, body, offset)
        offset = end


def read_records(data: bytes) -> list[Record]:
    """All records; any byte that is not part of an intact record is an error naming its offset."""
    records = list(scan(data))
    end = records[-1].end if records else 0
    if end != len(data):
        raise FormatError(end, _why_not_a_record(data, end))
    return records


def _why_not_a_record(data: bytes, offset: int) -> str:
    rest = len(data) - offset
    if rest < OVERHEAD:
        return f"{rest} stray bytes at the end (a record is cut off)"
    magic, kind, _, length = FRAME.unpack_from(data, offset)
    if magic != MAGIC:
        return f"no record starts here (found {magic!r}, expected {MAGIC!r})"
    if length > MAX_BODY or offset + OVERHEAD + length > len(data):
        return f"record of {length} bytes runs past the end of the file (cut off)"
    if kind not in RecordType._value2member_map_:
        return f"unknown record type {kind}"
    return "checksum mismatch (the record is damaged)"


def json_body(value: dict[str, Any]) -> bytes:
    """Canonical JSON: what is hashed and signed must serialise one way only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def parse_json(record: Record) -> dict[str, Any]:
    try:
        value = loads(record.body)
    except TooDeep as exc:  # refused before json recursed once per level on our stack
        at = record.offset + FRAME.size + exc.offset  # in the file, not the record's body
        deeper = f"nested deeper than {exc.limit} levels at byte {at}"
        raise FormatError(record.offset, f"{record.type.name} is {deeper}") from exc
    except ValueError as exc:  # bad UTF-8 or JSON, a number of 5000 digits
        raise FormatError(record.offset, f"{record.type.name} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise FormatError(record.offset, f"{record.type.name} is not a JSON object")
    return value


def chunk_nonce(index: int) -> bytes:
    return bytes(4) + index.to_bytes(8, "little")


def chunk_aad(header_hash: bytes, index: int, final: bool) -> bytes:
    # Binds each chunk to its recording (splicing), its place (reordering) and whether the
    # stream ends with it (truncation).
    return b"linerec-chunk-v1" + header_hash + index.to_bytes(8, "little") + bytes([final])
