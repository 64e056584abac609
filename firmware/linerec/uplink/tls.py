"""The appliance's TLS identity: its private key and the certificate request for the site CA.

`linerec uplink csr` and `linerec provision` make them; `linerec collector enroll` signs the
request (collector/enroll.py, which shares the key helpers below).

A certificate renewed before it expires (`linerec collector enroll --renew`) arrives in a
signed `cert` command. The appliance keeps it in its store directory (`RENEWED_CERT`; /etc is
read-only on the image) once it is sure it is its own: issued by the site CA it trusts, to its
device id, for its key, and valid now. The uplink uses it from its next start, in place of the
configured `[uplink] cert`, for as long as it outlives that one (uplink/expiry.py, which the
daemon reads without this module's X.509).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from linerec.atomic import create_atomic, write_atomic
from linerec.errors import LinerecError


class KeyFileError(LinerecError, ValueError):
    pass


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """PEM, mode 0600 (never readable by others, not even for a moment), replaced whole and
    synced: a power cut or a full disk leaves no torn key behind (linerec.atomic)."""
    write_atomic(path, _pem(key), mode=0o600, sync_dir=True)


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:  # torn, encrypted, or not a key at all
        raise KeyFileError(f"{path}: not a PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFileError(f"{path}: not an EC private key")
    return key


def x509_name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def device_request(device_id: str, directory: Path) -> tuple[Path, Path]:
    """The device's TLS key (made once, kept) and a CSR for it (CN = device id), the CSR
    replaced whole (linerec.atomic): a cut leaves the request there before, never a torn one.

    A key already there is used, never replaced: a CSR sent for it stays good. A new key is
    created only where none is (`create_atomic`), so of two runs at once (two `uplink csr`, or
    one beside provisioning) one makes it and the other loads that one."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path, csr_path = directory / "device.key", directory / f"{device_id}.csr"
    if not key_path.exists():
        made = _pem(ec.generate_private_key(ec.SECP256R1()))
        # FileExistsError: another run made it meanwhile, and that one is the device's key
        with _naming(key_path), suppress(FileExistsError):
            create_atomic(key_path, made, sync_dir=True)
    key = load_key(key_path)
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509_name(device_id))
    signed = csr.sign(key, hashes.SHA256())
    with _naming(csr_path):  # not secret: whoever enrols the device reads it
        write_atomic(csr_path, signed.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return key_path, csr_path


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """A failed write (a full disk) said in one line naming the file; the old one is kept."""
    try:
        yield
    except OSError as exc:
        raise KeyFileError(
            f"{path}: not written ({exc.strerror or exc}); the one there before, if any, is kept"
        ) from exc


def check_renewed(
    pem: bytes, *, device_id: str, key: Path, ca: Path | None, now: dt.datetime | None = None
) -> x509.Certificate:
    """A renewed certificate, if it is this device's own; ValueError saying why not."""
    if ca is None:
        raise ValueError("no [uplink] ca to check a renewed certificate against")
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise ValueError(f"not a PEM certificate: {exc}") from exc
    authority = x509.load_pem_x509_certificate(ca.read_bytes())
    try:
        cert.verify_directly_issued_by(authority)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ValueError(f"not issued by the site CA ({ca})") from exc
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [str(n.value) for n in names] != [device_id]:
        raise ValueError(f"issued to {[str(n.value) for n in names]}, not to {device_id!r}")
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*der) != load_key(key).public_key().public_bytes(*der):
        raise ValueError(f"not for this device's key ({key})")
    now = now or dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ValueError(
            f"not valid now (from {cert.not_valid_before_utc:%Y-%m-%d} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d})"
        )
    return cert
