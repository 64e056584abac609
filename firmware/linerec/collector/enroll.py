"""Setting a site up: a device CA, device certificates, revocation, and the broker's pieces.

* `linerec uplink csr --out DIR` (on the appliance, `linerec.uplink.tls`): the device's TLS
  key (mode 0600) and a certificate request whose common name is its device id.
* `linerec collector enroll CSR --site DIR`: signs it with the site's device CA (made on first
  use) and (re)writes everything the broker needs, in DIR:

      ca.key ca.crt                  the site's device CA (the key never leaves DIR, mode 0600)
      broker.key broker.crt          the broker's TLS identity (key 0640, group mosquitto)
      linerec-collector.key .crt     the collector's client identity
      devices/<device>.crt           each device's current certificate (a subdirectory, so no
                                     device id can name a site file: a device called `ca`)
      issued/<serial>.crt            every certificate ever issued, so revocation finds them all
      crl.pem                        the CA's revocation list (mosquitto's crlfile)
      access.json                    who may publish and subscribe to what (below); merged:
                                     the operator's own clients, roles and groups (added
                                     with mosquitto_ctrl) stay (collector/access.py)
      mosquitto.conf                 absolute paths; starts as it is under a packaged mosquitto;
                                     no packet over MAX_PACKET_BYTES (a device sending one is
                                     disconnected before the broker holds it); written again
                                     each time, keeping the listener's port and address (unless
                                     --port or --bind is given) and the operator's own lines
                                     (those above the listener still above it; their plugins
                                     with their options)

  Each file is replaced whole (linerec.atomic, synced): a failed write, a power cut or a kill
  leaves the old one, never a torn one the broker would refuse or read wrongly.

* `linerec collector enroll --revoke DEVICE --site DIR`: every certificate issued to DEVICE
  goes on the revocation list and DEVICE loses all access.
* `linerec collector enroll --bridge SITE --device ID... --site DIR`: a site broker that
  bridges its devices to this (central) broker: a client certificate for the bridge, issued by
  this CA (`site:<SITE>`), and its mosquitto bridge configuration in `DIR/bridges/<SITE>/`;
  the devices named are assigned to that site (`DIR/sites.json`, each device to one site) and
  the bridge's account may publish only for them (below).
* `linerec collector enroll --bridge SITE --remove-device ID... --site DIR`: the devices named
  leave that site: `sites.json`, the site's `bridge.conf` and this broker's access rules no
  longer have them (the site's bridge may not publish for them any more).
* `linerec collector enroll --revoke-bridge SITE --site DIR`: every certificate issued to the
  site's bridge goes on the revocation list, its account and its devices' assignment leave
  `access.json` and `sites.json`, and `DIR/bridges/<SITE>/` (its key) is removed; enrolling
  the site again makes a new key.
* `linerec collector enroll --renew DEVICE --site DIR`: a new certificate for the key of
  DEVICE's current one, before that expires; the collector sends it to the device in a signed
  `cert` command. The old one is not revoked: it stays good until it expires, so the device
  keeps its connection until it has the new one.

Access rules. mosquitto 2.0's `acl_file` grants every SUBSCRIBE and checks only delivery, so a
device could join the collectors' shared subscription (`$share/linerec-collectors/...`): the
broker then hands it a share of every device's messages, drops them at the read check, and the
collector never sees them. mosquitto's dynamic security plugin checks the SUBSCRIBE itself
(with the whole `$share/group/filter` string), so the rules are written for it: a device may
subscribe only to its own `ack` and `command` topics (exact strings, no wildcards, no share)
and publish only its own `status`, `event`, `health`, `upload/+` and `stream/+`; anything
not allowed is denied. The plugin reads its file at start-up, so the broker is restarted
after an enrolment or a revocation (the CRL, too, is read at start-up).

A bridge's account has the rights of each of its site's devices together: publish their
`status`, `event`, `health`, `upload/+` and `stream/+`, subscribe to their `ack` and `command`
(exact strings), nothing else; so a site, whatever its own broker forwards, can publish only
for the devices assigned to it. The bridge speaks MQTT 5 (the upload pieces' user properties
must cross it) and forwards only those topics, each in the direction the API needs.

Re-enrolling a device with the same key gives back its current certificate. A request with a
new key for a device that still has a valid certificate is refused unless `replace` is given
(two boxes given the same id by mistake must not silently lock each other out); with it, the
new certificate is issued and every older one revoked. A key whose certificate was revoked is
never certified again.
"""

