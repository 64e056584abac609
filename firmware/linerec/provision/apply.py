"""Apply a checked site file to a root filesystem: configuration, keys, network, SSH, clock.

Everything is checked before anything is written (`load_site`), so a bad site file changes
nothing. The recorder's configuration is written last and atomically, after a second check
of the file exactly as the daemon will read it. `root` is `/` on the box; tests and the
image build pass a directory.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from linerec.config import load_config
from linerec.provision.site import Site
from linerec.uplink.tls import device_request

MARKER = "provisioned.json"  # in /etc/linerec: which site file this box was set up from
SECRET = 0o640  # root-owned, readable by the recorder's group (the daemon runs as linerec)


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
    installed.mkdir(parents=True, exist_ok=True)
    for name, beside in site.files.items():
        _copy(beside, installed / name, SECRET if beside in site.secrets else 0o644)
    done.append(f"installed {len(site.files)} file(s) from the boot partition in {installed}")
    config = dict(site.config)
    uplink: dict[str, Any] = config.get("uplink", {})
    tls = str(uplink.get("broker", "")).startswith("mqtts://")
    if tls and "cert" not in uplink:  # no certificate yet: make the request the site's CA signs
        key, csr = device_request(site.device_id, etc / "tls")
        _share_with_recorder(key, SECRET)
        shutil.copyfile(csr, site.path.parent / csr.name)
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


ERROR_FILE = "linerec-site-error.txt"  # beside the site file, for the technician to read
RESULT_FILE = "linerec-site-result.txt"


def report_failure(site_path: Path, message: str) -> None:
    """Leave the reason on the boot partition, where the technician looks with a card reader."""
    (site_path.parent / ERROR_FILE).write_text(
        f"linerec could not use {site_path.name}; nothing was changed.\n{message}\n"
    )


def report_success(site: Site, root: Path, done: list[str]) -> None:
    """Move the site file (it may hold a Wi-Fi passphrase) off the boot partition, and say
    what was done beside where it was. A new site file there later sets the box up again."""
    _copy(site.path, root / "etc/linerec/site/linerec-site.toml", 0o600)
    site.path.unlink()
    (site.path.parent / ERROR_FILE).unlink(missing_ok=True)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    (site.path.parent / RESULT_FILE).write_text(
        f"{site.device_id} set up from {site.path.name} at {stamp}:\n"
        + "".join(f"- {line}\n" for line in done)
    )


def _network(site: Site, root: Path) -> list[str]:
    networkd = root / "etc/systemd/network"
    networkd.mkdir(parents=True, exist_ok=True)
    done = []
    ethernet = networkd / "20-linerec-ethernet.network"
    if site.ethernet:
        ethernet.write_text("[Match]\nName=e*\n\n[Network]\nDHCP=yes\n")
        done.append("Ethernet: DHCP")
    else:
        ethernet.unlink(missing_ok=True)
    wifi = networkd / "25-linerec-wifi.network"
    supplicant = root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
    wants = root / "etc/systemd/system/multi-user.target.wants/wpa_supplicant@wlan0.service"
    if site.wifi is not None:
        wifi.write_text("[Match]\nName=wlan0\n\n[Network]\nDHCP=yes\n")
        supplicant.parent.mkdir(parents=True, exist_ok=True)
        ssid = site.wifi.ssid.replace("\\", "\\\\").replace('"', '\\"')
        psk = site.wifi.psk.replace("\\", "\\\\").replace('"', '\\"')
        network = f'network={{\n    ssid="{ssid}"\n    psk="{psk}"\n}}\n'
        text = f"country={site.wifi.country}\n{network}"
        _write_atomic(supplicant, text.encode(), 0o600)  # the passphrase: root only
        if not wants.is_symlink():  # what `systemctl enable wpa_supplicant@wlan0` makes
            wants.parent.mkdir(parents=True, exist_ok=True)
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
    keys.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(keys.parent, 0o700)
    _write_atomic(keys, ("\n".join(site.ssh_keys) + "\n").encode(), 0o600)
    enabled.write_text("")
    return [f"SSH: on, {len(site.ssh_keys)} key(s), no password login"]


def _clock_and_name(site: Site, root: Path) -> list[str]:
    localtime = root / "etc/localtime"
    localtime.unlink(missing_ok=True)
    localtime.symlink_to(f"/usr/share/zoneinfo/{site.timezone}")
    (root / "etc/timezone").write_text(site.timezone + "\n")
    (root / "etc/hostname").write_text(site.hostname + "\n")
    return [f"time zone {site.timezone}", f"host name {site.hostname}"]


def _copy(source: Path, target: Path, mode: int) -> None:
    _write_atomic(target, source.read_bytes(), mode)
    if mode == SECRET:
        _share_with_recorder(target, mode)


def _share_with_recorder(path: Path, mode: int) -> None:
    """Give a secret to the `linerec` group; where there is none (a test), keep it root-only."""
    try:
        group = grp.getgrnam("linerec").gr_gid
    except KeyError:
        os.chmod(path, mode & 0o700)
        return
    os.chown(path, 0, group)
    os.chmod(path, mode)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


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
            return json.dumps(value)  # a JSON string is a valid TOML basic string
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


def _array_of_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
