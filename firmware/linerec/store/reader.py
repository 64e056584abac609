"""Reading recordings: check them without a key, decrypt them with the collector's.

`inspect` checks what anyone can check: the framing and checksums, the order of records, the
trailer's or cut marker's digest of everything before it and the appliance's signature on it.
`decrypt` also unwraps the recording key with a collector private key and authenticates and
decrypts every chunk. Every failure says what failed and where (chunk index, byte offset).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from linerec.codec import Codec, Samples, decode
from linerec.store.digest import sha256
from linerec.store.format import (
    FINAL,
    FormatError,
    Record,
    RecordType,
    chunk_aad,
    chunk_nonce,
    parse_json,
    read_records,
)
from linerec.store.header import HeaderError, check_end, check_header
from linerec.store.keys import CollectorPrivate
from linerec.store.seal import open_metadata, signed_payload, unwrap_entry

COMPLETE, CUT, OPEN = "complete", "cut", "open"


class IntegrityError(ValueError):
    """A recording failed a check; the message names the check and the place."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Inspected:
    header: dict[str, Any]
    header_hash: bytes
    state: str  # complete | cut | open
    chunks: list[Record]
    metadata_record: Record | None
    end: dict[str, Any] | None  # the trailer or the cut marker
    device_key: Ed25519PublicKey

    @property
    def duration(self) -> float:
        if self.end is not None and "samples" in self.end:
            return float(self.end["samples"]) / float(self.header["rate"])
        return 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Decrypted:
    inspected: Inspected
    samples: Samples
    metadata: dict[str, Any]


def inspect(data: bytes) -> Inspected:
    """Check a recording's structure and signature (no key needed)."""
    try:
        records = read_records(data)
    except FormatError as exc:
        if any(data[exc.offset :]):
            raise IntegrityError(f"damaged at {exc}") from exc
        # Only reserved (zeroed) space follows: a recording still open, or never recovered.
        records = read_records(data[: exc.offset])
    if not records or records[0].type is not RecordType.HEADER:
        raise IntegrityError("byte 0: the file does not begin with a header record")
    header_record = records[0]
    try:
        header = check_header(_json(header_record), header_record.offset)
    except HeaderError as exc:
        raise IntegrityError(str(exc)) from exc
    header_hash = sha256(header_record.body).digest()
    try:
        device_key = Ed25519PublicKey.from_public_bytes(base64.b64decode(header["device_key"]))
    except ValueError as exc:
        raise IntegrityError(f"byte 0: header.device_key: not a valid key: {exc}") from exc
    chunks: list[Record] = []
    metadata: Record | None = None
    final_metadata = False
    end: dict[str, Any] | None = None
    state = OPEN
    for record in records[1:]:
        if end is not None:
            raise IntegrityError(
                f"byte {record.offset}: {record.type.name} after the {state} marker"
            )
        if record.type is RecordType.PAD:
            continue
        if record.type is RecordType.CHUNK:
            if final_metadata:
                raise IntegrityError(f"byte {record.offset}: audio chunk after the final metadata")
            index = int.from_bytes(record.body[:4], "little")
            if index != len(chunks):
                raise IntegrityError(
                    f"chunk {len(chunks)} at byte {record.offset}: has index {index} "
                    "(chunks missing, swapped or repeated)"
                )
            if chunks and chunks[-1].flags & FINAL:
                raise IntegrityError(
                    f"chunk {index} at byte {record.offset}: follows the final chunk"
                )
            chunks.append(record)
        elif record.type is RecordType.METADATA:
            metadata = record  # the last one written says the most
            final_metadata = bool(chunks) and bool(chunks[-1].flags & FINAL)
        elif record.type in (RecordType.TRAILER, RecordType.CUT):
            try:
                end = check_end(_json(record), record.offset, record.type.name.lower())
            except HeaderError as exc:
                raise IntegrityError(str(exc)) from exc
            state = COMPLETE if record.type is RecordType.TRAILER else CUT
            _check_end(data, record, end, header_hash, device_key, chunks, state)
        else:
            raise IntegrityError(f"byte {record.offset}: unexpected {record.type.name} record")
    return Inspected(
        header=header,
        header_hash=header_hash,
        state=state,
        chunks=chunks,
        metadata_record=metadata,
        end=end,
        device_key=device_key,
    )


