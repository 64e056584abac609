"""RFC 9180 HPKE base mode: the construction from primitives against the RFC's own test vector
(appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305, mode 0, sequence
number 0), and against cryptography's own `hpke` module both ways."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from linerec.store import hpke
from linerec.store.keys import raw_private, raw_public

# RFC 9180, A.2.1. Base Setup Information, and A.2.1.1 Encryptions, sequence number 0.
IKM_E = "909a9b35d3dc4713a5e72a4da274b55d3d3821a37e5d099e74a647db583a904b"
PK_EM = "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a"
SK_EM = "f4ec9b33b792c372c1d2c2063507b684ef925b8c75a42dbcbf57d63ccd381600"
IKM_R = "1ac01f181fdf9f352797655161c58b75c656a6cc2716dcb66372da835542e1df"
PK_RM = "4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a"
SK_RM = "8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb"
INFO = "4f6465206f6e2061204772656369616e2055726e"
SHARED_SECRET = "0bbe78490412b4bbea4812666f7916932b828bba79942424abb65244930d69a7"
KEY = "ad2744de8e17f4ebba575b3f5f5a8fa1f69c2a07f6e7500bc60ca6e3e3ec1c91"
BASE_NONCE = "5c4d98150661b848853b547f"
PT = "4265617574792069732074727574682c20747275746820626561757479"
AAD_0 = "436f756e742d30"
CT_0 = "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28"


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def test_derive_key_pair_matches_the_rfc() -> None:
    ephemeral, recipient = hpke.derive_key_pair(h(IKM_E)), hpke.derive_key_pair(h(IKM_R))
    assert raw_private(ephemeral).hex() == SK_EM
    assert raw_public(ephemeral.public_key()).hex() == PK_EM
    assert raw_private(recipient).hex() == SK_RM
    assert raw_public(recipient.public_key()).hex() == PK_RM


def test_key_schedule_matches_the_rfc() -> None:
    key, nonce = hpke.key_schedule(h(SHARED_SECRET), h(INFO))
    assert (key.hex(), nonce.hex()) == (KEY, BASE_NONCE)


def test_seal_matches_the_rfc_and_opens() -> None:
    recipient = X25519PrivateKey.from_private_bytes(h(SK_RM))
    ephemeral = X25519PrivateKey.from_private_bytes(h(SK_EM))
    enc, ct = hpke.seal_base(recipient.public_key(), h(INFO), h(AAD_0), h(PT), ephemeral=ephemeral)
    assert (enc.hex(), ct.hex()) == (PK_EM, CT_0)
    assert hpke.open_base(recipient, enc, h(INFO), h(AAD_0), ct) == h(PT)


def test_the_library_and_the_construction_open_each_others_messages() -> None:
    from cryptography.hazmat.primitives import hpke as library

    suite = library.Suite(
        library.KEM.X25519, library.KDF.HKDF_SHA256, library.AEAD.CHACHA20_POLY1305
    )
    recipient = X25519PrivateKey.generate()
    by_library = suite.encrypt(b"recording key", recipient.public_key(), b"info")
    assert hpke.open_base(recipient, by_library[:32], b"info", b"", by_library[32:]) == (
        b"recording key"
    )
    enc, ct = hpke.seal_base(recipient.public_key(), b"info", b"", b"recording key")
    assert suite.decrypt(enc + ct, recipient, b"info") == b"recording key"


def test_open_refuses_another_key_info_or_a_flipped_bit() -> None:
    recipient = X25519PrivateKey.generate()
    sealed = hpke.seal(recipient.public_key(), b"info", b"secret")
    assert len(sealed) == 32 + 6 + 16
    assert hpke.open_sealed(recipient, b"info", sealed) == b"secret"
    with pytest.raises(InvalidTag):
        hpke.open_sealed(X25519PrivateKey.generate(), b"info", sealed)
    with pytest.raises(InvalidTag):
        hpke.open_sealed(recipient, b"other", sealed)
    with pytest.raises(InvalidTag):
        hpke.open_sealed(recipient, b"info", sealed[:-1] + bytes([sealed[-1] ^ 1]))
    with pytest.raises(ValueError, match="at least 48 bytes"):
        hpke.open_sealed(recipient, b"info", sealed[:47])
    with pytest.raises(InvalidTag):
        hpke.open_base(recipient, sealed[:32], b"info", b"aad", sealed[32:])


def test_a_key_wrapped_without_the_library_opens_with_it_and_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What an appliance with an older cryptography (no `hpke` module) writes, a collector
    with a newer one reads, and the other way round."""
    recipient = X25519PrivateKey.generate()
    by_library = hpke.seal(recipient.public_key(), b"linerec-wrap-v2", b"k" * 32)
    monkeypatch.setattr(hpke, "_SUITE", None)
    by_construction = hpke.seal(recipient.public_key(), b"linerec-wrap-v2", b"k" * 32)
    assert hpke.open_sealed(recipient, b"linerec-wrap-v2", by_library) == b"k" * 32
    monkeypatch.undo()
    assert hpke.open_sealed(recipient, b"linerec-wrap-v2", by_construction) == b"k" * 32