from __future__ import annotations

import datetime as dt
import grp
import ipaddress
import json
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from linerec.atomic import write_atomic
from linerec.collector.access import AccessFileError, Owned, merge_access, read_access
from linerec.errors import LinerecError
from linerec.ids import DEVICE_ID_RULE, RESERVED, is_device_id, shown
from linerec.mqttapi import SHARE
from linerec.uplink.tls import load_key, write_key, x509_name

VALID_DAYS = 3650
COLLECTOR_NAME = "linerec-collector"
# The broker's limit on one MQTT packet. mosquitto takes MQTT's 256 MiB by default and holds a
# message whole (so does the collector's client): one box sending one such message cost broker
# and collector over 600 MiB each. linerec's largest message is an event (the collector takes at
# most 64 KiB) or an upload piece (32 KiB); a device sending more is disconnected.
MAX_PACKET_BYTES = 128 * 1024
# What the broker holds for one client beyond what is in flight to it (the collectors' share
# above all): a burst of a few hundred lines' backlog, bounded in memory.
MAX_QUEUED_MESSAGES = 100_000
MAX_QUEUED_BYTES = 256 * 1024 * 1024
BROKER_USER = "mosquitto"  # the user a packaged mosquitto drops to when started as root
DYNSEC_PLUGINS = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/arm-linux-gnueabihf/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
)


class EnrollError(LinerecError, ValueError):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Enrolled:
    cert: Path  # the device's current certificate
    revoked: int  # older certificates of this device revoked now (with replace)


# -- the CA and the certificates it issues ----------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@contextmanager
def _replacing(path: Path) -> Iterator[None]:
    """A failed write (a full disk) is named; the file it would have replaced is kept whole
    (each is replaced through `atomic_file`: a power cut or a kill leaves the old or the new)."""
    try:
        yield
    except OSError as exc:
        raise EnrollError(
            f"{path}: not written ({exc.strerror or exc}); the one there before, if any, is kept"
        ) from exc


def _write_public(path: Path, data: bytes) -> None:
    with _replacing(path):
        write_atomic(path, data, mode=0o644, sync_dir=True)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    with _replacing(path):
        write_key(path, key)  # 0600, replaced whole, synced


def _ca(site: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_path, cert_path = site / "ca.key", site / "ca.crt"
    if key_path.exists() and cert_path.exists():
        return load_key(key_path), _load_cert(cert_path)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
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
    _write_key(key_path, key)
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _issue(
    site: Path,
    subject: str,
    public: ec.EllipticCurvePublicKey,
    *,
    server_names: list[str] | None = None,
) -> x509.Certificate:
    ca_key, ca_cert = _ca(site)
    now = _now()
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
    cert = builder.sign(ca_key, hashes.SHA256())
    issued = site / "issued"
    issued.mkdir(mode=0o755, exist_ok=True)
    _write_public(
        issued / f"{cert.serial_number:x}.crt", cert.public_bytes(serialization.Encoding.PEM)
    )
    return cert


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as exc:
        raise EnrollError(f"{path}: not a PEM certificate ({exc})") from exc


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _public_der(cert: x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _issued_to(site: Path, device: str) -> list[x509.Certificate]:
    found = []
    for path in sorted((site / "issued").glob("*.crt")):
        cert = _load_cert(path)
        if _common_name(cert) == device:
            found.append(cert)
    return found


# -- revocation ----------------------------------------------------------------------------


def _revoked_serials(site: Path) -> set[int]:
    path = site / "crl.pem"
    if not path.exists():
        return set()
    try:
        crl = x509.load_pem_x509_crl(path.read_bytes())
    except ValueError as exc:
        raise EnrollError(f"{path}: not a PEM revocation list ({exc})") from exc
    return {entry.serial_number for entry in crl}


def _write_crl(site: Path, serials: set[int]) -> None:
    """The CA's revocation list. Its next update is as far off as the certificates' own
    expiry: OpenSSL refuses every client once a CRL has passed its next update."""
    ca_key, ca_cert = _ca(site)
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=VALID_DAYS))
    )
    for serial in sorted(serials):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())
    _write_public(site / "crl.pem", crl.public_bytes(serialization.Encoding.PEM))


