"""Apply a checked site file to a root filesystem: configuration, keys, network, SSH, clock.

Everything is checked before anything is written (`load_site`), so a bad site file changes
nothing. `root` is `/` on the box; tests and the image build pass a directory.

The set-up is a journaled sequence of steps (`STEPS`), any of which a power cut may
interrupt. Each step is idempotent, and it is recorded as done in `/etc/linerec/
provision-journal.json` only after what it wrote is synced: each file fsynced before its
rename, the directory fsynced after it (on /etc and on the FAT boot partition alike). The next
boot finds the site file still there and completes the steps not recorded, so the end state
is that of one clean run. The result file is written before the site file (which may hold a
Wi-Fi passphrase) leaves the boot partition: once it has gone the unit no longer runs.
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from linerec.atomic import sync_directory, write_atomic
from linerec.config import load_config
from linerec.provision.netfiles import networkd_file, wpa_supplicant_conf
from linerec.provision.site import ERROR_FILE, INSTALLED_SITE, RESULT_FILE, Site
from linerec.uplink.tls import device_request

MARKER = "provisioned.json"  # in /etc/linerec: which site file this box was set up from
JOURNAL = "provision-journal.json"  # in /etc/linerec: which steps of that set-up are done
SECRET = 0o600  # readable by its owner only: the recorder's user (the daemon runs as linerec)
RECORDER = "linerec"


def provisioned_digest(root: Path) -> str | None:
    """SHA-256 of the site file the box was last provisioned from, if any."""
    try:
        return str(json.loads((root / "etc/linerec" / MARKER).read_text())["site_sha256"])
    except (OSError, ValueError, KeyError):
        return None


STEPS = (
    "files",  # the site's files copied into /etc/linerec/site
    "tls",  # the device's TLS key and its certificate request on the boot partition
    "config",  # /etc/linerec/linerec.toml
    "network",
    "ssh",
    "clock",  # time zone and host name
    "keep-site",  # the site file's own copy in /etc/linerec/site
    "marker",  # provisioned.json
    "result",  # linerec-site-result.txt on the boot partition
    "cleanup",  # the site file and its secrets off the boot partition
)


class Journal:
    """Which steps of the set-up from one site file are done (by its SHA-256)."""

    def __init__(self, root: Path, digest: str, *, fresh: bool = False) -> None:
        self.path = root / "etc/linerec" / JOURNAL
        self.digest = digest
        self.done: dict[str, list[str]] = {}
        if not fresh:
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError):
                data = {}
            if isinstance(data, dict) and data.get("site_sha256") == digest:
                done = data.get("done", {})
                self.done = {str(k): list(v) for k, v in done.items() if isinstance(v, list)}

    @property
    def complete(self) -> bool:
        return all(step in self.done for step in STEPS)

    def run(self, name: str, step: Callable[[], list[str]]) -> list[str]:
        """Do step `name` unless it is recorded as done; record it once it is durable."""
        if name not in self.done:
            lines = step()
            self.done[name] = lines
            body = {"site_sha256": self.digest, "done": self.done}
            _write_atomic(self.path, json.dumps(body).encode(), 0o644)
        return self.done[name]


def provision(site: Site, root: Path, journal: Journal | None = None) -> list[str]:
    """Set the box up from `site`, completing whatever `journal` does not record as done;
    returns what was done, one line each, for the journal."""
    journal = journal or Journal(root, site.digest)
    etc = root / "etc/linerec"
    done: list[str] = []
    done += journal.run("files", lambda: _install_files(site, etc))
    done += journal.run("tls", lambda: _tls(site, etc))
    done += journal.run("config", lambda: _config(site, etc))
    done += journal.run("network", lambda: _network(site, root))
    done += journal.run("ssh", lambda: _ssh(site, root))
    done += journal.run("clock", lambda: _clock_and_name(site, root))
    done += journal.run("keep-site", lambda: _keep_site(site, etc))
    done += journal.run("marker", lambda: _marker(site, etc))
    journal.run("result", lambda: _result(site, done))
    done += journal.run("cleanup", lambda: _cleanup(site))
    return done


def _install_files(site: Site, etc: Path) -> list[str]:
    installed = etc / "site"
    _ensure_dir(installed)
    for name, beside in site.files.items():
        private = beside in site.secrets
        _write_atomic(installed / name, beside.read_bytes(), SECRET if private else 0o644)
        if private:
            _give_to_recorder(installed / name)
    return [f"installed {len(site.files)} file(s) from the boot partition in {installed}"]


def _tls(site: Site, etc: Path) -> list[str]:
    uplink: dict[str, Any] = site.config.get("uplink", {})
    tls = str(uplink.get("broker", "")).startswith("mqtts://")
    if not tls or "cert" in uplink:
        return []
    # No certificate yet: make the request the site's CA signs (the key is made once, kept).
    _ensure_dir(etc / "tls")  # the recorder reaches its key through it
    key, csr = device_request(site.device_id, etc / "tls")
    os.chmod(key, SECRET)
    _give_to_recorder(key)
    _sync_file(key)
    _sync_dir(key.parent)
    _write_atomic(site.path.parent / csr.name, csr.read_bytes(), 0o644)
    return [
        f"made the device's TLS key ({key}); {csr.name} is on the boot partition "
        "for `linerec collector enroll`"
    ]


def _config(site: Site, etc: Path) -> list[str]:
    staged = etc / "linerec.toml.new"
    _write_atomic(staged, to_toml(dict(site.config)).encode(), 0o644)
    load_config(staged)  # exactly what the daemon will read must hold before it replaces the old
    staged.replace(etc / "linerec.toml")
    _sync_dir(etc)
    return [f"wrote {etc / 'linerec.toml'}"]


def _keep_site(site: Site, etc: Path) -> list[str]:
    _write_atomic(etc / "site" / INSTALLED_SITE, site.path.read_bytes(), 0o600)
    return []


def _marker(site: Site, etc: Path) -> list[str]:
    body = {
        "site_sha256": site.digest,
        "device_id": site.device_id,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write_atomic(etc / MARKER, json.dumps(body).encode(), 0o644)
    return []


def _result(site: Site, done: list[str]) -> list[str]:
    """Say what was done beside the site file, before it goes (after, nothing runs again)."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    removed = [f"removed {secret.name} from the boot partition" for secret in site.secrets]
    text = f"{site.device_id} set up from {site.path.name} at {stamp}:\n" + "".join(
        f"- {line}\n" for line in [*done, *removed]
    )
    _write_atomic(site.path.parent / RESULT_FILE, text.encode(), 0o644)
    return []


