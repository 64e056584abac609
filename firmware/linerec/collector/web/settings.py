"""The `[web]` table of the collector's configuration file (the console)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from linerec.config import read_toml
from linerec.errors import ConfigError

_KEYS = {"listen", "cert", "key", "allow_plaintext", "idle_timeout_min"}
DEFAULT_LISTEN = "127.0.0.1:8443"


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSettings:
    host: str
    port: int
    cert: Path | None = None
    key: Path | None = None
    idle_timeout_min: float = 15.0

    @property
    def tls(self) -> bool:
        return self.cert is not None


def load_web_settings(path: Path | str) -> WebSettings:
    path = Path(path)
    data, _ = read_toml(path)  # bounded, and errors name the file and line
    table = data.get("web", {})
    if not isinstance(table, dict):
        raise ConfigError(path, "web", "must be a table ([web])")
    for key in table:
        if key not in _KEYS:
            raise ConfigError(
                path, f"web.{key}", f"unknown key (known keys here: {', '.join(sorted(_KEYS))})"
            )
    listen = table.get("listen", DEFAULT_LISTEN)
    host, port = _listen(path, listen)
    files = {}
    for name in ("cert", "key"):
        value = table.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise ConfigError(path, f"web.{name}", f"must be a file name (got {value!r})")
        file = Path(value)
        files[name] = file if file.is_absolute() else (path.parent / file).resolve()
    if ("cert" in files) != ("key" in files):
        raise ConfigError(path, "web.cert", "cert and key go together (TLS needs both)")
    allow = table.get("allow_plaintext", False)
    if not isinstance(allow, bool):
        raise ConfigError(path, "web.allow_plaintext", f"must be true or false (got {allow!r})")
    if "cert" not in files and not allow and not _loopback(host):
        raise ConfigError(
            path,
            "web.listen",
            f"{listen!r} is not a loopback address: give cert and key (TLS), "
            "or allow_plaintext = true",
        )
    idle = table.get("idle_timeout_min", 15)
    if isinstance(idle, bool) or not isinstance(idle, int | float) or not 1 <= idle <= 1440:
        raise ConfigError(path, "web.idle_timeout_min", f"must be minutes 1-1440 (got {idle!r})")
    return WebSettings(
        host=host,
        port=port,
        cert=files.get("cert"),
        key=files.get("key"),
        idle_timeout_min=float(idle),
    )


def _listen(path: Path, value: object) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(path, "web.listen", f"must be HOST:PORT (got {value!r})")
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536 or not host:
        raise ConfigError(path, "web.listen", f"must be HOST:PORT, port 1-65535 (got {value!r})")
    return host, int(port_text)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