def revoke(site: Path, device: str, *, broker_names: list[str] | None = None) -> int:
    """Revoke every certificate issued to `device`; it loses all access. Returns how many
    were not revoked before."""
    issued = _issued_to(site, device) if (site / "ca.crt").exists() else []
    if not issued:
        raise EnrollError(f"{site}: no certificate was issued to {device!r} at this site")
    _checked_access(site)
    revoked = _revoked_serials(site)
    new = {cert.serial_number for cert in issued} - revoked
    _write_crl(site, revoked | new)
    (site / "devices" / f"{device}.crt").unlink(missing_ok=True)
    _rewrite_access(site)
    return len(new)


def renew(site: Path, device: str) -> Path:
    """A fresh certificate for the key of `device`'s current one (devices/<device>.crt)."""
    current = site / "devices" / f"{device}.crt"
    if not current.exists():
        raise EnrollError(f"{site}: {device!r} has no certificate here to renew (enrol it first)")
    old = _load_cert(current)
    if old.serial_number in _revoked_serials(site):
        raise EnrollError(f"{current}: revoked; a revoked device is enrolled anew, not renewed")
    public = old.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise EnrollError(f"{current}: expected an EC key")
    cert = _issue(site, device, public)
    _write_public(current, cert.public_bytes(serialization.Encoding.PEM))
    return current


# -- enrolment -----------------------------------------------------------------------------


def _device_of(csr: x509.CertificateSigningRequest, where: Path) -> str:
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise EnrollError(f"{where}: the request names {len(names)} common names, not one")
    device = str(names[0].value)
    # The one device id rule (linerec.ids), which also keeps the ACL's own users to the site.
    if device in RESERVED:
        raise EnrollError(f"{where}: common name {shown(device)} is reserved for the site itself")
    if not is_device_id(device):
        raise EnrollError(
            f"{where}: common name {shown(device)} is not a device id ({DEVICE_ID_RULE})"
        )
    return device


def enroll(
    csr_path: Path,
    site: Path,
    *,
    broker_names: list[str],
    port: int | None = None,
    bind: str | None = None,
    replace: bool = False,
) -> Path:
    """Sign a device's CSR; (re)write the broker's pieces. Returns the device certificate.
    `port` and `bind` not given, the broker's listener keeps the ones it has (or 8883 on every
    address, for a new site)."""
    return enroll_device(
        csr_path, site, broker_names=broker_names, port=port, bind=bind, replace=replace
    ).cert


def enroll_device(
    csr_path: Path,
    site: Path,
    *,
    broker_names: list[str],
    port: int | None = None,
    bind: str | None = None,
    replace: bool = False,
) -> Enrolled:
    try:
        csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise EnrollError(f"{csr_path}: not a PEM certificate request: {exc}") from exc
    if not csr.is_signature_valid:
        raise EnrollError(f"{csr_path}: the request's signature does not hold")
    device = _device_of(csr, csr_path)
    site_of = next((n for n, ids in _sites(site.absolute()).items() if device in ids), None)
    if site_of is not None:
        raise EnrollError(
            f"{csr_path}: {device} is assigned to site {site_of}, whose broker it connects to "
            "(enrol it there); a device id belongs to one site"
        )
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise EnrollError(f"{csr_path}: expected an EC key")
    plugin = _dynsec_plugin()
    site = site.absolute()
    listener = _listener(site, port, bind)  # checked before anything is written
    _checked_access(site)
    site.mkdir(mode=0o755, parents=True, exist_ok=True)
    devices = site / "devices"
    devices.mkdir(mode=0o755, exist_ok=True)
    revoked = _revoked_serials(site)
    issued = _issued_to(site, device) if (site / "ca.crt").exists() else []
    key = _public_der(csr)
    if any(_public_der(c) == key and c.serial_number in revoked for c in issued):
        raise EnrollError(
            f"{csr_path}: {device}: its key belongs to a revoked certificate; "
            "make a new key on the device (linerec uplink csr) and enrol that"
        )
    valid = [c for c in issued if c.serial_number not in revoked]
    cert_path = devices / f"{device}.crt"
    same = next((c for c in valid if _public_der(c) == key), None)
    newly_revoked = 0
    if same is not None and cert_path.exists():
        cert = same  # enrolled again with the same key: the same certificate
    else:
        others = [c for c in valid if _public_der(c) != key]
        if others and not replace:
            raise EnrollError(
                f"{csr_path}: {device} already has a valid certificate for another key; "
                "if this box replaces it, enrol again with --replace (the old certificate is "
                "then revoked), otherwise give this box another device id"
            )
        cert = _issue(site, device, public)
        if others:
            newly_revoked = len(others)
            _write_crl(site, revoked | {c.serial_number for c in others})
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    if not (site / "crl.pem").exists():
        _write_crl(site, revoked)
    _broker_pieces(site, broker_names, listener, plugin)
    return Enrolled(cert=cert_path, revoked=newly_revoked)


