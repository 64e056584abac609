"""RFC 9180 HPKE, base mode, for the one suite linerec uses (docs/format.md, "Keys", v2).

KEM DHKEM(X25519, HKDF-SHA256) (0x0020), KDF HKDF-SHA256 (0x0001), AEAD ChaCha20-Poly1305
(0x0003), single-shot: one message per context (sequence number 0), no AAD; what is bound
to the message goes into `info`. `seal` returns enc || ciphertext, as RFC 9180 section 6.1's
single-shot API and cryptography's `hpke.Suite.encrypt` do.

Recent `cryptography` releases have an `hpke` module (50.0.2 is installed here), and that is
what runs where it is present. The image and pyproject ask only for cryptography >= 41, so
for an older one the same base mode is built here from cryptography's X25519, HMAC-SHA256
(HKDF-Extract), HKDF-Expand and ChaCha20Poly1305, following RFC 9180 sections 4, 4.1, 5.1
and 5.2.
tests/test_hpke.py checks that construction against the RFC's appendix A.2.1 test vector for
this suite, and that each side opens what the other sealed.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand


def _library_suite() -> Any:
    """cryptography's own HPKE for this suite, or None where it is too old to have one."""
    try:
        from cryptography.hazmat.primitives import hpke
    except ImportError:  # pragma: no cover - an older cryptography
        return None
    return hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


_SUITE = _library_suite()

KEM_ID, KDF_ID, AEAD_ID = 0x0020, 0x0001, 0x0003
MODE_BASE = 0x00
N_SECRET = N_ENC = N_SK = N_K = N_H = 32
N_N = 12
N_T = 16

_KEM_SUITE = b"KEM" + KEM_ID.to_bytes(2, "big")
_HPKE_SUITE = (
    b"HPKE" + KEM_ID.to_bytes(2, "big") + KDF_ID.to_bytes(2, "big") + AEAD_ID.to_bytes(2, "big")
)


def _extract(salt: bytes, ikm: bytes) -> bytes:
    # HKDF-Extract (RFC 5869): HMAC keyed by the salt; an empty salt pads to zeros as HMAC does.
    mac = hmac.HMAC(salt, hashes.SHA256())
    mac.update(ikm)
    return mac.finalize()


def _labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite + label + ikm)


def _labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled = length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info
    return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=labeled).derive(prk)


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes_raw()


def derive_key_pair(ikm: bytes) -> X25519PrivateKey:
    """RFC 9180 7.1.3 DeriveKeyPair for X25519 (used by the test vectors)."""
    prk = _labeled_extract(_KEM_SUITE, b"", b"dkp_prk", ikm)
    return X25519PrivateKey.from_private_bytes(_labeled_expand(_KEM_SUITE, prk, b"sk", b"", N_SK))


def _shared_secret(dh: bytes, enc: bytes, pk_rm: bytes) -> bytes:
    prk = _labeled_extract(_KEM_SUITE, b"", b"eae_prk", dh)
    return _labeled_expand(_KEM_SUITE, prk, b"shared_secret", enc + pk_rm, N_SECRET)


def key_schedule(shared_secret: bytes, info: bytes) -> tuple[bytes, bytes]:
    """RFC 9180 5.1 in base mode (no PSK): the AEAD key and base nonce."""
    psk_id_hash = _labeled_extract(_HPKE_SUITE, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(_HPKE_SUITE, b"", b"info_hash", info)
    context = bytes([MODE_BASE]) + psk_id_hash + info_hash
    secret = _labeled_extract(_HPKE_SUITE, shared_secret, b"secret", b"")
    key = _labeled_expand(_HPKE_SUITE, secret, b"key", context, N_K)
    base_nonce = _labeled_expand(_HPKE_SUITE, secret, b"base_nonce", context, N_N)
    return key, base_nonce


def seal(recipient: X25519PublicKey, info: bytes, plaintext: bytes) -> bytes:
    """Single-shot SealBase: enc (32 bytes) || ciphertext (plaintext + 16-byte tag)."""
    if _SUITE is not None:
        return bytes(_SUITE.encrypt(plaintext, recipient, info))
    enc, ct = seal_base(recipient, info, b"", plaintext)
    return enc + ct


def open_sealed(private: X25519PrivateKey, info: bytes, sealed: bytes) -> bytes:
    """Single-shot OpenBase of enc || ciphertext; InvalidTag if the key, `info` or anything
    sealed differs, ValueError if it is too short to be a sealed message."""
    if len(sealed) < N_ENC + N_T:
        raise ValueError(f"an HPKE message is at least {N_ENC + N_T} bytes (got {len(sealed)})")
    if _SUITE is not None:
        return bytes(_SUITE.decrypt(sealed, private, info))
    return open_base(private, sealed[:N_ENC], info, b"", sealed[N_ENC:])


def seal_base(
    recipient: X25519PublicKey,
    info: bytes,
    aad: bytes,
    plaintext: bytes,
    *,
    ephemeral: X25519PrivateKey | None = None,
) -> tuple[bytes, bytes]:
    """RFC 9180 SealBase built from primitives: (enc, ciphertext). `ephemeral` is for the
    test vectors only: a fresh key is made for every message otherwise."""
    ephemeral = ephemeral or X25519PrivateKey.generate()
    enc = _raw(ephemeral.public_key())
    shared = _shared_secret(ephemeral.exchange(recipient), enc, _raw(recipient))
    key, nonce = key_schedule(shared, info)
    return enc, ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)


def open_base(private: X25519PrivateKey, enc: bytes, info: bytes, aad: bytes, ct: bytes) -> bytes:
    """RFC 9180 OpenBase built from primitives; InvalidTag if the key, `info`, `aad` or
    anything sealed differs, ValueError for an `enc` that is not an X25519 public key."""
    if len(enc) != N_ENC:
        raise ValueError(f"enc must be {N_ENC} bytes (got {len(enc)})")
    ephemeral = X25519PublicKey.from_public_bytes(enc)
    shared = _shared_secret(private.exchange(ephemeral), enc, _raw(private.public_key()))
    key, nonce = key_schedule(shared, info)
    return ChaCha20Poly1305(key).decrypt(nonce, ct, aad)
