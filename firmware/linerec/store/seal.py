"""The cryptography of a recording, in one place (docs/format.md, "Keys").

* Each recording has a fresh random 32-byte key. It is wrapped to each recipient with RFC 9180
  HPKE in base mode (X25519, HKDF-SHA256, ChaCha20-Poly1305; `hpke.py`): format v2. Format v1
  wrapped it with a hand-made construction of the same primitives (ephemeral X25519, HKDF-SHA256
  with salt = ephemeral public || recipient public, ChaCha20-Poly1305); v1 files are still
  read. The appliance forgets the ephemeral private key and the recording key when the
  recording ends, so it cannot decrypt its own recordings, by design.
* Audio chunks: ChaCha20-Poly1305 under the recording key, nonce = chunk index, AAD = header
  hash, index and the final flag (see format.py). The Pi 3/4/Zero 2 have no AES instructions,
  which is why ChaCha20.
* Metadata: ChaCha20-Poly1305 under a key derived from the recording key (HKDF, its own label),
  numbered records (the number is the nonce): a first one with the header, so that a
  recording cut by a power loss still says what it is, and a last one at the seal.
* The appliance signs the trailer (or the cut marker) with its Ed25519 identity.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from linerec.store import hpke
from linerec.store.format import RecordType, json_body
from linerec.store.keys import CollectorPrivate, b64, key_id, raw_public

_WRAP_INFO = b"linerec-wrap-v1"
_WRAP_INFO_V2 = b"linerec-wrap-v2"  # HPKE's info is this || kid
_META_INFO = b"linerec-meta-v1"


def _kdf(secret: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(secret)


def wrap_key(file_key: bytes, recipient: X25519PublicKey) -> dict[str, str]:
    """The header entry (format v2) that lets `recipient`'s private key recover `file_key`."""
    kid = key_id(recipient)
    sealed = hpke.seal(recipient, _WRAP_INFO_V2 + kid.encode(), file_key)
    return {"kid": kid, "enc": b64(sealed[: hpke.N_ENC]), "ct": b64(sealed[hpke.N_ENC :])}


def unwrap_entry(key: CollectorPrivate, entry: dict[str, Any], version: int) -> bytes:
    """The key wrapped in a recipient `entry` of a v1 or v2 header or sealed event, with
    whichever of `key`'s epochs it names. KeyError if none of them is its recipient; InvalidTag
    or ValueError if it does not open."""
    kid = entry.get("kid")
    private = key.decryption_key(kid) if isinstance(kid, str) else None
    if private is None or not isinstance(kid, str):
        raise KeyError(kid)
    if version >= 2:
        enc = base64.b64decode(entry["enc"], validate=True)
        ct = base64.b64decode(entry["ct"], validate=True)
        return hpke.open_sealed(private, _WRAP_INFO_V2 + kid.encode(), enc + ct)
    return unwrap_key(
        private,
        X25519PublicKey.from_public_bytes(base64.b64decode(entry["epk"], validate=True)),
        base64.b64decode(entry["wrapped"], validate=True),
        kid,
    )


def wrap_key_v1(file_key: bytes, recipient: X25519PublicKey) -> dict[str, str]:
    """The v1 header entry; only tests write it now (to show v1 files stay readable)."""
    ephemeral = X25519PrivateKey.generate()
    epk = raw_public(ephemeral.public_key())
    kid = key_id(recipient)
    wrapping = _kdf(ephemeral.exchange(recipient), epk + raw_public(recipient), _WRAP_INFO)
    wrapped = ChaCha20Poly1305(wrapping).encrypt(bytes(12), file_key, _WRAP_INFO + kid.encode())
    return {"kid": kid, "epk": b64(epk), "wrapped": b64(wrapped)}


def unwrap_key(private: X25519PrivateKey, epk: X25519PublicKey, wrapped: bytes, kid: str) -> bytes:
    """Format v1's unwrap."""
    own = raw_public(private.public_key())
    wrapping = _kdf(private.exchange(epk), raw_public(epk) + own, _WRAP_INFO)
    return ChaCha20Poly1305(wrapping).decrypt(bytes(12), wrapped, _WRAP_INFO + kid.encode())