# -- site brokers bridged to this one --------------------------------------------------------

BRIDGE_PREFIX = "site:"  # the bridge's certificate name: never a device id (no ':' in one)
OUT_TOPICS = (("event", 1), ("upload/+", 1), ("stream/+", 1), ("status", 1), ("health", 0))
IN_TOPICS = (("ack", 1), ("command", 1))


@dataclass(frozen=True, slots=True, kw_only=True)
class Bridge:
    directory: Path  # DIR/bridges/<site>: what the site broker needs
    config: Path  # the bridge section for the site broker's mosquitto.conf
    devices: list[str]  # every device assigned to the site now


def _sites(site: Path) -> dict[str, list[str]]:
    path = site / "sites.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise EnrollError(f"{path}: not JSON: {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and all(isinstance(d, str) for d in v) for v in data.values()
    ):
        raise EnrollError(f"{path}: not an object of site -> list of device ids")
    return {str(k): list(v) for k, v in data.items()}


def enroll_bridge(
    site_name: str,
    devices: list[str],
    site: Path,
    *,
    remove: list[str] | None = None,
    broker_names: list[str] | None = None,
    port: int | None = None,
    bind: str | None = None,
) -> Bridge:
    """Assign `devices` to the site broker `site_name` (and take `remove` off it) and write
    its bridge to this broker: a key and certificate for it (made once), the CA, and the
    bridge section of its mosquitto.conf; this broker's access rules let it publish only for
    its devices. Everything is checked before anything is written. The bridge's address is
    the first of `broker_names` and `port`; either not given, the one it has, else this
    broker's own (the first name on its certificate, the port of its listener; for a new
    site, localhost and 8883). This broker's listener changes only with `port` or `bind`."""
    if not is_device_id(site_name) or site_name in RESERVED:
        raise EnrollError(f"site name {shown(site_name)} is not a name ({DEVICE_ID_RULE})")
    for device in devices:
        if not is_device_id(device) or device in RESERVED:
            raise EnrollError(f"{shown(device)} is not a device id ({DEVICE_ID_RULE})")
    plugin = _dynsec_plugin()
    site = site.absolute()
    sites = _sites(site)
    if remove:
        _check_assigned(site, sites, site_name, remove)
    for device in devices:
        other = next((name for name, ids in sites.items() if device in ids), None)
        if other is not None and other != site_name:
            raise EnrollError(
                f"{device} is assigned to site {other}; a device id belongs to one site "
                f"(take it off that site first: `linerec collector enroll --bridge {other} "
                f"--remove-device {device}`)"
            )
        if (site / "devices" / f"{device}.crt").exists():
            raise EnrollError(
                f"{device} is enrolled at this broker directly ({site / 'devices'}): it "
                "connects here itself, not through a site"
            )
    out = site / "bridges" / site_name
    config = out / "bridge.conf"
    listener = _listener(site, port, bind)
    _checked_access(site)
    own_names = _broker_names(site) or ["localhost"]
    if config.exists():
        host, bridge_port = _bridge_address(config)
    else:
        host, bridge_port = own_names[0], listener.port
    host = broker_names[0] if broker_names else host
    bridge_port = port if port is not None else bridge_port
    # Checked: from here on, only writing.
    site.mkdir(mode=0o755, parents=True, exist_ok=True)
    (site / "devices").mkdir(mode=0o755, exist_ok=True)
    assigned = sorted({*sites.get(site_name, []), *devices} - set(remove or []))
    sites[site_name] = assigned
    _write_public(site / "sites.json", json.dumps(sites, indent=1, sort_keys=True).encode())
    _ca(site)
    if not (site / "crl.pem").exists():
        _write_crl(site, set())
    _broker_pieces(site, broker_names or own_names, listener, plugin)
    out.mkdir(mode=0o755, parents=True, exist_ok=True)
    key_path, cert_path = out / "bridge.key", out / "bridge.crt"
    if not key_path.exists():
        _write_key(key_path, ec.generate_private_key(ec.SECP256R1()))
    if not cert_path.exists():
        cert = _issue(site, BRIDGE_PREFIX + site_name, load_key(key_path).public_key())
        _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    _write_public(out / "ca.crt", (site / "ca.crt").read_bytes())
    _write_public(config, bridge_config(site_name, assigned, out, host, bridge_port).encode())
    return Bridge(directory=out, config=config, devices=assigned)


