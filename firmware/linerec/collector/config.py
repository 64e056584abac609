"""The collector's configuration file (`linerec collector ... --config PATH`)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from linerec.broker import Broker
from linerec.errors import ConfigError
from linerec.store.keys import CollectorPrivate, load_private

DEFAULT_PATH = Path("/etc/linerec/collector.toml")
_KEYS = {
    "broker",
    "allow_plaintext",
    "data_dir",
    "key",
    "database",
    "ca",
    "cert",
    "client_key",
    "retention_days",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectorSettings:
    broker: Broker
    data_dir: Path
    database: Path
    key: CollectorPrivate
    ca: Path | None = None
    cert: Path | None = None
    client_key: Path | None = None
    retention_days: float = 0.0  # 0 = keep until deleted by hand


def load_collector_config(path: Path | str) -> CollectorSettings:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(path, "", "no such file") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, "", f"cannot read: {exc}") from exc
    table = data.get("collector")
    if not isinstance(table, dict):
        raise ConfigError(path, "collector", "needs a [collector] table")
    for key in table:
        if key not in _KEYS:
            raise ConfigError(
                path,
                f"collector.{key}",
                f"unknown key (known keys here: {', '.join(sorted(_KEYS))})",
            )

    def text(key: str, default: str | None = None) -> str:
        value = table.get(key, default)
        if not isinstance(value, str) or not value:
            raise ConfigError(
                path, f"collector.{key}", f"must be a non-empty string (got {value!r})"
            )
        return value

    def file(key: str) -> Path:
        value = Path(text(key))
        return value if value.is_absolute() else (path.parent / value).resolve()

    allow = table.get("allow_plaintext", False)
    if not isinstance(allow, bool):
        raise ConfigError(
            path, "collector.allow_plaintext", f"must be true or false (got {allow!r})"
        )
    try:
        broker = Broker.parse(text("broker"), allow_plaintext=allow)
    except ValueError as exc:
        raise ConfigError(path, "collector.broker", str(exc)) from exc
    data_dir = file("data_dir")
    return CollectorSettings(
        broker=broker,
        data_dir=data_dir,
        database=file("database") if "database" in table else data_dir / "collector.db",
        key=load_private(file("key")),
        ca=file("ca") if "ca" in table else None,
        cert=file("cert") if "cert" in table else None,
        client_key=file("client_key") if "client_key" in table else None,
        retention_days=_days(table.get("retention_days", 0), path),
    )


def _days(value: object, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 36500:
        raise ConfigError(path, "collector.retention_days", f"must be days 0-36500 (got {value!r})")
    return float(value)
