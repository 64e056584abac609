"""Redaction after the call: a new version of a recording with spans silenced.

A supervisor marks a span (where a customer read out a card number the agent forgot to pause
for) and a reason. The collector decrypts the version it holds, silences the span, and writes
a new recording in the appliance's own format (docs/format.md), encrypted to its own key and
signed by its own signing key: the header's `device_key` is the collector's, and the header
carries `redaction`, so the signature covers it:

    "redaction": {
      "original": {"device", "id", "header_sha256", "sha256", "end"},  # as the appliance sealed it
      "spans": [{"from", "to", "reason", "by", "at"}, ...]  # every span silenced so far
    }

`end` is the appliance's signed trailer of the original, `sha256` the hash of the file it
delivered. The new version takes the original's place in the store (search and playback show
it); the original's key is destroyed (crypto-shredding, as `collector delete` does) unless the
recording is on legal hold: then the original is kept, for the hold only, and shredded when
the hold is lifted. A second redaction starts from the first and adds its span.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from linerec.codec import RATE, Codec, encode
from linerec.store.format import (
    CHUNK_AUDIO_BYTES,
    FINAL,
    RecordType,
    chunk_aad,
    chunk_nonce,
    frame,
    json_body,
)
from linerec.store.keys import CollectorPrivate, b64, raw_public
from linerec.store.reader import Decrypted, decrypt
from linerec.store.seal import seal_metadata, sign_end, wrap_key

if TYPE_CHECKING:
    from linerec.collector.store import CollectorStore

MAX_REASON = 500


class RedactionError(ValueError):
    """A redaction that cannot be made as asked (names the field: from, to, reason)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Redacted:
    device: str
    id: str
    version: int
    start: float
    end: float
    original_kept: bool  # on legal hold: the original stays, for the hold only


def redaction_of(header: dict[str, Any]) -> dict[str, Any] | None:
    """The `redaction` a recording's header carries (None for an appliance's own recording)."""
    value = header.get("redaction")
    return value if isinstance(value, dict) else None


def silence(samples: np.ndarray, start: float, end: float, rate: int = RATE) -> np.ndarray:
    """A copy with the samples from `start` to `end` seconds set to zero."""
    out = np.array(samples, dtype=np.int16, copy=True)
    first = max(0, round(start * rate))
    last = min(len(out), round(end * rate))
    out[first:last] = 0
    return out


def seal_version(
    source: Decrypted, sealed_source: bytes, key: CollectorPrivate, span: dict[str, Any]
) -> bytes:
    """The new version: `source` with `span` silenced, in the recording format, encrypted to
    the collector and signed by it."""
    inspected = source.inspected
    previous = redaction_of(inspected.header)
    if previous is None:
        original = {
            "device": inspected.header["device"],
            "id": inspected.header["id"],
            "header_sha256": inspected.header_hash.hex(),
            "sha256": hashlib.sha256(sealed_source).hexdigest(),
            "end": inspected.end,
        }
        spans: list[dict[str, Any]] = []
    else:
        original, spans = previous["original"], list(previous["spans"])
    spans.append(span)
    codec = Codec(inspected.header["codec"])
    samples = silence(source.samples, span["from"], span["to"])
    file_key = os.urandom(32)
    header = {
        **{k: v for k, v in inspected.header.items() if k not in ("recipients", "device_key")},
        "device_key": b64(raw_public(key.signing.public_key())),
        "recipients": [wrap_key(file_key, key.encryption.public_key())],
        "redaction": {"original": original, "spans": spans},
    }
    header_body = json_body(header)
    header_hash = hashlib.sha256(header_body).digest()
    metadata = {**source.metadata, "redactions": spans}
    out = bytearray(frame(RecordType.HEADER, header_body))
    out += frame(RecordType.METADATA, seal_metadata(file_key, header_hash, 0, metadata))
    audio = encode(codec, samples)
    pieces = [audio[i : i + CHUNK_AUDIO_BYTES] for i in range(0, len(audio), CHUNK_AUDIO_BYTES)]
    if not pieces or len(pieces[-1]) == CHUNK_AUDIO_BYTES:
        pieces.append(b"")  # the final chunk, as the appliance writes it
    aead = ChaCha20Poly1305(file_key)
    for index, piece in enumerate(pieces):
        final = index == len(pieces) - 1
        body = index.to_bytes(4, "little") + aead.encrypt(
            chunk_nonce(index), piece, chunk_aad(header_hash, index, final)
        )
        out += frame(RecordType.CHUNK, body, FINAL if final else 0)
    out += frame(RecordType.METADATA, seal_metadata(file_key, header_hash, 1, metadata))
    ended_by = (inspected.end or {}).get("ended_by", "redaction")
    trailer = sign_end(
        key.signing,
        RecordType.TRAILER,
        header_hash,
        {
            "chunks": len(pieces),
            "samples": len(samples),
            "ended_by": ended_by,
            "digest": hashlib.sha256(bytes(out)).hexdigest(),
        },
    )
    out += frame(RecordType.TRAILER, json_body(trailer))
    return bytes(out)


def redact(
    store: CollectorStore,
    key: CollectorPrivate,
    reference: str,
    start: float,
    end: float,
    reason: str,
    *,
    who: str,
    device: str | None = None,
    now: float | None = None,
) -> Redacted:
    """Silence `start`..`end` seconds of the recording `reference` names (see above).

    KeyError for an unknown recording; RedactionError for an empty reason or a span outside
    the recording; IntegrityError if the version held does not verify."""
    reason = " ".join(reason.split())
    if not reason:
        raise RedactionError("reason: say why this span is redacted (it is kept with it)")
    if len(reason) > MAX_REASON:
        raise RedactionError(f"reason: at most {MAX_REASON} characters")
    row = store.find(reference, device)
    device, recording_id = row["device"], row["id"]
    sealed = store.read_recording(recording_id, Path(row["path"]), device)
    source = decrypt(sealed, key)
    duration = len(source.samples) / RATE
    if not (start == start and end == end) or start < 0:
        raise RedactionError(f"from: must be 0 s or later (got {start!r})")
    if end <= start:
        raise RedactionError(f"to: must be after from ({start:g} s) (got {end:g} s)")
    if start >= duration:
        raise RedactionError(
            f"from: {start:g} s is past the end of the recording ({duration:.3f} s)"
        )
    end = min(end, duration)
    start, end = round(start, 3), round(end, 3)
    span: dict[str, Any] = {
        "from": start,
        "to": end,
        "reason": reason,
        "by": who,
        "at": time.time() if now is None else now,
    }
    previous = redaction_of(source.inspected.header)
    version = len(previous["spans"]) + 1 if previous else 1
    data = seal_version(source, sealed, key, span)
    # Only the appliance's own recording is worth keeping for a hold; a version made here
    # before is shredded like any other.
    keep_original = previous is None and store.is_held(device, recording_id)
    store.keep_version(
        device, recording_id, data, version=version, keep_original=keep_original, span=span
    )
    store.audit("redact", recording_id, f"{span['from']:g}-{span['to']:g} s: {reason}", who=who)
    return Redacted(
        device=device,
        id=recording_id,
        version=version,
        start=start,
        end=end,
        original_kept=keep_original,
    )