def _check_assigned(
    site: Path, sites: dict[str, list[str]], site_name: str, devices: list[str]
) -> None:
    """Refuse to take off `site_name` a device that is not on it."""
    if site_name not in sites:
        known = ", ".join(sorted(sites)) or "none"
        raise EnrollError(f"{site / 'sites.json'}: no site {shown(site_name)} (sites: {known})")
    for device in devices:
        if device not in sites[site_name]:
            raise EnrollError(
                f"{device} is not assigned to site {site_name} (its devices: "
                f"{', '.join(sites[site_name]) or 'none'})"
            )


def remove_from_bridge(site_name: str, devices: list[str], site: Path) -> Bridge:
    """Take `devices` off the site broker `site_name`: this broker's access rules no longer
    let its bridge publish for them, and its bridge section no longer forwards them (the
    address in it is kept). The devices may then be enrolled elsewhere."""
    site = site.absolute()
    sites = _sites(site)
    _check_assigned(site, sites, site_name, devices)
    out = site / "bridges" / site_name
    config = out / "bridge.conf"
    address = _bridge_address(config) if config.exists() else None  # checked before writing
    _checked_access(site)
    remaining = [device for device in sites[site_name] if device not in devices]
    sites[site_name] = remaining
    _write_public(site / "sites.json", json.dumps(sites, indent=1, sort_keys=True).encode())
    _rewrite_access(site)
    if address is not None:
        _write_public(config, bridge_config(site_name, remaining, out, *address).encode())
    return Bridge(directory=out, config=config, devices=remaining)


def _bridge_address(config: Path) -> tuple[str, int]:
    """The host and port a bridge section connects to."""
    for line in config.read_text().splitlines():
        if line.startswith("address "):
            address = line.split(None, 1)[1].strip()
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise EnrollError(f"{config}: address {shown(address)} is not HOST:PORT")
            return host, int(port)
    raise EnrollError(f"{config}: no `address HOST:PORT` line (not written by linerec?)")


def revoke_bridge(site_name: str, site: Path) -> tuple[int, list[str]]:
    """Revoke the site broker `site_name`'s bridge: every certificate issued to it goes on
    the revocation list, its account (and so its devices' rights) leaves this broker's access
    rules, its devices are no longer assigned to it, and its directory (key, certificate,
    bridge section) is removed. Returns (certificates newly revoked, its devices)."""
    site = site.absolute()
    sites = _sites(site)
    issued = _issued_to(site, BRIDGE_PREFIX + site_name) if (site / "ca.crt").exists() else []
    if site_name not in sites and not issued:
        raise EnrollError(f"{site}: no bridge was enrolled for site {shown(site_name)}")
    _checked_access(site)
    revoked = _revoked_serials(site)
    new = {cert.serial_number for cert in issued} - revoked
    if new or not (site / "crl.pem").exists():
        _write_crl(site, revoked | new)
    devices = sites.pop(site_name, [])
    _write_public(site / "sites.json", json.dumps(sites, indent=1, sort_keys=True).encode())
    _rewrite_access(site, gone=(BRIDGE_PREFIX + site_name,))
    # The key goes with the certificate: a revoked key is never certified again.
    shutil.rmtree(site / "bridges" / site_name, ignore_errors=True)
    return len(new), devices


def bridge_config(site_name: str, devices: list[str], files: Path, host: str, port: int) -> str:
    """The bridge section of a site broker's mosquitto.conf (it goes after the listeners)."""
    lines = [
        f"# linerec: site {site_name} bridged to the central broker, written by",
        f"# `linerec collector enroll --bridge {site_name}`. Append to the site broker's",
        "# mosquitto.conf, after its listeners; the files named are in this directory.",
        f"connection linerec-{site_name}",
        f"address {host}:{port}",
        f"remote_clientid linerec-bridge-{site_name}",
        # MQTT 5: an upload piece's offset, size and sha256 are user properties
        "bridge_protocol_version mqttv50",
        "try_private false",  # standard MQTT only, so any MQTT 5 broker can be the centre
        "notifications false",  # no $SYS status topics: the centre's rules would refuse them
        "cleansession false",
        "restart_timeout 1 30",
        f"bridge_cafile {files / 'ca.crt'}",
        f"bridge_certfile {files / 'bridge.crt'}",
        f"bridge_keyfile {files / 'bridge.key'}",
    ]
    for device in devices:
        base = f"linerec/v1/{device}"
        lines += [f"topic {base}/{name} out {qos}" for name, qos in OUT_TOPICS]
        lines += [f"topic {base}/{name} in {qos}" for name, qos in IN_TOPICS]
    return "\n".join(lines) + "\n"


