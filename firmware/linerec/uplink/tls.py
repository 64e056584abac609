"""The appliance's TLS identity: its private key and the certificate request for the site CA.

`linerec uplink csr` and `linerec provision` make them; `linerec collector enroll` signs the
request (collector/enroll.py, which shares the key helpers below).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from linerec.errors import LinerecError


class KeyFileError(LinerecError, ValueError):
    pass


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """PEM, created with mode 0600: never readable by others, not even for a moment."""
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFileError(f"{path}: not an EC private key")
    return key


def x509_name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def device_request(device_id: str, directory: Path) -> tuple[Path, Path]:
    """The device's TLS key (made once, kept) and a CSR for it (CN = device id)."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path, csr_path = directory / "device.key", directory / f"{device_id}.csr"
    if not key_path.exists():
        write_key(key_path, ec.generate_private_key(ec.SECP256R1()))
    key = load_key(key_path)
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509_name(device_id))
    signed = csr.sign(key, hashes.SHA256())
    csr_path.write_bytes(signed.public_bytes(serialization.Encoding.PEM))
    return key_path, csr_path
