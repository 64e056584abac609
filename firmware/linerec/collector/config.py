"""The collector's configuration file (`linerec collector ... --config PATH`)."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from linerec.broker import Broker
from linerec.collector.database import check_uri
from linerec.collector.uploads import UploadLimits
from linerec.config import read_toml
from linerec.errors import ConfigError
from linerec.ids import shown
from linerec.store.keys import CollectorPrivate, load_private

DEFAULT_PATH = Path("/etc/linerec/collector.toml")
EVENT_SEQ_WINDOW = 10_000  # how far beyond the last event in order a seq may be
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
    "max_recording_bytes",
    "max_open_uploads",
    "max_upload_holes",
    "upload_expiry_hours",
    "event_seq_window",
    "instance",
}
# An instance name goes into the MQTT client id and the log: a plain word, bounded.
_INSTANCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


def default_instance() -> str:
    """This process's instance name: host name and process id, so that every `collector run`
    (on one machine or several, and again after a restart) has an MQTT client id of its own."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:40].strip(".-_") or "host"
    return f"{host}-{os.getpid()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectorSettings:
    broker: Broker
    data_dir: Path
    database: Path | str  # a SQLite file, or a PostgreSQL URI (linerec.collector.database)
    key: CollectorPrivate
    ca: Path | None = None
    cert: Path | None = None
    client_key: Path | None = None
    retention_days: float = 0.0  # 0 = keep until deleted by hand
    limits: UploadLimits = field(default_factory=UploadLimits)
    event_seq_window: int = EVENT_SEQ_WINDOW
    instance: str = field(default_factory=default_instance)  # this process, among collectors

    @property
    def client_id(self) -> str:
        """The MQTT client id of this collector process: its own, so that two processes never
        close each other's connection; the load is shared by the shared subscription."""
        return f"linerec-collector-{self.instance}"


def load_collector_config(path: Path | str) -> CollectorSettings:
    path = Path(path)
    data, _ = read_toml(path)  # bounded, and errors name the file and line
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
        name = text(key)
        if not name.isprintable():  # a NUL ends a path early; a newline splits a log line
            raise ConfigError(
                path, f"collector.{key}", f"a path with a control character ({name!a})"
            )
        value = Path(name)
        return value if value.is_absolute() else (path.parent / value).resolve()

    def tls_file(key: str) -> Path | None:
        """A PEM file the TLS library reads whole: a regular file (it would read /dev/zero
        for ever), or absent."""
        if key not in table:
            return None
        found = file(key)
        if not found.is_file():
            raise ConfigError(path, f"collector.{key}", f"not a regular file: {found}")
        return found

    def database() -> Path | str:
        """A PostgreSQL URI (libpq's form, no password: that comes from a passfile or the
        environment), or the path of a SQLite file."""
        value = text("database")
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value):
            if not value.isprintable():
                raise ConfigError(
                    path, "collector.database", f"a URI with a control character ({value!a})"
                )
            try:
                return check_uri(value)
            except ValueError as exc:
                raise ConfigError(path, "collector.database", str(exc)) from exc
        return file("database")

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
        database=database() if "database" in table else data_dir / "collector.db",
        key=load_private(file("key")),
        ca=tls_file("ca"),
        cert=tls_file("cert"),
        client_key=tls_file("client_key"),
        retention_days=_days(table.get("retention_days", 0), path),
        limits=_limits(table, path),
        event_seq_window=_whole(table, path, "event_seq_window", EVENT_SEQ_WINDOW, 1, 10**9),
        instance=_instance(table, path),
    )


def _instance(table: dict[str, object], path: Path) -> str:
    value = table.get("instance")
    if value is None:
        return default_instance()
    if not isinstance(value, str) or not _INSTANCE.match(value):
        raise ConfigError(
            path,
            "collector.instance",
            f"must be 1-64 letters, digits, '.', '_' or '-', beginning with a letter or a "
            f"digit (got {shown(repr(value), 80)})",
        )
    return value


def _limits(table: dict[str, object], path: Path) -> UploadLimits:
    """What one device may cost the collector (docs/mqtt-api.md, "Limits")."""
    default = UploadLimits()
    hours = table.get("upload_expiry_hours", default.expire_after / 3600)
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours <= 8760:
        raise ConfigError(
            path, "collector.upload_expiry_hours", f"must be hours, 0-8760 (got {hours!r})"
        )
    return UploadLimits(
        max_bytes=_whole(table, path, "max_recording_bytes", default.max_bytes, 1, 1 << 40),
        max_open=_whole(table, path, "max_open_uploads", default.max_open, 1, 1000),
        max_holes=_whole(table, path, "max_upload_holes", default.max_holes, 0, 10**6),
        expire_after=float(hours) * 3600,
    )


def _whole(
    table: dict[str, object], path: Path, key: str, default: int, low: int, high: int
) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            path, f"collector.{key}", f"must be a whole number {low}-{high} (got {value!r})"
        )
    return value


def _days(value: object, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 36500:
        raise ConfigError(path, "collector.retention_days", f"must be days 0-36500 (got {value!r})")
    return float(value)