# -- the broker's pieces -------------------------------------------------------------------


def _dynsec_plugin() -> str:
    for candidate in DYNSEC_PLUGINS:
        if Path(candidate).exists():
            return candidate
    raise EnrollError(
        "mosquitto's dynamic security plugin (mosquitto_dynamic_security.so, in Debian's "
        "mosquitto package) is not installed here: it is what confines each device's "
        f"subscriptions (looked in {', '.join(DYNSEC_PLUGINS)})"
    )


def _broker_group() -> int | None:
    try:
        return grp.getgrnam(BROKER_USER).gr_gid
    except KeyError:
        return None


def _broker_key(path: Path) -> None:
    """The broker's key: 0640 with group mosquitto, so a packaged mosquitto started as root
    reads it after dropping to its own user (and nobody else does). Without that group the
    key stays 0600: the broker must then run as the key's owner (documented)."""
    if not path.exists():
        _write_key(path, ec.generate_private_key(ec.SECP256R1()))
    gid = _broker_group()
    if gid is not None and os.geteuid() == 0:
        os.chown(path, -1, gid)
        path.chmod(0o640)


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    """The broker's TLS listener, and the lines of its mosquitto.conf that linerec did not
    write (the operator's own), kept when the file is written again: `before` stood above the
    first `listener` line (global options) and goes back there, with `per_listener_settings`
    from anywhere first (mosquitto exits on one after a security setting); `after` goes after
    linerec's lines."""

    port: int
    bind: str | None
    before: tuple[str, ...]
    after: tuple[str, ...]


# What `_broker_pieces` writes: each of these options is linerec's, in mosquitto.conf's first
# listener section or above it (options after a second `listener` line are that listener's:
# kept whole). `acl_file` and the first comment line are an earlier linerec's (its access
# rules' file is removed now: kept, the line would stop the broker from starting). A `plugin`
# line is linerec's only if it names the dynamic security plugin (PLUGIN_LINES).
WRITTEN_OPTIONS = frozenset({
    "cafile", "certfile", "keyfile", "crlfile", "require_certificate",
    "use_identity_as_username", "max_packet_size", "max_queued_messages", "max_queued_bytes",
    "acl_file",
})  # fmt: skip
EARLIER_LINES = frozenset(
    {
        "# linerec site broker: TLS with client certificates, one identity per device.",
    }
)
# A plugin line and the options that belong to it, up to the next plugin line; the older
# spellings too. linerec's is the dynamic security plugin with its `config_file`.
PLUGIN_LINES = frozenset({"plugin", "auth_plugin"})
PLUGIN_OPTIONS = ("plugin_opt_", "auth_opt_")
DYNSEC_NAME = "mosquitto_dynamic_security.so"


def _linerecs(words: list[str], plugin: str | None) -> bool:
    """Whether a line of the first listener section (or above it) is one linerec writes:
    `plugin` is the plugin the options seen now belong to (None: none yet)."""
    if not words:
        return False
    if words[0] in PLUGIN_LINES:
        return Path(" ".join(words[1:])).name == DYNSEC_NAME
    if words[0].startswith(PLUGIN_OPTIONS):
        # the dynamic security plugin's file is linerec's (one with no plugin: an earlier one)
        option = words[0].split("_opt_", 1)[1]
        return option == "config_file" and (plugin is None or Path(plugin).name == DYNSEC_NAME)
    return words[0] in WRITTEN_OPTIONS


