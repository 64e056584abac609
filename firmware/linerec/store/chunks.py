"""A recording's audio read a chunk at a time, from any sample, without reading the rest.

Every chunk but the last carries CHUNK_AUDIO_BYTES of audio in a record of exactly BLOCK
bytes, and the chunks follow one another (docs/format.md), so chunk i starts at
`first + BLOCK * i` and holds samples from `i * per_chunk`: a player's seek is one read. Where
the chunks begin is found by walking the records before them (the header, metadata and pad);
how many there are by looking near the end of the file, then the signed trailer or cut marker
that follows them.

`open_audio` checks the header, the end record's signature (by the device the header names)
and its chunk count, unwraps the recording key and reads the call's metadata;
`ChunkedAudio.read` then authenticates each chunk it decrypts (the AAD binds it to the
header, its index and whether it is the last). What it does not do is hash the whole file
against the end record's digest, as that means reading all of it: it is for a file already
checked whole (`reader.inspect`), as the collector checks every upload before it keeps it
in its vault. Failures are IntegrityError naming the chunk and the byte offset.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from linerec.codec import Codec, Samples, decode
from linerec.store.digest import sha256
from linerec.store.format import (
    BLOCK,
    CHUNK_AUDIO_BYTES,
    CRC,
    FINAL,
    FRAME,
    MAGIC,
    MAX_BODY,
    TAG,
    FormatError,
    Record,
    RecordType,
    chunk_aad,
    chunk_nonce,
    parse_json,
)
from linerec.store.header import HeaderError, check_end, check_header
from linerec.store.keys import CollectorPrivate
from linerec.store.reader import COMPLETE, CUT, IntegrityError, unwrap_recording_key
from linerec.store.seal import open_metadata, signed_payload

FULL_BODY = 4 + CHUNK_AUDIO_BYTES + TAG  # index, audio, tag
BACK = 64  # chunk places looked at back from the end before searching (reserved zeros)


class RandomAccess(Protocol):
    """A recording's bytes, read at any offset (the collector's vault, or bytes in memory)."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...


@dataclass(frozen=True, slots=True)
class InMemory:
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkedAudio:
    header: dict[str, Any]
    header_hash: bytes
    state: str  # complete | cut
    end: dict[str, Any]  # the trailer or cut marker
    metadata: dict[str, Any]  # the call's, from the last metadata record
    chunks: int
    samples: int  # in the whole recording
    per_chunk: int  # samples in every chunk but the last
    first: int  # byte offset of chunk 0
    codec: Codec
    source: RandomAccess
    aead: ChaCha20Poly1305

    def read(self, start: int, stop: int) -> Iterator[Samples]:
        """Samples start..stop-1, a chunk's worth at a time, each authenticated."""
        stop = min(stop, self.samples)
        index = start // self.per_chunk if start < stop else self.chunks
        while index < self.chunks and index * self.per_chunk < stop:
            samples = self._chunk(index)
            base = index * self.per_chunk
            yield samples[max(start - base, 0) : stop - base]
            index += 1

    def _chunk(self, index: int) -> Samples:
        last = index == self.chunks - 1
        offset = self.first + BLOCK * index
        record = record_at(self.source, offset)
        where = f"chunk {index} at byte {offset}"
        if (
            record.type is not RecordType.CHUNK
            or int.from_bytes(record.body[:4], "little") != index
        ):
            raise IntegrityError(f"{where}: not that chunk (chunks missing, swapped or repeated)")
        final = bool(record.flags & FINAL)
        if not last and (final or len(record.body) != FULL_BODY):
            raise IntegrityError(f"{where}: a chunk before the last is short or marked final")
        try:
            plain = self.aead.decrypt(
                chunk_nonce(index), record.body[4:], chunk_aad(self.header_hash, index, final)
            )
        except InvalidTag as exc:
            raise IntegrityError(
                f"{where}: failed authentication (altered, or from another recording)"
            ) from exc
        return decode(self.codec, plain)


def record_at(source: RandomAccess, offset: int) -> Record:
    """The intact record at `offset`; IntegrityError naming the offset otherwise."""
    head = source.read(offset, FRAME.size)
    if len(head) < FRAME.size:
        raise IntegrityError(f"byte {offset}: the file ends before a record")
    magic, kind, flags, length = FRAME.unpack(head)
    if magic != MAGIC or length > MAX_BODY or offset + FRAME.size + length + CRC.size > source.size:
        raise IntegrityError(f"byte {offset}: no intact record starts here")
    rest = source.read(offset + FRAME.size, length + CRC.size)
    body = rest[:length]
    (crc,) = CRC.unpack_from(rest, length)
    if crc != zlib.crc32(head[2:] + body):
        raise IntegrityError(f"byte {offset}: checksum mismatch (the record is damaged)")
    try:
        record_type = RecordType(kind)
    except ValueError as exc:
        raise IntegrityError(f"byte {offset}: unknown record type {kind}") from exc
    return Record(record_type, flags, body, offset)