def meta_key(file_key: bytes) -> bytes:
    return _kdf(file_key, b"", _META_INFO)


def _meta_nonce_aad(header_hash: bytes, number: int) -> tuple[bytes, bytes]:
    return number.to_bytes(12, "little"), _META_INFO + header_hash + number.to_bytes(4, "little")


def seal_metadata(
    file_key: bytes, header_hash: bytes, number: int, metadata: dict[str, Any]
) -> bytes:
    """Metadata record `number` (0: written with the header; 1: at the seal): u32 + ciphertext."""
    nonce, aad = _meta_nonce_aad(header_hash, number)
    sealed = ChaCha20Poly1305(meta_key(file_key)).encrypt(nonce, json_body(metadata), aad)
    return number.to_bytes(4, "little") + sealed


def open_metadata(file_key: bytes, header_hash: bytes, body: bytes) -> bytes:
    """The plaintext of a metadata record body; raises InvalidTag if it was altered."""
    number = int.from_bytes(body[:4], "little")
    nonce, aad = _meta_nonce_aad(header_hash, number)
    return ChaCha20Poly1305(meta_key(file_key)).decrypt(nonce, body[4:], aad)


def signed_payload(kind: RecordType, header_hash: bytes, end: dict[str, Any]) -> bytes:
    """What the appliance signs for a trailer or cut marker: everything in it but the signature."""
    unsigned = {k: v for k, v in end.items() if k != "sig"}
    return b"linerec-" + kind.name.lower().encode() + b"-v1" + header_hash + json_body(unsigned)


def sign_end(
    identity: Ed25519PrivateKey, kind: RecordType, header_hash: bytes, end: dict[str, Any]
) -> dict[str, Any]:
    return {**end, "sig": b64(identity.sign(signed_payload(kind, header_hash, end)))}


# -- personal fields of an event (docs/mqtt-api.md, "Sealed fields") --------------------------

_EVENT_INFO = b"linerec-event-v1"


def seal_fields(
    recipients: list[X25519PublicKey], fields: dict[str, Any], envelope: bytes
) -> dict[str, Any]:
    """Encrypt an event's fields to the collector's keys, bound to its clear `envelope`.

    A fresh key per event, wrapped to each recipient as a recording key is (v2: HPKE); used
    once, so the zero nonce is safe. The envelope (canonical JSON of device, seq, event, time)
    is the AAD: sealed fields moved to another event fail to open."""
    event_key = ChaCha20Poly1305.generate_key()
    sealed = ChaCha20Poly1305(event_key).encrypt(
        bytes(12), json_body(fields), _EVENT_INFO + envelope
    )
    return {
        "v": 2,
        "recipients": [wrap_key(event_key, recipient) for recipient in recipients],
        "ciphertext": b64(sealed),
    }


def open_fields(key: CollectorPrivate, sealed: dict[str, Any], envelope: bytes) -> bytes:
    """The canonical JSON of sealed fields (v1 or v2), opened with whichever of `key`'s epochs
    is a recipient; KeyError if none is, InvalidTag (or ValueError for bad base64) if the key
    or anything sealed or in the envelope differs."""
    version = sealed.get("v", 1)
    if version not in (1, 2):
        raise ValueError(f"sealed fields of unknown version {version!r}")
    entry = next((r for r in sealed["recipients"] if r.get("kid") in key.kids), None)
    if entry is None:  # perhaps an epoch made since the key was loaded (rotate-key)
        entry = next(
            (r for r in sealed["recipients"] if key.decryption_key(r.get("kid")) is not None),
            None,
        )
    if entry is None:
        raise KeyError(key.kid)
    event_key = unwrap_entry(key, entry, version)
    return ChaCha20Poly1305(event_key).decrypt(
        bytes(12), base64.b64decode(sealed["ciphertext"], validate=True), _EVENT_INFO + envelope
    )