def _listener(site: Path, port: int | None, bind: str | None) -> Listener:
    """The listener to write: `port` and `bind` where given, else those of the broker's
    mosquitto.conf (8883 on every address for a new one), with the operator's own lines."""
    conf = site / "mosquitto.conf"
    lines = conf.read_text().splitlines() if conf.exists() else []
    written = {*_broker_conf(Path("/"), 8883, None, "").splitlines(), *EARLIER_LINES}
    old_port, old_bind, listeners = 8883, None, 0
    before: list[str] = []
    after: list[str] = []
    plugin: str | None = None
    hoisted = 0
    for number, line in enumerate(lines, 1):
        words = line.split()
        if words[:1] == ["listener"]:
            listeners += 1
        kept = before if listeners == 0 else after
        if words[:1] == ["per_listener_settings"] and listeners:
            # mosquitto takes it only before every security setting (linerec's plugin is one)
            before.insert(hoisted, line)
            hoisted += 1
        elif listeners > 1:
            after.append(line)  # another listener and its options: the operator's
        elif words[:1] == ["listener"]:
            if len(words) not in (2, 3) or not words[1].isdigit() or not 0 < int(words[1]) < 2**16:
                raise EnrollError(
                    f"{conf}: line {number}: listener {shown(' '.join(words[1:]))} is not "
                    "`listener PORT [ADDRESS]`"
                )
            old_port, old_bind = int(words[1]), (words[2] if len(words) == 3 else None)
        elif line not in written and not _linerecs(words, plugin):
            kept.append(line)
        if words[:1] and words[0] in PLUGIN_LINES:
            plugin = " ".join(words[1:])
    return Listener(
        port=old_port if port is None else port,
        bind=old_bind if bind is None else bind,
        before=tuple(before),
        after=tuple(after),
    )


def _broker_names(site: Path) -> list[str]:
    """The names on the broker's certificate ([] before it has one)."""
    path = site / "broker.crt"
    if not path.exists():
        return []
    cert = _load_cert(path)
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(name.value) for name in alt]


def _broker_pieces(site: Path, broker_names: list[str], listener: Listener, plugin: str) -> None:
    """The broker's and the collector's identities (the broker's certificate names
    `broker_names`: a name it lacks is added, none is taken off), the access rules, and
    mosquitto.conf with `listener` and the operator's own lines."""
    had = _broker_names(site)
    added = [name for name in broker_names if name not in had]
    for name, names in (("broker", [*had, *added] or ["localhost"]), (COLLECTOR_NAME, None)):
        key_path = site / f"{name}.key"
        if name == "broker":
            _broker_key(key_path)
        elif not key_path.exists():
            _write_key(key_path, ec.generate_private_key(ec.SECP256R1()))
        cert_path = site / f"{name}.crt"
        if not cert_path.exists() or (name == "broker" and added):
            cert = _issue(site, name, load_key(key_path).public_key(), server_names=names)
            _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    _rewrite_access(site)
    (site / "acl").unlink(missing_ok=True)  # the acl_file of earlier versions: superseded
    before = "".join(f"{line}\n" for line in listener.before)
    conf = _broker_conf(site, listener.port, listener.bind, plugin)
    after = "".join(f"{line}\n" for line in listener.after)
    _write_public(site / "mosquitto.conf", (before + conf + after).encode())


def _broker_conf(site: Path, port: int, bind: str | None, plugin: str) -> str:
    """linerec's part of the broker's mosquitto.conf."""
    listener = f"listener {port}" + (f" {bind}" if bind else "")
    return (
        "# linerec site broker, written by `linerec collector enroll`: TLS with client\n"
        "# certificates (one identity per device), a revocation list, and per-device access\n"
        "# rules in access.json (the dynamic security plugin: it checks subscriptions too).\n"
        "# Restart the broker after each enrolment or revocation.\n"
        f"{listener}\n"
        f"cafile {site / 'ca.crt'}\n"
        f"certfile {site / 'broker.crt'}\n"
        f"keyfile {site / 'broker.key'}\n"
        f"crlfile {site / 'crl.pem'}\n"
        "require_certificate true\n"
        "use_identity_as_username true\n"
        f"max_packet_size {MAX_PACKET_BYTES}\n"
        "# A burst beyond what the collectors take at once waits here, not dropped (mosquitto\n"
        "# keeps 1000 a client by default and drops the rest silently: every appliance would\n"
        "# send them again 10 s later, on top of the burst).\n"
        f"max_queued_messages {MAX_QUEUED_MESSAGES}\n"
        f"max_queued_bytes {MAX_QUEUED_BYTES}\n"
        f"plugin {plugin}\n"
        f"plugin_opt_config_file {site / 'access.json'}\n"
    )


def _rewrite_access(site: Path, *, gone: tuple[str, ...] = ()) -> None:
    """linerec's rules merged into access.json, the operator's own kept (collector/access.py);
    `gone`: clients of linerec's taken away now that no certificate may name."""
    path = site / "access.json"
    current = _checked_access(site)
    devices = sorted(path.stem for path in (site / "devices").glob("*.crt"))
    sites = _sites(site)
    rules = merge_access(current, access_rules(devices, sites), _owned(site, sites, gone))
    _write_public(path, json.dumps(rules, indent=1).encode())


