"""Apply a checked site file to a root filesystem: configuration, keys, network, SSH, clock.

Everything is checked before anything is written (`load_site`), so a bad site file changes
nothing. The recorder's configuration is written last and atomically, after a second check
of the file exactly as the daemon will read it. `root` is `/` on the box; tests and the
image build pass a directory.
"""

from __future__ import annotations

import json
import os
import pwd
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from linerec.atomic import write_atomic
from linerec.config import load_config
from linerec.provision.netfiles import networkd_file, wpa_supplicant_conf
from linerec.provision.site import ERROR_FILE, INSTALLED_SITE, RESULT_FILE, Site
from linerec.uplink.tls import device_request

MARKER = "provisioned.json"  # in /etc/linerec: which site file this box was set up from
SECRET = 0o600  # readable by its owner only: the recorder's user (the daemon runs as linerec)
RECORDER = "linerec"


def provisioned_digest(root: Path) -> str | None:
    """SHA-256 of the site file the box was last provisioned from, if any."""
    try:
        return str(json.loads((root / "etc/linerec" / MARKER).read_text())["site_sha256"])
    except (OSError, ValueError, KeyError):
        return None


def provision(site: Site, root: Path) -> list[str]:
    """Set the box up from `site`; returns what was done, one line each, for the journal."""
    done: list[str] = []
    etc = root / "etc/linerec"
    installed = etc / "site"
    _ensure_dir(installed)
    for name, beside in site.files.items():
        private = beside in site.secrets
        _write_atomic(installed / name, beside.read_bytes(), SECRET if private else 0o644)
        if private:
            _give_to_recorder(installed / name)
    done.append(f"installed {len(site.files)} file(s) from the boot partition in {installed}")
    config = dict(site.config)
    uplink: dict[str, Any] = config.get("uplink", {})
    tls = str(uplink.get("broker", "")).startswith("mqtts://")
    if tls and "cert" not in uplink:  # no certificate yet: make the request the site's CA signs
        _ensure_dir(etc / "tls")  # the recorder reaches its key through it
        key, csr = device_request(site.device_id, etc / "tls")
        os.chmod(key, SECRET)
        _give_to_recorder(key)
        _write_atomic(site.path.parent / csr.name, csr.read_bytes(), 0o644)
        done.append(
            f"made the device's TLS key ({key}); {csr.name} is on the boot partition "
            "for `linerec collector enroll`"
        )
    staged = etc / "linerec.toml.new"
    _write_atomic(staged, to_toml(config).encode(), 0o644)
    load_config(staged)  # exactly what the daemon will read must hold before it replaces the old
    staged.replace(etc / "linerec.toml")
    done.append(f"wrote {etc / 'linerec.toml'}")
    done += _network(site, root)
    done += _ssh(site, root)
    done += _clock_and_name(site, root)
    for secret in site.secrets:
        secret.unlink(missing_ok=True)
        done.append(f"removed {secret.name} from the boot partition (kept in {installed})")
    _write_atomic(
        etc / MARKER,
        json.dumps(
            {
                "site_sha256": site.digest,
                "device_id": site.device_id,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        ).encode(),
        0o644,
    )
    return done


def report_failure(site_path: Path, message: str) -> None:
    """Leave the reason on the boot partition, where the technician looks with a card reader."""
    text = f"linerec could not use {site_path.name}; nothing was changed.\n{message}\n"
    _write_atomic(site_path.parent / ERROR_FILE, text.encode(), 0o644)


def report_success(site: Site, root: Path, done: list[str]) -> None:
    """Move the site file (it may hold a Wi-Fi passphrase) off the boot partition, and say
    what was done beside where it was. A new site file there later sets the box up again."""
    _write_atomic(root / "etc/linerec/site" / INSTALLED_SITE, site.path.read_bytes(), 0o600)
    site.path.unlink()
    (site.path.parent / ERROR_FILE).unlink(missing_ok=True)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    text = f"{site.device_id} set up from {site.path.name} at {stamp}:\n" + "".join(
        f"- {line}\n" for line in done
    )
    _write_atomic(site.path.parent / RESULT_FILE, text.encode(), 0o644)


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
    return done


def _ssh(site: Site, root: Path) -> list[str]:
    keys = root / "root/.ssh/authorized_keys"
    enabled = root / "etc/linerec/ssh-enabled"  # sshd's unit has ConditionPathExists on it
    if not site.ssh_keys:
        keys.unlink(missing_ok=True)
        enabled.unlink(missing_ok=True)
        return ["SSH: off (no key in the site file)"]
    _ensure_dir(keys.parent, 0o700)
    os.chmod(keys.parent, 0o700)
    _write_atomic(keys, ("\n".join(site.ssh_keys) + "\n").encode(), 0o600)
    _write_atomic(enabled, b"", 0o644)
    return [f"SSH: on, {len(site.ssh_keys)} key(s), no password login"]


def _clock_and_name(site: Site, root: Path) -> list[str]:
    localtime = root / "etc/localtime"
    localtime.unlink(missing_ok=True)
    localtime.symlink_to(f"/usr/share/zoneinfo/{site.timezone}")
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
