"""A copy for a customer, and the file that proves where it came from.

`export` writes OUT.wav (the audio), OUT.json (the call's metadata), OUT.lrec (the recording
as the appliance sealed and signed it) and OUT.verify.json: the recording's header and signed
trailer, the SHA-256 of OUT.lrec and of OUT.wav, all signed by the collector. `verify_export`
checks, with only public keys: the collector's signature, that OUT.wav and OUT.lrec are the
files it names, and that OUT.lrec is intact and signed by the appliance its header names.

A redacted recording (linerec.collector.redaction) is signed by the collector instead: its
header says which spans were silenced, by whom and why, and names the original (its header
hash, its file's hash and the appliance's signed trailer). `verify_export` accepts it only if
the collector's own key signed it, and `redaction_note` says what it is.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from linerec.atomic import write_atomic
from linerec.codec import RATE, Codec
from linerec.collector.redaction import redaction_of
from linerec.collector.store import CollectorStore
from linerec.mqttapi import ApiError, sign, verify
from linerec.store.keys import CollectorPrivate, CollectorPublic, raw_public
from linerec.store.reader import Decrypted, IntegrityError, decrypt, inspect
from linerec.wav import WavWriter

EXPORT_MODE = 0o644  # the copy goes to a customer; as a umask of 022 left it before


class NoOriginal(LookupError):
    """An export of the original asked of a recording that has none kept aside."""


def export(
    store: CollectorStore,
    key: CollectorPrivate,
    recording_id: str,
    out: Path,
    reason: str,
    device: str | None = None,
    *,
    original: bool = False,
) -> Decrypted:
    """Write the customer copy: OUT.wav, OUT.json, OUT.lrec and OUT.verify.json, each
    replaced whole (linerec.atomic): a failed write (a full disk; ValueError naming the file)
    or a cut leaves the file there before, never a torn one."""
    result, files = export_files(store, key, recording_id, reason, device, original=original)
    for suffix, data in files.items():
        path = out.with_suffix(suffix)
        try:
            write_atomic(path, data, mode=EXPORT_MODE)
        except OSError as exc:
            raise ValueError(
                f"{path}: not written ({exc.strerror or exc}); the one there before, if any, "
                "is kept"
            ) from exc
    return result


def export_files(
    store: CollectorStore,
    key: CollectorPrivate,
    recording_id: str,
    reason: str,
    device: str | None = None,
    *,
    original: bool = False,
) -> tuple[Decrypted, dict[str, bytes]]:
    """The customer copy's files, by suffix, made in memory (the console sends them as one
    archive: no audio in clear is written at the collector). `original`: of the appliance's
    recording that a redaction kept aside for a legal hold, not of the version shown
    (NoOriginal if none is kept)."""
    row = store.recording(recording_id, device)
    if row is None:
        raise ValueError("no such recording at this collector")
    if original:
        kept = store.read_kept_original(row["device"], recording_id)
        if kept is None:
            raise NoOriginal(
                f"{row['device']}/{recording_id}: no original is kept aside (one is only while "
                "a redacted recording is on legal hold; otherwise the copy is the original)"
            )
        sealed = kept
    else:
        sealed = store.read_recording(recording_id, Path(row["path"]), row["device"])
    result = decrypt(sealed, key)
    buffer = io.BytesIO()
    writer = WavWriter(buffer, rate=RATE, codec=Codec.PCM16)
    writer.write(result.samples)
    writer.close()
    wav = buffer.getvalue()
    public = {k: v for k, v in row.items() if k != "path"}
    metadata = {"recording": public, "state": result.inspected.state, "metadata": result.metadata}
    proof = {
        "recording": recording_id,
        "reason": reason,
        "header": result.inspected.header,
        "end": result.inspected.end,
        "lrec_sha256": hashlib.sha256(sealed).hexdigest(),
        "wav_sha256": hashlib.sha256(wav).hexdigest(),
        "redaction": redaction_of(result.inspected.header),
        "original_kept_for_hold": original,
    }
    return result, {
        ".wav": wav,
        ".json": (json.dumps(metadata, indent=2) + "\n").encode(),
        ".lrec": sealed,
        ".verify.json": sign(key.signing, proof),
    }


def verify_export(wav: Path, collector: CollectorPublic) -> str:
    """Empty if the copy verifies; otherwise what failed."""
    try:
        proof = verify(
            collector.signing, wav.with_suffix(".verify.json").read_bytes(), "verification file"
        )
    except (OSError, ApiError) as exc:
        return str(exc)
    if hashlib.sha256(wav.read_bytes()).hexdigest() != proof.get("wav_sha256"):
        return "the audio is not the one exported (altered)"
    try:
        sealed = wav.with_suffix(".lrec").read_bytes()
    except OSError as exc:
        return f"the sealed recording is missing: {exc}"
    if hashlib.sha256(sealed).hexdigest() != proof.get("lrec_sha256"):
        return "the sealed recording is not the one exported"
    try:
        inspected = inspect(sealed)
    except IntegrityError as exc:
        return f"the sealed recording does not verify: {exc}"
    if inspected.header != proof.get("header"):
        return "the verification file names another recording"
    if redaction_of(inspected.header) is not None and raw_public(
        inspected.device_key
    ) != raw_public(collector.signing):
        return "it says it is a redacted version, but this collector did not sign it"
    return ""


def redaction_note(wav: Path) -> str:
    """For a copy that verifies: '' if it is the appliance's recording as it was, else which
    spans were silenced, by whom, why, and from which original."""
    redaction = redaction_of(inspect(wav.with_suffix(".lrec").read_bytes()).header)
    if redaction is None:
        return ""
    original = redaction["original"]
    spans = "; ".join(
        f"{span['from']:g}-{span['to']:g} s by {span['by']} ({span['reason']})"
        for span in redaction["spans"]
    )
    return (
        f"REDACTED: silenced {spans}; from the original {original['device']}/{original['id']} "
        f"(header sha256 {original['header_sha256']}, file sha256 {original['sha256']}), "
        "signed by its appliance"
    )
