"""The site file (`linerec-site.toml` on the boot partition): read and validated completely.

It is a linerec.toml (device, store, uplink, lines...) plus what only first boot sets up:
`[site]` (timezone, host name, SSH keys) and `[network]`. Files it names (the collector's
key, the broker's CA, a notice) are read from beside it and installed under /etc/linerec, so
the FAT partition, which anyone with the card can read, keeps no secret.

The file may be written by a careless or hostile hand, and provisioning runs as root, so:
no string in it (key or value) may hold a control character; a file it names is a plain
name beside it (no '/', no '..', not a link leading elsewhere, not the site file nor the
files provisioning itself writes there); network values must fit their files (`netfiles`).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linerec.config import Source, Table, parse_config, read_toml
from linerec.errors import ConfigError
from linerec.provision import netfiles

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
ERROR_FILE = "linerec-site-error.txt"  # beside the site file, for the technician to read
RESULT_FILE = "linerec-site-result.txt"
INSTALLED_SITE = "linerec-site.toml"  # the site file's own copy under /etc/linerec/site
MAX_FILE_BYTES = 32 << 20  # a named file is a key, a certificate or a notice: far less
_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_SSH_KEY = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+|sk-\S+) [A-Za-z0-9+/=]+( .*)?")
# Cc: C0/C1 controls and DEL; Cf: invisible formatting (bidi overrides); Zl/Zp: line breaks.
_CONTROL_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}


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
    source = _SiteSource(path, text)
    _refuse_control_characters(data, "", source)
    linerec = {k: v for k, v in data.items() if k not in SITE_ONLY}
    # Before the recorder's own validation, which opens the files named: only those beside us.
    named = _install_paths(linerec, source)
    try:
        checked = parse_config(linerec, path, text)  # the recorder's own validation, in full
    except ConfigError as exc:
        key = named.named_by.get(exc.path.resolve())
        if key is None:
            raise
        # Wrong inside a file we named (a pin map that is not one): say which key named it.
        inner = f"{exc.path.name}:{exc.line}" if exc.line else exc.path.name
        raise source.error(
            key, f"{inner}: {exc.key}: {exc.message}" if exc.key else f"{inner}: {exc.message}"
        ) from exc
    top = Table({k: v for k, v in data.items() if k in SITE_ONLY}, "", source)
    site = top.table("site")
    timezone = site.take("timezone", str, "UTC")
    if timezone not in zoneinfo.available_timezones() and timezone != "UTC":
        raise site.error("timezone", f"not a time zone name like 'Europe/London' ({timezone!r})")
    hostname = site.take("hostname", str, checked.device_id.lower().replace("_", "-"))
    if not _HOSTNAME.fullmatch(hostname):
        raise site.error("hostname", f"must be lower-case letters, digits and '-' ({hostname!r})")
    ssh_keys = site.take("ssh_authorized_keys", list, [])
    for i, key in enumerate(ssh_keys):
        if not isinstance(key, str) or not _SSH_KEY.fullmatch(key.strip()):
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
        for key, value, check in (
            ("ssid", ssid, netfiles.check_ssid),
            ("psk", psk, netfiles.check_passphrase),
            ("country", country, netfiles.check_country),
        ):
            try:
                check(value)
            except netfiles.Unrepresentable as exc:
                raise wifi_table.error(key, str(exc)) from exc
        wifi_table.done()
        wifi = Wifi(ssid=ssid, psk=psk, country=country)
    network.done()
    if not ethernet and wifi is None:
        raise network.error("ethernet", "is off and there is no [network.wifi]: no way to reach it")
    top.done()
    return Site(
        path=path,
        digest=hashlib.sha256(text.encode()).hexdigest(),
        device_id=checked.device_id,
        hostname=hostname,
        timezone=timezone,
        ssh_keys=tuple(k.strip() for k in ssh_keys),
        ethernet=ethernet,
        wifi=wifi,
        config=named.config,
        files=named.files,
        secrets=tuple(named.secrets),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Named:
    config: dict[str, Any]  # the linerec.toml part, file values pointed at `site/<name>`
    files: dict[str, Path]  # name under /etc/linerec/site -> the file beside the site file
    secrets: list[Path]
    named_by: dict[Path, str]  # each file beside -> the first key that names it


def _install_paths(linerec: dict[str, Any], source: Source) -> _Named:
    """The linerec.toml part with each file value pointed at its copy under `site/`.
    Values of the wrong type are left for the recorder's validation to name."""
    files: dict[str, Path] = {}
    secrets: list[Path] = []
    named_by: dict[Path, str] = {}

    def install(table: str, key: str, where: str, value: str) -> str:
        beside = _beside(source, where, value)
        files[beside.name] = beside
        named_by.setdefault(beside.resolve(), where)
        if (table, key) in SECRET_FILE_KEYS:
            secrets.append(beside)
        return f"site/{beside.name}"

    def rewrite(table: str, where: str, entry: dict[str, Any]) -> dict[str, Any]:
        out = dict(entry)
        for key in FILE_KEYS.get(table, ()):
            value = out.get(key)
            if isinstance(value, str):
                out[key] = install(table, key, f"{where}.{key}", value)
            elif isinstance(value, list):
                out[key] = [
                    install(table, key, f"{where}.{key}[{i}]", v) if isinstance(v, str) else v
                    for i, v in enumerate(value)
                ]
        return out

    config: dict[str, Any] = {}
    for name, value in linerec.items():
        if isinstance(value, dict):
            config[name] = rewrite(name, name, value)
        elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
            config[name] = [rewrite(name, f"{name}[{i}]", v) for i, v in enumerate(value)]
        else:
            config[name] = value
    return _Named(config=config, files=files, secrets=secrets, named_by=named_by)


