"""`linerec factory-reset --yes` (issue 17, item 6): nothing secret left, and the next boot is a
first boot waiting for a site file. Run with --root on a directory standing in for the card."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from calls import call_info
from linerec.collector.enroll import enroll
from linerec.provision.reset import configured_store
from linerec.store.keys import keygen, load_or_create_identity, load_public, raw_private
from linerec.store.ring import RingStore
from linerec.uplink.outbox import EventOutbox
from linerec.uplink.tls import device_request
from test_store import speech_like

EXAMPLE = Path(__file__).parents[1] / "image" / "linerec-site.example.toml"
LINEREC = [sys.executable, "-m", "linerec.cli"]
PASSPHRASE = "correct horse battery staple"


def linerec(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LINEREC, *arguments], capture_output=True, text=True, timeout=120)


def site_file(boot: Path, base: Path) -> None:
    text = EXAMPLE.read_text()
    for line in (
        "[network.wifi]",
        'ssid = "office"',
        'psk = "a long passphrase"',
        'country = "GB"',
    ):
        text = text.replace(f"# {line}", line)
    (boot / "linerec-site.toml").write_text(text.replace("a long passphrase", PASSPHRASE))
    shutil.copy(base / "keys" / "collector.pub", boot / "collector.pub")
    shutil.copy(base / "ca-site" / "ca.crt", boot / "ca.crt")


@pytest.fixture
def box(tmp_path: Path) -> dict[str, Path]:
    return make_box(tmp_path)


def make_box(tmp_path: Path) -> dict[str, Path]:
    """A box provisioned from a site file with Wi-Fi and SSH, that has recorded a call."""
    keygen(tmp_path / "keys")
    enroll(
        device_request("bench-box", tmp_path / "bench")[1],
        tmp_path / "ca-site",
        broker_names=["collector.example.net"],
    )
    boot, root = tmp_path / "boot", tmp_path / "root"
    boot.mkdir()
    site_file(boot, tmp_path)
    provisioned = linerec(
        "provision", "--site", str(boot / "linerec-site.toml"), "--root", str(root)
    )
    assert provisioned.returncode == 0, provisioned.stderr
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/ssh/ssh_host_ed25519_key").write_bytes(os.urandom(64))
    (root / "etc/ssh/ssh_config").write_text("# not the box's: stays\n")
    (root / "etc/machine-id").write_text(os.urandom(16).hex() + "\n")
    ring_dir = root / "var/lib/linerec/ring"
    public = load_public(root / "etc/linerec/site/collector.pub")
    ring = RingStore(
        ring_dir,
        recipients=[public],
        identity=load_or_create_identity(ring_dir / "identity.key"),
        device_id="shop-front-1",
    )
    started = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    writer = ring.begin(
        call_info("shop-front-1", consent="notice", label="reception", started_at=started)
    )
    writer.write(speech_like(1.0))
    writer.seal(ended_by="hang-up")
    outbox = EventOutbox(ring_dir / "outbox", recipients=[public])
    outbox.append({"device": "shop-front-1", "event": "ringing", "t": 0.0, "number": "5551234"})
    outbox.close()
    return {"boot": boot, "root": root, "base": tmp_path}


def secrets(box: dict[str, Path]) -> dict[str, bytes]:
    """The bytes no one who gets the box after the reset may find, each by name."""
    root = box["root"]
    ring = root / "var/lib/linerec/ring"
    identity = load_or_create_identity(ring / "identity.key")
    tls = serialization.load_pem_private_key(
        (root / "etc/linerec/tls/device.key").read_bytes(), password=None
    )
    assert isinstance(tls, ec.EllipticCurvePrivateKey)
    scalar = tls.private_numbers().private_value.to_bytes(32, "big")
    (recording,) = ring.glob("*.lrec")
    found = {
        "identity key": raw_private(identity),
        "identity key, base64": base64.b64encode(raw_private(identity)),
        "TLS key": scalar,
        "TLS key, PEM": (root / "etc/linerec/tls/device.key").read_bytes()[40:120],
        "Wi-Fi passphrase": PASSPHRASE.encode(),
        "SSH host key": (root / "etc/ssh/ssh_host_ed25519_key").read_bytes(),
        "machine id": (root / "etc/machine-id").read_bytes().strip(),
        "a recording": recording.read_bytes()[5000:5100],
        "the device id": b"shop-front-1",
    }
    (event,) = (ring / "outbox").glob("*.json")
    found["an event"] = event.read_bytes()[-60:]
    return found


def everything(*bases: Path) -> dict[Path, bytes]:
    """Each file's bytes, followed by whatever its base64 runs decode to (PEM lines joined),
    so a key is found raw, in base64 or inside a PEM block."""
    found = {}
    for base in bases:
        for path in base.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                decoded = []
                for run in re.findall(rb"[A-Za-z0-9+/=]{16,}", data.replace(b"\n", b"")):
                    with contextlib.suppress(ValueError):
                        decoded.append(base64.b64decode(run + b"=" * (-len(run) % 4)))
                found[path] = data + b"\0".join(decoded)
    return found


def test_without_yes_nothing_changes(box: dict[str, Path]) -> None:
    before = everything(box["root"], box["boot"])
    result = linerec("factory-reset", "--root", str(box["root"]), "--boot", str(box["boot"]))
    assert result.returncode == 2 and "give --yes" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert everything(box["root"], box["boot"]) == before


def test_nothing_secret_is_left_and_the_next_boot_is_a_first_boot(box: dict[str, Path]) -> None:
    root, boot, base = box["root"], box["boot"], box["base"]
    hidden = secrets(box)
    # Hard links outside the box's tree see the very blocks the files had: a wipe that only
    # unlinked would leave the bytes in them (and in the partition's free space).
    evidence = base / "evidence"
    evidence.mkdir()
    for name, path in (
        ("identity", root / "var/lib/linerec/ring/identity.key"),
        ("tls", root / "etc/linerec/tls/device.key"),
        ("wifi", root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf"),
    ):
        os.link(path, evidence / name)
    before = everything(root, boot)
    assert [
        n for n, secret in hidden.items() if not any(secret in d for d in before.values())
    ] == []

    result = linerec("factory-reset", "--yes", "--root", str(root), "--boot", str(boot))
    assert result.returncode == 0, result.stderr
    assert "the next boot is a first boot" in result.stdout

    left = everything(root, boot)
    for name, secret in hidden.items():
        holders = [str(path) for path, data in left.items() if secret in data]
        assert not holders, f"{name} is still in {holders}"
    for link in evidence.iterdir():
        data = link.read_bytes()
        assert data and data == bytes(len(data)), f"{link.name}: not overwritten"
    assert (root / "var/lib/linerec").is_dir() and not any((root / "var/lib/linerec").iterdir())
    assert (root / "etc/machine-id").read_bytes() == b""  # systemd: a first boot
    assert (root / "etc/hostname").read_text() == "linerec\n"
    assert (root / "etc/ssh/ssh_config").exists()  # not the box's own: untouched
    assert not (root / "etc/linerec/linerec.toml").exists()
    assert not list(boot.glob("*.csr")) and not (boot / "linerec-site-result.txt").exists()

    # a first boot: the next owner's site file sets the box up as new
    site_file(boot, base)
    again = linerec("provision", "--site", str(boot / "linerec-site.toml"), "--root", str(root))
    assert again.returncode == 0, again.stderr
    assert "provisioned from" in again.stdout and "completing" not in again.stdout


def test_a_store_the_configuration_put_elsewhere_goes_but_never_a_system_directory(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    ring = root / "srv/recordings"
    ring.mkdir(parents=True)
    (ring / "chain.json").write_text("{}")
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    identity = root / "srv/identity.key"
    identity.write_text("secret")
    found = configured_store(root, Path("/srv/recordings"), Path("/srv/identity.key"))
    assert found == (ring, identity)
    assert configured_store(root, Path("/etc"), Path("/etc/passwd")) == ()
    assert configured_store(root, Path("/"), Path("/etc/passwd")) == ()


def test_nothing_of_the_wiped_files_is_left_on_the_data_partition(tmp_path: Path) -> None:
    """The issue's check: the data partition is a real ext4 file system (loop-mounted where
    the box binds it, /var/lib/linerec), and after the reset its whole image, free blocks
    included, is searched for the identity key and for the bytes of every file that was in
    the ring. A reset that only unlinked would leave them all in the free blocks."""
    image = tmp_path / "data.img"
    with open(image, "wb") as f:
        f.truncate(32 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-L", "LINEREC_DATA", str(image)], check=True)
    data = tmp_path / "root/var/lib/linerec"
    data.mkdir(parents=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(data)], check=True)
    mounted = True
    try:
        box = make_box(tmp_path)
        ring = data / "ring"
        identity = raw_private(load_or_create_identity(ring / "identity.key"))
        hidden = {
            "identity key, base64 (as the file holds it)": base64.b64encode(identity),
            "the identity key file": (ring / "identity.key").read_bytes(),
        }
        for path in sorted(ring.rglob("*")):
            if path.is_file() and path.stat().st_size >= 64:
                content = path.read_bytes()
                # a run of the file from its middle: unique to it, not a format's constant
                hidden[str(path.relative_to(ring))] = content[len(content) // 2 :][:64]
        assert any(name.endswith(".lrec") for name in hidden)
        assert any(name.startswith("outbox/") for name in hidden)
        os.sync()
        before = image.read_bytes()
        assert [name for name, secret in hidden.items() if secret not in before] == []

        result = linerec(
            "factory-reset", "--yes", "--root", str(box["root"]), "--boot", str(box["boot"])
        )
        assert result.returncode == 0, result.stderr
        subprocess.run(["umount", str(data)], check=True)
        mounted = False
        after = image.read_bytes()
        left = {name: after.count(secret) for name, secret in hidden.items() if secret in after}
        assert left == {}, f"still on the data partition's image: {left}"
    finally:
        if mounted:
            subprocess.run(["umount", str(data)], check=False)