def open_audio(source: RandomAccess, key: CollectorPrivate) -> ChunkedAudio:
    """The recording's audio, ready to be read from any sample (see above)."""
    header_record = record_at(source, 0)
    if header_record.type is not RecordType.HEADER:
        raise IntegrityError("byte 0: the file does not begin with a header record")
    try:
        header = check_header(_json(header_record), 0)
    except HeaderError as exc:
        raise IntegrityError(str(exc)) from exc
    header_hash = sha256(header_record.body).digest()
    codec = Codec(header["codec"])
    offset = header_record.end
    metadata_record = None
    while True:  # the metadata and pad before the first chunk
        record = record_at(source, offset)
        if record.type is RecordType.CHUNK or record.type in (RecordType.TRAILER, RecordType.CUT):
            break
        if record.type not in (RecordType.METADATA, RecordType.PAD):
            raise IntegrityError(f"byte {offset}: unexpected {record.type.name} record")
        if record.type is RecordType.METADATA:
            metadata_record = record
        offset = record.end
    first = offset
    chunks = _count_chunks(source, first) if record.type is RecordType.CHUNK else 0
    last = record_at(source, first + BLOCK * (chunks - 1)) if chunks else None
    end_record, final_metadata = _end_record(source, last.end if last else first)
    state = COMPLETE if end_record.type is RecordType.TRAILER else CUT
    end = _check_end(end_record, header, header_hash, chunks, state, last)
    per_chunk = CHUNK_AUDIO_BYTES // codec.bytes_per_sample
    tail = (len(last.body) - 4 - TAG) // codec.bytes_per_sample if last else 0
    recording_key = unwrap_recording_key(header, key)
    return ChunkedAudio(
        header=header,
        header_hash=header_hash,
        state=state,
        end=end,
        metadata=_metadata(final_metadata or metadata_record, recording_key, header_hash),
        chunks=chunks,
        samples=(chunks - 1) * per_chunk + tail if chunks else 0,
        per_chunk=per_chunk,
        first=first,
        codec=codec,
        source=source,
        aead=ChaCha20Poly1305(recording_key),
    )


def _is_chunk(source: RandomAccess, first: int, index: int) -> bool:
    offset = first + BLOCK * index
    if offset + FRAME.size > source.size:
        return False
    try:
        record = record_at(source, offset)
    except IntegrityError:
        return False
    return record.type is RecordType.CHUNK and int.from_bytes(record.body[:4], "little") == index


def _count_chunks(source: RandomAccess, first: int) -> int:
    """How many chunks follow one another from `first` (chunk 0 is there). The places near
    the end of the file first (the trailer and metadata after the chunks are small), then a
    binary search if the file ends in space reserved ahead."""
    top = (source.size - first + BLOCK - 1) // BLOCK  # no chunk starts at or after this
    for index in range(top - 1, max(top - 1 - BACK, 0), -1):
        if _is_chunk(source, first, index):
            return index + 1
    present, absent = 0, max(top - BACK, 1)  # chunk `present` is there, `absent` is not
    while absent - present > 1:
        middle = (present + absent) // 2
        if _is_chunk(source, first, middle):
            present = middle
        else:
            absent = middle
    return absent


def _end_record(source: RandomAccess, offset: int) -> tuple[Record, Record | None]:
    """The trailer or cut marker after the chunks, and the last metadata record between."""
    metadata = None
    while offset < source.size:
        try:
            record = record_at(source, offset)
        except IntegrityError:
            break
        if record.type in (RecordType.TRAILER, RecordType.CUT):
            return record, metadata
        if record.type is not RecordType.METADATA:
            raise IntegrityError(f"byte {offset}: unexpected {record.type.name} after the audio")
        metadata, offset = record, record.end
    raise IntegrityError(
        f"byte {offset}: the recording stops with no trailer and no cut marker "
        "(truncated, or not yet recovered after a power loss)"
    )


def _check_end(
    record: Record,
    header: dict[str, Any],
    header_hash: bytes,
    chunks: int,
    state: str,
    last: Record | None,
) -> dict[str, Any]:
    where = f"{record.type.name.lower()} at byte {record.offset}"
    try:
        end = check_end(_json(record), record.offset, record.type.name.lower())
    except HeaderError as exc:
        raise IntegrityError(str(exc)) from exc
    try:
        device_key = Ed25519PublicKey.from_public_bytes(base64.b64decode(header["device_key"]))
        device_key.verify(
            base64.b64decode(end.get("sig", "")), signed_payload(record.type, header_hash, end)
        )
    except (InvalidSignature, ValueError) as exc:
        raise IntegrityError(
            f"{where}: bad signature (not made by this recording's device)"
        ) from exc
    if end.get("chunks") != chunks:
        raise IntegrityError(f"{where}: says {end.get('chunks')} chunks, the file has {chunks}")
    if state == COMPLETE and last is not None and not last.flags & FINAL:
        raise IntegrityError(f"{where}: the last chunk is not marked final")
    return end


def _metadata(record: Record | None, recording_key: bytes, header_hash: bytes) -> dict[str, Any]:
    if record is None:
        return {}
    try:
        plain = open_metadata(recording_key, header_hash, record.body)
    except InvalidTag as exc:
        raise IntegrityError(f"metadata at byte {record.offset}: failed authentication") from exc
    return _json(Record(RecordType.METADATA, 0, plain, record.offset))


def _json(record: Record) -> dict[str, Any]:
    try:
        return parse_json(record)
    except FormatError as exc:
        raise IntegrityError(str(exc)) from exc
