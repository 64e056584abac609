"""Real RAUC for the update tests: a throwaway signing CA and certificate, bundles made with
`rauc bundle`, and a RAUC system whose two root slots are files in a temporary directory,
served by a real `rauc service` on a private D-Bus system bus (`dbus-daemon`), booted "from"
slot A (`--override-boot-slot`). Its bootloader is RAUC's `noop`: what U-Boot does with the
slot order is for image/test under QEMU; everything up to and including writing the other
slot is the real tool here.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

COMPATIBLE = "linerec-rpi-arm64"
SLOT_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Signer:
    ca: Path  # the keyring: the CA certificate only
    cert: Path
    key: Path


def make_signer(directory: Path, name: str = "update") -> Signer:
    """A CA and a signing certificate it issued, as a release key pair would be."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"linerec {name} CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"linerec {name}")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), True
        )
        .sign(ca_key, hashes.SHA256())
    )
    signer = Signer(
        directory / f"{name}-ca.pem", directory / f"{name}.pem", directory / f"{name}.key"
    )
    signer.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    signer.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    signer.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return signer


def make_bundle(
    directory: Path,
    signer: Signer,
    *,
    version: str,
    compatible: str = COMPATIBLE,
    payload: bytes | None = None,
    tree: Path | None = None,
    name: str | None = None,
) -> Path:
    """A plain-format bundle holding a `rootfs` image, signed with `signer`: `payload` (default:
    bytes naming the version), or with `tree` an ext4 file system of that tree."""
    content = directory / f"content-{version}-{os.urandom(4).hex()}"
    content.mkdir(parents=True)
    if tree is not None:
        filename = "rootfs.ext4"
        subprocess.run(
            ["mkfs.ext4", "-q", "-d", str(tree), str(content / filename), f"{SLOT_BYTES // 1024}k"],
            check=True,
            capture_output=True,
        )
    else:
        filename = "rootfs.img"
        image = payload if payload is not None else f"linerec root {version}\n".encode().ljust(4096)
        (content / filename).write_bytes(image)
    (content / "manifest.raucm").write_text(
        f"[update]\ncompatible={compatible}\nversion={version}\n\n"
        f"[bundle]\nformat=plain\n\n[image.rootfs]\nfilename={filename}\n"
    )
    out = directory / (name or f"linerec-{version}.raucb")
    subprocess.run(
        ["rauc", "bundle", f"--cert={signer.cert}", f"--key={signer.key}", str(content), str(out)],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(content)
    return out


def write_system_conf(
    directory: Path,
    keyring: Path,
    compatible: str = COMPATIBLE,
    *,
    kind: str = "raw",
    post_install: Path | None = None,
) -> Path:
    """Slots rootA.img and rootB.img of `kind` ("raw", or "ext4" for file systems RAUC's
    post-install handler can mount), zeroed."""
    directory.mkdir(parents=True, exist_ok=True)
    for slot in ("A", "B"):
        (directory / f"root{slot}.img").write_bytes(b"\0" * SLOT_BYTES)
    conf = directory / "system.conf"
    handlers = f"\n[handlers]\npost-install={post_install}\n" if post_install else ""
    conf.write_text(
        f"[system]\ncompatible={compatible}\nbootloader=noop\n"
        f"statusfile={directory / 'status.raucs'}\nbundle-formats=plain\n\n"
        f"[keyring]\npath={keyring}\n\n"
        f"[slot.rootfs.0]\ndevice={directory / 'rootA.img'}\ntype={kind}\nbootname=A\n\n"
        f"[slot.rootfs.1]\ndevice={directory / 'rootB.img'}\ntype={kind}\nbootname=B\n"
        f"{handlers}"
    )
    return conf


_BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>
"""


class RaucService:
    """dbus-daemon on a private socket and `rauc service` on it, booted from slot A.

    While started, DBUS_SYSTEM_BUS_ADDRESS in this process points at the private bus, so the
    `rauc` client (and linerec's calls of it) reach this service and no other."""

    def __init__(
        self, directory: Path, conf: Path, *, booted: str = "A", path: str | None = None
    ) -> None:
        self.directory = directory
        self.conf = conf
        self.booted = booted
        self.path = path  # the service's PATH (where it finds fw_setenv), default ours
        self.socket = directory / "bus.socket"
        self.processes: list[subprocess.Popen[bytes]] = []
        self._old_address: str | None = None

    def start(self) -> RaucService:
        bus_conf = self.directory / "bus.conf"
        bus_conf.write_text(_BUS_CONF.format(socket=self.socket))
        self.processes.append(
            subprocess.Popen(
                ["dbus-daemon", f"--config-file={bus_conf}", "--nofork"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        _wait_for(lambda: self.socket.exists(), "dbus-daemon's socket")
        self._old_address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = f"unix:path={self.socket}"
        self.log = (self.directory / "rauc-service.log").open("wb")
        self.processes.append(
            subprocess.Popen(
                ["rauc", "service", f"--conf={self.conf}", f"--override-boot-slot={self.booted}"],
                stdout=self.log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, PATH=self.path or os.environ["PATH"]),
            )
        )
        _wait_for(
            lambda: (
                subprocess.run(
                    ["rauc", "status", "--output-format=json"], capture_output=True, check=False
                ).returncode
                == 0
            ),
            "rauc service on the private bus",
        )
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            process.wait(10)
        self.log.close()
        if self._old_address is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = self._old_address


def _wait_for(ready: object, what: str, timeout: float = 20.0) -> None:
    assert callable(ready)
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout:g} s")
        time.sleep(0.05)
