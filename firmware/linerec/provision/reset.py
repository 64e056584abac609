"""Factory reset: wipe what makes a box this site's, so it can be passed on (issue 17, item 6).

Everything provisioning installed (`apply.py`) and everything the recorder made goes: the
device's identity key, its TLS key, certificate and request, the site's files and secrets
(its copy of the site file, collector keys, CA), the Wi-Fi passphrase and network files,
root's SSH authorized keys, the box's SSH host keys and machine id, and the whole data
directory (the recordings ring, its outbox and counters, a key epoch). The host name goes back
to the image's. The next boot is a first boot: no configuration, waiting for a site file.

A file is overwritten with zeros and synced before it is unlinked, so its bytes are not left
in the filesystem's free blocks. That is what a filesystem can promise; an SD card's flash
translation layer may keep old copies of a block out of reach of any write, which is why the
recordings are encrypted to keys the box never holds (docs/security.md).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from linerec.config import DEFAULT_STORE

IMAGE_HOSTNAME = "linerec"  # what image/rootfs-setup.sh writes

# Under the root filesystem: files and whole directories that provisioning or the recorder make.
WIPED = (
    "etc/linerec/site",
    "etc/linerec/tls",
    "etc/linerec/linerec.toml",
    "etc/linerec/linerec.toml.new",
    "etc/linerec/provisioned.json",
    "etc/linerec/provision-journal.json",
    "etc/linerec/ssh-enabled",
    "etc/wpa_supplicant/wpa_supplicant-wlan0.conf",
    "etc/systemd/network/20-linerec-ethernet.network",
    "etc/systemd/network/25-linerec-wifi.network",
    "etc/systemd/system/multi-user.target.wants/wpa_supplicant@wlan0.service",
    "root/.ssh/authorized_keys",
)
SSH_HOST_KEYS = "etc/ssh"  # ssh_host_*: made per box; the next SSH start makes new ones
DATA = DEFAULT_STORE.parent.relative_to("/")  # var/lib/linerec: emptied, kept (a mount point)
# Left on the boot partition by provisioning: they name the box, its SSID, its request.
BOOT_FILES = ("linerec-site-result.txt", "linerec-site-error.txt", "*.csr")


def factory_reset(root: Path, boot: Path, extra: tuple[Path, ...] = ()) -> list[str]:
    """Wipe the box under `root` (and its boot partition `boot`); returns what went, one line
    each. `extra` are further files or directories under `root` (a store directory the
    configuration put elsewhere)."""
    done: list[str] = []
    for relative in WIPED:
        done += _wipe(root / relative)
    ssh = root / SSH_HOST_KEYS
    if ssh.is_dir():
        for key in sorted(ssh.glob("ssh_host_*")):
            done += _wipe(key)
    data = root / DATA
    if data.is_dir():
        for child in sorted(data.iterdir()):
            done += _wipe(child)
        _sync_dir(data)
    for path in extra:
        done += _wipe(path)
    machine_id = root / "etc/machine-id"
    if machine_id.is_file() and machine_id.stat().st_size:
        _overwrite(machine_id)
        os.truncate(machine_id, 0)  # empty: systemd makes a new one, and it is a first boot
        done.append(f"emptied {machine_id}")
    hostname = root / "etc/hostname"
    if hostname.is_file():
        hostname.write_text(IMAGE_HOSTNAME + "\n")
        _sync_file(hostname)
        done.append(f"host name back to {IMAGE_HOSTNAME}")
    if boot.is_dir():
        for pattern in BOOT_FILES:
            for path in sorted(boot.glob(pattern)):
                done += _wipe(path)
        _sync_dir(boot)
    return done


def configured_store(root: Path, store_dir: Path, identity: Path) -> tuple[Path, ...]:
    """The configuration's store directory and identity key under `root`, if they are where
    a configuration put them rather than the default, and only if they look like a ring's
    (a hostile or mistaken `dir = "/etc"` must not make a reset wipe the system)."""
    found: list[Path] = []
    directory = _under(root, store_dir)
    ring_files = ("chain.json", "identity.key", "ring.log", "outbox")
    real = directory != root and directory.is_dir() and not directory.is_symlink()
    if real and any((directory / name).exists() for name in ring_files):
        found.append(directory)
    key = _under(root, identity)
    if key.is_file() and not key.is_symlink() and key.suffix == ".key":
        found.append(key)
    return tuple(found)


def _under(root: Path, path: Path) -> Path:
    return root / path.relative_to("/") if path.is_absolute() else root / path


def _wipe(path: Path) -> list[str]:
    """Overwrite, sync and unlink a file, or everything in a directory and then it; a link is
    unlinked, never followed (nothing outside the box's own files is touched)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return []
    if stat.S_ISDIR(mode):
        done: list[str] = []
        for child in sorted(path.iterdir()):
            done += _wipe(child)
        path.rmdir()
        _sync_dir(path.parent)
        return [*done, f"removed {path}/"]
    if stat.S_ISREG(mode):
        _overwrite(path)
    path.unlink()
    _sync_dir(path.parent)
    return [f"wiped {path}"]


def _overwrite(path: Path) -> None:
    size = path.stat().st_size
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        zeros = bytes(min(size, 1 << 20))
        written = 0
        while written < size:
            written += os.write(fd, zeros[: size - written])
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