def _checked_access(site: Path) -> dict[str, Any] | None:
    """The access rules there now; refused, naming the file, if the plugin could not read them
    (called before anything is written: an enrolment stops there, not half-way)."""
    try:
        return read_access(site / "access.json")
    except AccessFileError as exc:
        raise EnrollError(f"{exc}; fix it (or remove it to start afresh)") from exc


def _owned(site: Path, sites: dict[str, list[str]], gone: tuple[str, ...] = ()) -> Owned:
    """The clients and roles linerec names at `site`: those of every certificate it ever
    issued there (a revoked device's or bridge's too, so they are taken away), its bridged
    sites' and its collector's; any other entry in access.json is the operator's."""
    names = {COLLECTOR_NAME, *gone, *(BRIDGE_PREFIX + name for name in sites)}
    for path in (site / "issued").glob("*.crt"):
        name = _common_name(_load_cert(path))
        if is_device_id(name) or name.startswith(BRIDGE_PREFIX):
            names.add(name)
    roles = {COLLECTOR_NAME}
    for name in names - {COLLECTOR_NAME}:
        bridged = name.removeprefix(BRIDGE_PREFIX)
        roles.add(f"site-{bridged}" if bridged != name else f"device-{name}")
    return Owned(clients=frozenset(names), roles=frozenset(roles))


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "allow": True, "priority": 0}


def _device_acls(device: str) -> list[dict[str, Any]]:
    """What one device may do: publish its own topics, hear its own acks and commands."""
    base = f"linerec/v1/{device}"
    return [
        *(
            _acl("publishClientSend", f"{base}/{t}")
            for t in ("status", "event", "health", "upload/+", "stream/+")
        ),
        *(_acl("subscribeLiteral", f"{base}/{t}") for t in ("ack", "command")),
        *(_acl("publishClientReceive", f"{base}/{t}") for t in ("ack", "command")),
    ]


def access_rules(devices: list[str], sites: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The dynamic security plugin's configuration: one role per device, one per bridged
    site (its devices' rights together), one for the collector; whatever no rule allows is
    denied (unsubscribing is harmless, so allowed)."""
    roles = [
        {
            "rolename": COLLECTOR_NAME,
            "acls": [
                # the collectors' shared subscriptions: the whole string, as the broker sees it
                _acl("subscribeLiteral", f"{SHARE}/linerec/v1/+/event"),
                _acl("subscribeLiteral", f"{SHARE}/linerec/v1/+/upload/+"),
                _acl("subscribeLiteral", f"{SHARE}/linerec/v1/+/stream/+"),
                # `collector command` waits for a device's answer on its event topic
                *(
                    _acl("subscribePattern", f"linerec/v1/+/{t}")
                    for t in ("event", "status", "health")
                ),
                *(
                    _acl("publishClientReceive", f"linerec/v1/+/{t}")
                    for t in ("event", "upload/+", "stream/+", "status", "health")
                ),
                *(_acl("publishClientSend", f"linerec/v1/+/{t}") for t in ("ack", "command")),
            ],
        }
    ]
    clients = [{"username": COLLECTOR_NAME, "roles": [{"rolename": COLLECTOR_NAME}]}]
    for device in devices:
        roles.append({"rolename": f"device-{device}", "acls": _device_acls(device)})
        clients.append({"username": device, "roles": [{"rolename": f"device-{device}"}]})
    for name, assigned in sorted((sites or {}).items()):
        acls = [acl for device in assigned for acl in _device_acls(device)]
        roles.append({"rolename": f"site-{name}", "acls": acls})
        clients.append({"username": BRIDGE_PREFIX + name, "roles": [{"rolename": f"site-{name}"}]})
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


def unreachable_by_broker(site: Path) -> str:
    """Why the broker's own user could not read the site's files from where they are ('' if
    it can, or if there is no such user): a directory on the way it may not enter."""
    gid = _broker_group()
    if gid is None:
        return ""
    for directory in [*reversed(site.absolute().parents), site.absolute()]:
        mode = directory.stat()
        may_enter = mode.st_mode & stat.S_IXOTH or (
            mode.st_gid == gid and mode.st_mode & stat.S_IXGRP
        )
        if not may_enter:
            return (
                f"the {BROKER_USER} user cannot enter {directory} "
                f"(mode {stat.S_IMODE(mode.st_mode):04o}): mosquitto started as root drops to "
                "that user and will not read its files; keep the site directory where it can"
            )
    return ""