def _cleanup(site: Site) -> list[str]:
    """Move the site file (it may hold a Wi-Fi passphrase) and its secrets off the boot
    partition (their copies are in /etc/linerec/site), synced. A new site file there later
    sets the box up again."""
    done = []
    for secret in site.secrets:
        secret.unlink(missing_ok=True)
        done.append(f"removed {secret.name} from the boot partition (kept in /etc/linerec/site)")
    (site.path.parent / ERROR_FILE).unlink(missing_ok=True)
    site.path.unlink(missing_ok=True)
    _sync_dir(site.path.parent)
    return done


def remove_again(site: Site) -> None:
    """The site file of a finished set-up put back on the boot partition: take it off again."""
    _cleanup(site)


def report_failure(site_path: Path, message: str) -> None:
    """Leave the reason on the boot partition, where the technician looks with a card reader."""
    text = f"linerec could not use {site_path.name}; nothing was changed.\n{message}\n"
    _write_atomic(site_path.parent / ERROR_FILE, text.encode(), 0o644)


def _network(site: Site, root: Path) -> list[str]:
    networkd = root / "etc/systemd/network"
    _ensure_dir(networkd)
    done = []
    ethernet = networkd / "20-linerec-ethernet.network"
    if site.ethernet:
        dhcp = networkd_file([("Match", [("Name", "e*")]), ("Network", [("DHCP", "yes")])])
        _write_atomic(ethernet, dhcp.encode(), 0o644)
        done.append("Ethernet: DHCP")
    else:
        ethernet.unlink(missing_ok=True)
    wifi = networkd / "25-linerec-wifi.network"
    supplicant = root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
    wants = root / "etc/systemd/system/multi-user.target.wants/wpa_supplicant@wlan0.service"
    if site.wifi is not None:
        dhcp = networkd_file([("Match", [("Name", "wlan0")]), ("Network", [("DHCP", "yes")])])
        _write_atomic(wifi, dhcp.encode(), 0o644)
        text = wpa_supplicant_conf(
            ssid=site.wifi.ssid, psk=site.wifi.psk, country=site.wifi.country
        )
        _write_atomic(supplicant, text.encode(), 0o600)  # the passphrase: root only
        if not wants.is_symlink():  # what `systemctl enable wpa_supplicant@wlan0` makes
            _ensure_dir(wants.parent)
            wants.symlink_to("/lib/systemd/system/wpa_supplicant@.service")
        done.append(f"Wi-Fi: {site.wifi.ssid!r} ({site.wifi.country})")
    else:
        for path in (wifi, supplicant, wants):
            path.unlink(missing_ok=True)
    for directory in (networkd, supplicant.parent, wants.parent):
        if directory.is_dir():
            _sync_dir(directory)
    return done


