"""The site file (`linerec-site.toml` on the boot partition): read and validated completely.

It is a linerec.toml (device, store, uplink, lines...) plus what only first boot sets up:
`[site]` (timezone, host name, SSH keys) and `[network]`. Files it names (the collector's
key, the broker's CA, a notice) are read from beside it and installed under /etc/linerec, so
the FAT partition, which anyone with the card can read, keeps no secret.
"""

from __future__ import annotations

import hashlib
import re
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linerec.config import Source, Table, parse_config, read_toml

DEFAULT_SITE = Path("/boot/firmware/linerec-site.toml")
SITE_ONLY = ("site", "network")
# Keys of linerec.toml whose values name files: read beside the site file, installed in /etc.
FILE_KEYS: dict[str, tuple[str, ...]] = {
    "store": ("recipients",),
    "uplink": ("ca", "cert", "key", "collector"),
    "line": ("notice",),
    "hardware": ("pinmap",),
    "sim": ("calls",),
}
SECRET_FILE_KEYS = {("uplink", "key")}  # removed from the boot partition once installed
_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_SSH_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+|sk-\S+) [A-Za-z0-9+/=]+( .*)?$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Wifi:
    ssid: str
    psk: str
    country: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Site:
    path: Path
    digest: str  # SHA-256 of the site file: a new file means provisioning again
    device_id: str
    hostname: str
    timezone: str
    ssh_keys: tuple[str, ...]
    ethernet: bool
    wifi: Wifi | None
    config: dict[str, Any]  # the linerec.toml part; file values relative to /etc/linerec
    files: dict[str, Path]  # name under /etc/linerec/site -> the file beside the site file
    secrets: tuple[Path, ...]  # files beside the site file to delete once installed


def load_site(path: Path) -> Site:
    """Read and check everything; raises ConfigError naming the key, the file and the line."""
    data, text = read_toml(path)
    linerec = {k: v for k, v in data.items() if k not in SITE_ONLY}
    checked = parse_config(linerec, path, text)  # the recorder's own validation, in full
    source = Source(path, text)
    top = Table({k: v for k, v in data.items() if k in SITE_ONLY}, "", source)
    site = top.table("site")
    timezone = site.take("timezone", str, "UTC")
    if timezone not in zoneinfo.available_timezones() and timezone != "UTC":
        raise site.error("timezone", f"not a time zone name like 'Europe/London' ({timezone!r})")
    hostname = site.take("hostname", str, checked.device_id.lower().replace("_", "-"))
    if not _HOSTNAME.match(hostname):
        raise site.error("hostname", f"must be lower-case letters, digits and '-' ({hostname!r})")
    ssh_keys = site.take("ssh_authorized_keys", list, [])
    for i, key in enumerate(ssh_keys):
        if not isinstance(key, str) or not _SSH_KEY.match(key.strip()):
            raise site.error(
                f"ssh_authorized_keys[{i}]", "must be one public key line ('ssh-ed25519 AAAA...')"
            )
    site.done()
    network = top.table("network")
    ethernet = network.take("ethernet", bool, True)
    wifi_table = network.table("wifi")
    wifi = None
    if wifi_table.given():
        ssid = wifi_table.take("ssid", str, "")
        psk = wifi_table.take("psk", str, "")
        country = wifi_table.take("country", str, "")
        if not 1 <= len(ssid.encode()) <= 32:
            raise wifi_table.error("ssid", f"must be 1-32 bytes (got {ssid!r})")
        if not 8 <= len(psk) <= 63:
            raise wifi_table.error("psk", "must be a passphrase of 8-63 characters")
        if not re.fullmatch(r"[A-Z]{2}", country):
            raise wifi_table.error("country", f"must be a two-letter code like 'GB' ({country!r})")
        wifi_table.done()
        wifi = Wifi(ssid=ssid, psk=psk, country=country)
    network.done()
    if not ethernet and wifi is None:
        raise network.error("ethernet", "is off and there is no [network.wifi]: no way to reach it")
    top.done()
    config, files, secrets = _install_paths(linerec, source)
    return Site(
        path=path,
        digest=hashlib.sha256(text.encode()).hexdigest(),
        device_id=checked.device_id,
        hostname=hostname,
        timezone=timezone,
        ssh_keys=tuple(k.strip() for k in ssh_keys),
        ethernet=ethernet,
        wifi=wifi,
        config=config,
        files=files,
        secrets=tuple(secrets),
    )


def _install_paths(
    linerec: dict[str, Any], source: Source
) -> tuple[dict[str, Any], dict[str, Path], list[Path]]:
    """The linerec.toml part with each file value pointed at its copy under `site/`."""
    files: dict[str, Path] = {}
    secrets: list[Path] = []

    def install(table: str, key: str, value: str) -> str:
        beside = source.resolve(value)
        name = beside.name
        if files.get(name, beside) != beside:
            raise source.error(f"{table}.{key}", f"two different files are named {name!r}")
        files[name] = beside
        if (table, key) in SECRET_FILE_KEYS:
            secrets.append(beside)
        return f"site/{name}"

    def rewrite(table: str, entry: dict[str, Any]) -> dict[str, Any]:
        out = dict(entry)
        for key in FILE_KEYS.get(table, ()):
            value = out.get(key)
            if isinstance(value, str):
                out[key] = install(table, key, value)
            elif isinstance(value, list):
                out[key] = [install(table, key, v) for v in value]
        return out

    config: dict[str, Any] = {}
    for name, value in linerec.items():
        if isinstance(value, dict):
            config[name] = rewrite(name, value)
        elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
            config[name] = [rewrite(name, v) for v in value]
        else:
            config[name] = value
    return config, files, secrets