def _beside(source: Source, key: str, value: str) -> Path:
    """The file a site-file value names: a plain name in the site file's own directory."""
    if (
        value in ("", ".", "..")
        or "/" in value
        or "\\" in value
        or value.startswith("~")  # the recorder's reader would take it for a home directory
    ):
        raise source.error(
            key, f"must be a file name beside the site file, like 'ca.crt' (got {value!r})"
        )
    # FAT, where the site file lives, does not tell upper from lower case.
    reserved = {n.casefold() for n in (source.path.name, ERROR_FILE, RESULT_FILE, INSTALLED_SITE)}
    if value.casefold() in reserved:
        raise source.error(key, f"{value!r} is a name provisioning uses itself; rename the file")
    folder = source.path.parent
    beside = folder / value
    if beside.is_symlink():
        target = beside.resolve()
        if target.parent != folder.resolve() or target.name.casefold() in reserved:
            raise source.error(key, f"{value!r} is a link leading out of the site file's directory")
    if not beside.is_file():
        raise source.error(key, f"no such file beside the site file: {value!r}")
    size = beside.stat().st_size
    if size > MAX_FILE_BYTES:
        raise source.error(key, f"{value!r} is {size} bytes; at most {MAX_FILE_BYTES} are taken")
    return beside


def _refuse_control_characters(data: Any, where: str, source: Source) -> None:
    """No key or value anywhere in the file may hold a control character: each ends up in a
    line-based file (TOML, wpa_supplicant, networkd, /etc/hostname) or on the console."""
    if isinstance(data, dict):
        for key, value in data.items():
            shown = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)
            path = f"{where}.{shown}" if where else shown
            _refuse_in(key, path, source, "its name")
            _refuse_control_characters(value, path, source)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            _refuse_control_characters(value, f"{where}[{i}]", source)
    elif isinstance(data, str):
        _refuse_in(data, where, source, "the value")


def _refuse_in(text: str, where: str, source: Source, what: str) -> None:
    for position, char in enumerate(text):
        if unicodedata.category(char) in _CONTROL_CATEGORIES:
            raise source.error(
                where,
                f"{what} contains a control character (U+{ord(char):04X} at character "
                f"{position}); site file strings must be printable",
            )


class _SiteSource(Source):
    """Error positions also for the site file's own deeper keys (`network.wifi.psk`) and
    array elements (`store.recipients[0]`)."""

    def line_of(self, key: str) -> int | None:
        key = re.sub(r"\[\d+\]$", "", key)  # an element of an array: the array's line
        table, _, name = key.rpartition(".")
        if "." not in table or self.text is None:
            return super().line_of(key)
        header = re.compile(rf"^\s*\[\s*{re.escape(table)}\s*\]")
        assign = re.compile(rf"^\s*{re.escape(name)}\s*=")
        inside = False
        for number, line in enumerate(self.text.splitlines(), start=1):
            if re.match(r"^\s*\[", line):
                inside = bool(header.match(line))
            elif inside and assign.match(line):
                return number
        return None