def _ssh(site: Site, root: Path) -> list[str]:
    keys = root / "root/.ssh/authorized_keys"
    enabled = root / "etc/linerec/ssh-enabled"  # sshd's unit has ConditionPathExists on it
    if not site.ssh_keys:
        keys.unlink(missing_ok=True)
        enabled.unlink(missing_ok=True)
        for directory in (keys.parent, enabled.parent):
            if directory.is_dir():
                _sync_dir(directory)
        return ["SSH: off (no key in the site file)"]
    _ensure_dir(keys.parent, 0o700)
    os.chmod(keys.parent, 0o700)
    _write_atomic(keys, ("\n".join(site.ssh_keys) + "\n").encode(), 0o600)
    _write_atomic(enabled, b"", 0o644)
    return [f"SSH: on, {len(site.ssh_keys)} key(s), no password login"]


def _clock_and_name(site: Site, root: Path) -> list[str]:
    localtime = root / "etc/localtime"
    _ensure_dir(localtime.parent)
    localtime.unlink(missing_ok=True)
    localtime.symlink_to(f"/usr/share/zoneinfo/{site.timezone}")
    _sync_dir(localtime.parent)
    _write_atomic(root / "etc/timezone", (site.timezone + "\n").encode(), 0o644)
    _write_atomic(root / "etc/hostname", (site.hostname + "\n").encode(), 0o644)
    return [f"time zone {site.timezone}", f"host name {site.hostname}"]


def _give_to_recorder(path: Path) -> None:
    """Hand a secret to the recorder's user, which alone reads it (mode 0600). Where there
    is no such user (a test, an image being built elsewhere) it stays with whoever wrote it."""
    try:
        user = pwd.getpwnam(RECORDER)
    except KeyError:
        return
    os.chown(path, user.pw_uid, user.pw_gid)


def _ensure_dir(path: Path, mode: int = 0o755) -> None:
    """Make `path` and any missing parents with an explicit mode: the unit's UMask=0077
    would leave them root-only, and the recorder, networkd and sshd read through them.
    A directory that exists keeps its mode."""
    if not path.is_dir():
        _ensure_dir(path.parent)
        path.mkdir(exist_ok=True)
        os.chmod(path, mode)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """linerec.atomic's write, into a directory made first. A link planted at the name is
    replaced, never followed: the boot partition is not trusted."""
    _ensure_dir(path.parent)
    write_atomic(path, data, mode=mode)
    _sync_dir(path.parent)  # the new name itself survives a power cut


def _sync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_dir(path: Path) -> None:
    """fsync a directory: its entries (a rename, an unlink) are on the disk. Linux's vfat
    syncs the FAT with it, so this holds on the boot partition too."""
    sync_directory(path)


def to_toml(data: dict[str, Any]) -> str:
    """TOML for the configuration's own shapes: scalars, lists of scalars, tables and arrays
    of tables (no dependency for a writer; tomllib only reads)."""
    out: list[str] = []

    def scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        if isinstance(value, str):
            return _toml_string(value)
        if isinstance(value, list):
            return "[" + ", ".join(scalar(v) for v in value) + "]"
        raise TypeError(f"cannot write {value!r} as TOML")

    def body(table: dict[str, Any]) -> None:
        for key, value in table.items():
            if not isinstance(value, dict) and not _array_of_tables(value):
                out.append(f"{key} = {scalar(value)}")

    body(data)
    for name, value in data.items():
        if isinstance(value, dict):
            out.append(f"\n[{name}]")
            body(value)
            for sub, inner in value.items():
                if isinstance(inner, dict):
                    out.append(f"\n[{name}.{sub}]")
                    body(inner)
        elif _array_of_tables(value):
            for entry in value:
                out.append(f"\n[[{name}]]")
                body(entry)
    return "\n".join(out).lstrip("\n") + "\n"


def _toml_string(value: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped, the rest as it
    is (JSON's escapes would split a character beyond U+FFFF into surrogates TOML refuses)."""
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _array_of_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