def _json(record: Record) -> dict[str, Any]:
    try:
        return parse_json(record)
    except FormatError as exc:
        raise IntegrityError(str(exc)) from exc


def _check_end(
    data: bytes,
    record: Record,
    end: dict[str, Any],
    header_hash: bytes,
    device_key: Ed25519PublicKey,
    chunks: list[Record],
    state: str,
) -> None:
    where = f"{record.type.name.lower()} at byte {record.offset}"
    digest = sha256(data[: record.offset]).hexdigest()
    if end.get("digest") != digest:
        raise IntegrityError(f"{where}: the file before it does not match its digest (altered)")
    try:
        signature = base64.b64decode(end.get("sig", ""))
        device_key.verify(signature, signed_payload(record.type, header_hash, end))
    except (InvalidSignature, ValueError) as exc:
        raise IntegrityError(
            f"{where}: bad signature (not made by this recording's device)"
        ) from exc
    if end.get("chunks") != len(chunks):
        raise IntegrityError(
            f"{where}: says {end.get('chunks')} chunks, the file has {len(chunks)}"
        )
    if state == COMPLETE and chunks and not chunks[-1].flags & FINAL:
        raise IntegrityError(f"{where}: the last chunk is not marked final")


def decrypt(data: bytes, key: CollectorPrivate) -> Decrypted:
    """Verify and decrypt; an open (unrecovered or truncated) recording is an error."""
    inspected = inspect(data)
    if inspected.state == OPEN:
        end = inspected.chunks[-1].end if inspected.chunks else 0
        raise IntegrityError(
            f"byte {end}: the recording stops with no trailer and no cut marker "
            "(truncated, or not yet recovered after a power loss)"
        )
    recording_key = file_key(inspected, key)
    aead = ChaCha20Poly1305(recording_key)
    codec = Codec(inspected.header["codec"])
    parts = []
    for index, record in enumerate(inspected.chunks):
        final = bool(record.flags & FINAL)
        try:
            parts.append(
                aead.decrypt(
                    chunk_nonce(index),
                    record.body[4:],
                    chunk_aad(inspected.header_hash, index, final),
                )
            )
        except InvalidTag as exc:
            raise IntegrityError(
                f"chunk {index} at byte {record.offset}: failed authentication "
                "(altered, or from another recording)"
            ) from exc
    metadata = _metadata(inspected, recording_key)
    samples = decode(codec, b"".join(parts))
    return Decrypted(inspected=inspected, samples=samples, metadata=metadata)


def read_metadata(inspected: Inspected, key: CollectorPrivate) -> dict[str, Any]:
    """Only the call metadata, without decrypting the audio (memory does not grow with it)."""
    return _metadata(inspected, file_key(inspected, key))


def file_key(inspected: Inspected, key: CollectorPrivate) -> bytes:
    """The recording key, unwrapped with whichever of `key`'s epochs is a recipient."""
    return unwrap_recording_key(inspected.header, key)


def unwrap_recording_key(header: dict[str, Any], key: CollectorPrivate) -> bytes:
    """The recording key of a (checked) header, as `file_key`."""
    recipients = {r.get("kid"): r for r in header.get("recipients", [])}
    entry = next((recipients[kid] for kid in key.kids if kid in recipients), None)
    if entry is None:  # perhaps an epoch made since the key was loaded (rotate-key)
        entry = next((e for kid, e in recipients.items() if key.decryption_key(str(kid))), None)
    if entry is None:
        listed = ", ".join(str(k) for k in recipients) or "none"
        raise IntegrityError(
            f"key {key.path} (kid {', '.join(key.kids)}) is not a recipient of this recording "
            f"(recipients: {listed})"
        )
    try:
        recording_key = unwrap_entry(key, entry, header["v"])
    except (InvalidTag, KeyError, ValueError) as exc:
        raise IntegrityError(
            f"key {key.path}: cannot unwrap the recording key (wrong key)"
        ) from exc
    return recording_key


def _metadata(inspected: Inspected, recording_key: bytes) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if inspected.metadata_record is not None:
        record = inspected.metadata_record
        try:
            plain = open_metadata(recording_key, inspected.header_hash, record.body)
        except InvalidTag as exc:
            raise IntegrityError(
                f"metadata at byte {record.offset}: failed authentication"
            ) from exc
        metadata = parse_json(Record(RecordType.METADATA, 0, plain, record.offset))
    return metadata
