"""Setting a site up: a device CA, device certificates, and the broker's TLS and ACL pieces.

* `linerec uplink csr --out DIR` (on the appliance, `linerec.uplink.tls`): the device's TLS
  key (mode 0600) and a certificate request whose common name is its device id.
* `linerec collector enroll CSR --site DIR`: signs it with the site's device CA (made on first
  use), and writes the broker-side pieces into DIR: the CA, a server certificate for the broker,
  a client certificate for the collector, `mosquitto.conf` (TLS with `require_certificate` and
  `use_identity_as_username`) and `acl` (each device writes only under its own id).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from linerec.config import DEVICE_ID
from linerec.errors import LinerecError
from linerec.uplink.tls import load_key, write_key, x509_name

VALID_DAYS = 3650
COLLECTOR_NAME = "linerec-collector"


class EnrollError(LinerecError, ValueError):
    pass


def _ca(site: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_path, cert_path = site / "ca.key", site / "ca.crt"
    if key_path.exists() and cert_path.exists():
        return load_key(key_path), x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509_name("linerec site device CA"))
        .issuer_name(x509_name("linerec site device CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _issue(
    site: Path,
    subject: str,
    public: ec.EllipticCurvePublicKey,
    *,
    server_names: list[str] | None = None,
) -> x509.Certificate:
    ca_key, ca_cert = _ca(site)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509_name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if server_names:
        import ipaddress

        alt: list[x509.GeneralName] = []
        for name in server_names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256())


def enroll(csr_path: Path, site: Path, *, broker_names: list[str], port: int = 8883) -> Path:
    """Sign a device's CSR; (re)write the broker's pieces. Returns the device certificate."""
    site.mkdir(parents=True, exist_ok=True)
    try:
        csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise EnrollError(f"{csr_path}: not a PEM certificate request: {exc}") from exc
    if not csr.is_signature_valid:
        raise EnrollError(f"{csr_path}: the request's signature does not hold")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    device = str(names[0].value) if names else ""
    if not DEVICE_ID.match(device):
        raise EnrollError(
            f"{csr_path}: common name {device!r} is not a device id "
            "(1-64 letters, digits, '.', '_' or '-')"
        )
    if device in ("broker", COLLECTOR_NAME):  # the ACL's own users: a device must not pose as one
        raise EnrollError(f"{csr_path}: common name {device!r} is reserved for the site itself")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise EnrollError(f"{csr_path}: expected an EC key")
    cert = _issue(site, device, public)
    cert_path = site / f"{device}.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _broker_pieces(site, broker_names, port)
    return cert_path


def _broker_pieces(site: Path, broker_names: list[str], port: int) -> None:
    for name, names in (("broker", broker_names), (COLLECTOR_NAME, None)):
        key_path = site / f"{name}.key"
        if not key_path.exists():
            write_key(key_path, ec.generate_private_key(ec.SECP256R1()))
        cert_path = site / f"{name}.crt"
        if not cert_path.exists():
            cert = _issue(site, name, load_key(key_path).public_key(), server_names=names)
            cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (site / "acl").write_text(
        "# linerec: each device writes only under its own id and reads only its own acks.\n"
        "# %u is the device id: the common name of its certificate (use_identity_as_username).\n"
        "pattern write linerec/v1/%u/status\n"
        "pattern write linerec/v1/%u/event\n"
        "pattern write linerec/v1/%u/upload/#\n"
        "pattern read linerec/v1/%u/ack\n"
        "pattern read linerec/v1/%u/command\n\n"
        f"user {COLLECTOR_NAME}\n"
        "topic read linerec/v1/+/event\n"
        "topic read linerec/v1/+/upload/#\n"
        "topic read linerec/v1/+/status\n"
        "topic write linerec/v1/+/ack\n"
        "topic write linerec/v1/+/command\n"
    )
    (site / "mosquitto.conf").write_text(
        "# linerec site broker: TLS with client certificates, one identity per device.\n"
        f"listener {port}\n"
        f"cafile {site / 'ca.crt'}\n"
        f"certfile {site / 'broker.crt'}\n"
        f"keyfile {site / 'broker.key'}\n"
        "require_certificate true\n"
        "use_identity_as_username true\n"
        f"acl_file {site / 'acl'}\n"
    )
