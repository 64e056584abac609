"""The device's TLS key is made once (uplink/tls.py `device_request`): two `uplink csr` runs at
once (or a provisioning beside one) must not swap the key under a CSR already sent. The one that
finds the key made meanwhile uses it."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from linerec.atomic import create_atomic
from linerec.uplink.tls import device_request, load_key

DER = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo


def public(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        key = key.public_key()
    return key.public_bytes(*DER)


def csr_key(path: Path) -> bytes:
    request = x509.load_pem_x509_csr(path.read_bytes())
    key = request.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return public(key)


def test_a_key_made_meanwhile_by_another_run_is_used_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other run makes (and sends a CSR for) its key while this one makes its own."""
    key_path = tmp_path / "device.key"
    theirs = ec.generate_private_key(ec.SECP256R1())
    make = ec.generate_private_key

    def racing(curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
        pem = theirs.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        create_atomic(key_path, pem)  # the other run, in the instant after our check
        return make(curve)

    monkeypatch.setattr(ec, "generate_private_key", racing)
    key, csr = device_request("box1", tmp_path)
    assert public(load_key(key)) == public(theirs)  # not swapped under their CSR
    assert csr_key(csr) == public(theirs)
    assert key.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["box1.csr", "device.key"]


def test_an_existing_key_is_kept_and_each_csr_is_for_it(tmp_path: Path) -> None:
    key, _ = device_request("box1", tmp_path)
    made = key.read_bytes()
    key, second = device_request("box1", tmp_path)
    assert key.read_bytes() == made
    assert csr_key(second) == public(load_key(key))
