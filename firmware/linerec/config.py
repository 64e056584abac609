"""The configuration file: one TOML file, validated completely before anything starts.

Every error names the file, the key path (`line[1].hook_pin`), the line in the file where we
can find it, what was expected and what was found. Defaults are chosen so that a minimal
file is a few lines; pins default to the pin map in `hw/pinmap.toml`.
"""

from __future__ import annotations

import re
import socket
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from linerec.broker import Broker
from linerec.call.consent import ConsentMode
from linerec.codec import RATE, Codec
from linerec.errors import ConfigError, WavError
from linerec.files import MIB, UnreadableFile, expand, read_text
from linerec.hardware.pcm import DEVICE_RATES, FRAME_MS, PERIODS_MS, AudioSettings
from linerec.ids import DEVICE_ID_RULE, is_device_id
from linerec.resources import data_path
from linerec.wav import read_wav

DEFAULT_PATH = Path("/etc/linerec/linerec.toml")
DEFAULT_STORE = Path("/var/lib/linerec/ring")
BACKENDS = ("gpio", "sim")
BCM_PINS = range(0, 28)
_LINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}\Z")  # \Z: `$` would pass "line1\n"
MAX_FILE_BYTES = MIB  # a configuration, site file or pin map is a few KiB; more is not one
INT64 = range(-(1 << 63), 1 << 63)  # TOML integers (larger ones are not TOML)

# Every key the file may hold, by table ("" is the top level, "line" each [[line]]). The parser
# reads exactly these: a Table refuses any other key in the file, and a key the parser asks for
# that is not listed here is a bug caught on the first parse. The annotated example
# (data/linerec.example.toml) is checked against this table.
KEYS: dict[str, frozenset[str]] = {
    "": frozenset({"device", "hardware", "store", "sim", "uplink", "update", "line"}),
    "device": frozenset({"id"}),
    "hardware": frozenset({"backend", "pinmap", "status_led_pin"}),
    "store": frozenset(
        {
            "dir",
            "recipients",
            "codec",
            "delay_ms",
            "capacity",
            "when_full",
            "warn_percent",
            "max_age_days",
            "identity",
        }
    ),
    "sim": frozenset({"calls", "speed"}),
    "update": frozenset({"system_conf", "max_wait_s", "trial_s", "trial_timeout_s"}),
    "uplink": frozenset(
        {"broker", "allow_plaintext", "device_id", "collector", "ca", "cert", "key", "stream"}
    ),
    "line": frozenset(
        {
            "name",
            "label",
            "consent",
            "notice",
            "notice_gain_db",
            "beep_hz",
            "beep_level_dbfs",
            "capture_device",
            "playback_device",
            "rate",
            "channels",
            "channel",
            "period_ms",
            "hook_debounce_ms",
            "flash_min_ms",
            "flash_max_ms",
            "hook_source",
            "silence_ends_call_s",
            "opt_out_key",
            "opt_out_window_s",
            "pause_code",
            "resume_code",
            "pause_limit_s",
            "dial_gap_s",
            "dial_limit_s",
            "retention_days",
            "hook_pin",
            "hook_active_low",
            "ring_pin",
            "ring_active_low",
            "led_pin",
            "button_pin",
            "talk_pin",
        }
    ),
}


def default_pinmap() -> Path:
    """The pin map: installed with the package; in a source checkout, hw/pinmap.toml."""
    installed = data_path("pinmap.toml")
    if installed.is_file():
        return installed
    return Path(__file__).resolve().parents[2] / "hw" / "pinmap.toml"


@dataclass(frozen=True, slots=True, kw_only=True)
class LinePins:
    hook: int
    hook_active_low: bool
    ring: int
    ring_active_low: bool
    led: int
    button: int | None
    talk: int | None  # closes the board's photoMOS: the sound card's output to the line


@dataclass(frozen=True, slots=True, kw_only=True)
class LineConfig:
    index: int
    name: str
    label: str
    consent: ConsentMode
    notice: Path
    notice_gain_db: float
    beep_hz: float
    beep_level_dbfs: float
    audio: AudioSettings
    pins: LinePins
    hook_debounce: float
    flash_min: float
    flash_max: float
    hook_source: str  # "gpio": the hook-sense wire; "audio": decided from the audio
    silence_ends_call: float  # with hook_source = "audio"
    opt_out_key: str  # "" = no opt-out by key
    opt_out_window: float  # seconds after the notice in which the key still opts out
    pause_code: str
    resume_code: str
    pause_limit: float  # a pause resumes by itself after this many seconds
    dial_gap: float  # outbound: a longer pause between keys ends the dialling
    dial_limit: float  # outbound: dialling ends this long after pick-up at the latest
    retention_days: float  # 0 = [store] max_age_days


@dataclass(frozen=True, slots=True, kw_only=True)
class HardwareConfig:
    backend: str
    pinmap: Path
    status_led: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    dir: Path
    codec: Codec
    delay: float  # seconds of audio held back before the store
    recipients: tuple[Path, ...]  # collector .pub files recordings are encrypted to
    capacity: int  # bytes; 0 = 90 % of the file system the ring is on
    when_full: str  # "overwrite" or "stop"
    warn_fill: float  # 0..1
    max_age_days: float  # 0 = keep until evicted
    identity: Path  # the appliance's signing key


@dataclass(frozen=True, slots=True, kw_only=True)
class UplinkConfig:
    broker: Broker
    url: str
    device_id: str
    collector: Path  # the collector's .pub: checks its signed acks and commands
    ca: Path | None
    cert: Path | None
    key: Path | None
    stream: bool = True  # send each chunk of an open recording as soon as it is on the card


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    calls: tuple[Path, ...]
    speed: float  # 1.0 = real time; 0 = as fast as possible


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateConfig:
    system_conf: Path  # RAUC's system.conf: compatible, keyring, slots (docs/updates.md)
    max_wait: float  # seconds an installed update waits for every line to be idle
    trial_wait: float  # seconds of READY, with no uplink, before a new slot is marked good
    trial_timeout: float  # seconds a trial boot has to be marked good before it reboots


DEFAULT_UPDATE = UpdateConfig(
    system_conf=Path("/etc/rauc/system.conf"),
    max_wait=3600.0,
    trial_wait=120.0,
    trial_timeout=900.0,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    path: Path
    device_id: str
    hardware: HardwareConfig
    store: StoreConfig
    sim: SimConfig
    uplink: UplinkConfig | None = None
    lines: tuple[LineConfig, ...] = field(default_factory=tuple)
    update: UpdateConfig = DEFAULT_UPDATE

    def line(self, name: str) -> LineConfig | None:
        return next((line for line in self.lines if line.name == name), None)


T = TypeVar("T")


class Table:
    """One TOML table being read: takes keys with types and defaults, then refuses leftovers.

    With `keys` (a KEYS entry) the table knows every key it may hold: it refuses others by that
    list, and a take of an unlisted key is a bug in the parser."""

    def __init__(
        self,
        data: dict[str, Any],
        key: str,
        source: Source,
        keys: frozenset[str] | None = None,
    ) -> None:
        self._data = data
        self._key = key
        self._source = source
        self._keys = keys
        self._taken: set[str] = set()

    def path_of(self, name: str) -> str:
        return f"{self._key}.{name}" if self._key else name

    def error(self, name: str, message: str) -> ConfigError:
        return self._source.error(self.path_of(name), message)

    def take(self, name: str, kind: type[T] | tuple[type, ...], default: T) -> T:
        if self._keys is not None and name not in self._keys:
            raise RuntimeError(f"config parser: {self.path_of(name)} is not in config.KEYS")
        self._taken.add(name)
        if self._source.defaults is not None:
            self._source.defaults.setdefault(self.path_of(name), default)
        if name not in self._data:
            return default
        value = self._data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            expected = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            raise self.error(
                name, f"must be {expected} (got {_short(value)}, a {_toml_type(value)})"
            )
        if isinstance(value, int) and not isinstance(value, bool) and value not in INT64:
            raise self.error(
                name, f"is out of range: TOML integers are 64-bit (got {_short(value)})"
            )
        return value  # type: ignore[no-any-return]

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.take(name, str, default)
        if value not in choices:
            listed = ", ".join(repr(c) for c in choices)
            raise self.error(name, f"must be one of {listed} (got {value!r})")
        return value

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = float(self.take(name, (int, float), default))
        if not low <= value <= high:
            raise self.error(name, f"must be between {low:g} and {high:g} (got {value:g})")
        return value

    def path(self, name: str, default: Path) -> Path:
        value = self.take(name, str, str(default))
        if not value:
            raise self.error(name, "must be a path (got an empty string)")
        return self._source.resolve(value, self.path_of(name))

    def table(self, name: str, keys: frozenset[str] | None = None) -> Table:
        value = self.take(name, dict, {})
        return Table(value, self.path_of(name), self._source, keys)

    def given(self) -> bool:
        """Whether the file has this table at all."""
        return bool(self._data)

    def done(self) -> None:
        known_keys = self._taken if self._keys is None else self._keys
        unknown = sorted(set(self._data) - known_keys)
        if unknown:
            known = ", ".join(sorted(known_keys))
            raise self.error(unknown[0], f"unknown key (known keys here: {known})")
        if self._keys is not None and self._keys - self._taken:
            missing = ", ".join(sorted(self._keys - self._taken))
            raise RuntimeError(f"config parser: {self._key or 'top level'}: never read {missing}")


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "a table",
    list: "an array",
}


def _short(value: object) -> str:
    """A value for an error message: what it is, never a megabyte of it."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _toml_type(value: object) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        dict: "table",
        list: "array",
    }.get(type(value), type(value).__name__)


class Source:
    """The file being read, for error positions and relative paths."""

    def __init__(
        self, path: Path, text: str | None, defaults: dict[str, object] | None = None
    ) -> None:
        self.path = path
        self.text = text
        self.defaults = defaults  # if given: each key path read, and its default there

    def resolve(self, value: str, key: str = "") -> Path:
        """A path as written in the file (relative to the file); `key` names it in errors."""
        try:
            candidate = expand(value)
        except UnreadableFile as exc:
            raise self.error(key, str(exc)) from exc
        if candidate.is_absolute() or self.text is None:
            return candidate
        return (self.path.parent / candidate).resolve()

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.path, key, message, self.line_of(key))

    def line_of(self, key: str) -> int | None:
        """Find the line of `section[i].name` in the file text (tomllib gives no positions)."""
        if self.text is None:
            return None
        key = re.sub(r"\[\d+\]$", "", key)  # an array's entry: the line of the array
        match = re.fullmatch(r"(?:(\w+)(?:\[(\d+)\])?\.)?(\w+)", key)
        if not match:
            return None
        section, index, name = match.group(1), match.group(2), match.group(3)
        want_index = int(index) if index is not None else None
        current: str | None = None
        counts: dict[str, int] = {}
        assign = re.compile(rf"^\s*{re.escape(name)}\s*=")
        header = re.compile(r"^\s*(\[\[?)\s*([\w.]+)\s*\]\]?")
        for number, line in enumerate(self.text.splitlines(), start=1):
            head = header.match(line)
            if head:
                current = head.group(2)
                if head.group(1) == "[[":
                    counts[current] = counts.get(current, -1) + 1
                continue
            if (
                current == section
                and assign.match(line)
                and (want_index is None or counts.get(section, 0) == want_index)
            ):
                return number
            if section is None and current is None and assign.match(line):
                return number
        if section is not None and want_index is not None:  # the table itself
            seen = -1
            for number, line in enumerate(self.text.splitlines(), start=1):
                head = header.match(line)
                if head and head.group(2) == section and head.group(1) == "[[":
                    seen += 1
                    if seen == want_index:
                        return number
        return None


def load_config(path: Path | str) -> Config:
    """Read and validate a configuration file."""
    path = Path(path)
    data, text = read_toml(path)
    return parse_config(data, path, text)


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """A TOML file's data and text; errors name the file (and the line, where TOML gives it).

    Only a regular file of at most MAX_FILE_BYTES is read (files.py says why)."""
    try:
        text = read_text(path, limit=MAX_FILE_BYTES)
    except UnreadableFile as exc:
        reason = str(exc)
        raise ConfigError(
            path, "", reason if reason == "no such file" else f"cannot read: {reason}"
        ) from exc
    return parse_toml(text, path), text


def parse_toml(text: str, path: Path) -> dict[str, Any]:
    """TOML text as data; an error names `path` and, where TOML gives it, the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(str(exc))
        if line is None and "end of document" in str(exc):  # e.g. a string never closed
            line = max(1, len(text.splitlines()))
        raise ConfigError(path, "", f"not valid TOML: {exc}", line) from exc
    except RecursionError as exc:  # tomllib recurses once per level of nesting
        raise ConfigError(path, "", "not valid: arrays or tables nested too deeply") from exc


def _toml_error_line(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None


def parse_config(
    data: dict[str, Any],
    path: Path | str,
    text: str | None = None,
    *,
    defaults: dict[str, object] | None = None,
) -> Config:
    """Validate an already-parsed configuration (`text` gives error line numbers).

    `defaults`, if given, is filled with every key path read (`line[0].rate`) and the default
    it has there: what the annotated example is checked against."""
    source = Source(Path(path), text, defaults)
    top = Table(data, "", source, KEYS[""])

    device = top.table("device", KEYS["device"])
    device_id = _device_id(device, "id", _default_device_id())
    device.done()

    hardware = top.table("hardware", KEYS["hardware"])
    backend = hardware.choice("backend", BACKENDS, "gpio")
    pinmap_path = hardware.path("pinmap", default_pinmap())
    try:
        pinmap = load_pinmap(pinmap_path)
    except PinMapUnreadable as exc:
        raise hardware.error("pinmap", str(exc)) from exc
    status_led = _pin(hardware, "status_led_pin", pinmap.status_led)
    hardware.done()
    hardware_config = HardwareConfig(backend=backend, pinmap=pinmap_path, status_led=status_led)

    store = top.table("store", KEYS["store"])
    store_dir = store.path("dir", DEFAULT_STORE)
    recipients = store.take("recipients", list, [])
    for i, recipient in enumerate(recipients):
        if not isinstance(recipient, str) or not recipient:
            raise store.error(
                f"recipients[{i}]", f"must be a path to a .pub file (got {recipient!r})"
            )
        resolved = source.resolve(recipient, store.path_of(f"recipients[{i}]"))
        if not _is_file(resolved):
            raise store.error(f"recipients[{i}]", f"no such file: {resolved}")
    store_config = StoreConfig(
        dir=store_dir,
        codec=Codec(store.choice("codec", tuple(c.value for c in Codec), Codec.ULAW.value)),
        delay=store.number("delay_ms", 200, 0, 2000) / 1000,
        recipients=tuple(source.resolve(r) for r in recipients),
        capacity=int(store.number("capacity", 0, 0, 1 << 50)),
        when_full=store.choice("when_full", ("overwrite", "stop"), "overwrite"),
        warn_fill=store.number("warn_percent", 80, 1, 100) / 100,
        max_age_days=store.number("max_age_days", 0, 0, 36500),
        identity=store.path("identity", store_dir / "identity.key"),
    )
    store.done()

    sim = top.table("sim", KEYS["sim"])
    calls = sim.take("calls", list, [])
    for i, call in enumerate(calls):
        if not isinstance(call, str):
            raise sim.error(f"calls[{i}]", f"must be a path string (got {call!r})")
    sim_config = SimConfig(
        calls=tuple(source.resolve(c, sim.path_of(f"calls[{i}]")) for i, c in enumerate(calls)),
        speed=sim.number("speed", 1.0, 0, 1000),
    )
    sim.done()

    update = top.table("update", KEYS["update"])
    update_config = UpdateConfig(
        system_conf=update.path("system_conf", DEFAULT_UPDATE.system_conf),
        max_wait=update.number("max_wait_s", 3600, 0, 7 * 86400),
        trial_wait=update.number("trial_s", 120, 0, 86400),
        trial_timeout=update.number("trial_timeout_s", 900, 60, 86400),
    )
    update.done()

    uplink_config = None
    uplink = top.table("uplink", KEYS["uplink"])
    if "uplink" in data:  # the uplink is on when the file has the table
        uplink_config = _parse_uplink(uplink, device, store_config)
        device_id = uplink_config.device_id  # one id: headers, topics, certificate
    raw_lines = top.take("line", list, [{}])
    if not raw_lines:
        raise top.error("line", "needs at least one [[line]]")
    lines = tuple(_parse_line(i, entry, source, pinmap) for i, entry in enumerate(raw_lines))
    top.done()
    config = Config(
        path=Path(path),
        device_id=device_id,
        hardware=hardware_config,
        store=store_config,
        sim=sim_config,
        uplink=uplink_config,
        lines=lines,
        update=update_config,
    )
    _check_unique(config, source)
    slowest = max(line.hook_debounce for line in lines)
    if store_config.delay < slowest + FRAME_MS / 1000:
        # Audio must still be in the delay line when the hook change is confirmed, or the
        # first words after off hook are lost and dial tone is kept after a hang-up.
        raise source.error(
            "store.delay_ms",
            f"must be at least hook_debounce_ms + {FRAME_MS} = {round(slowest * 1000) + FRAME_MS} "
            f"(got {round(store_config.delay * 1000)})",
        )
    return config


def _device_id(table: Table, name: str, default: str) -> str:
    value = table.take(name, str, default)
    if not is_device_id(value):
        raise table.error(name, f"must be {DEVICE_ID_RULE}, not reserved (got {value!r})")
    return value


def _parse_uplink(table: Table, device: Table, store: StoreConfig) -> UplinkConfig:
    url = table.take("broker", str, "")
    allow = table.take("allow_plaintext", bool, False)
    try:
        broker = Broker.parse(url, allow_plaintext=allow)
    except ValueError as exc:
        raise table.error("broker", str(exc)) from exc
    # The box has one id. [uplink] device_id predates [device] id: alone it is that id; with
    # [device] id it must say the same, or recordings (sealed under one) would be refused by
    # the collector on topics named by the other.
    device_id = device.take("id", str, "")
    uplink_device = _device_id(table, "device_id", device_id or _default_device_id())
    if device_id and uplink_device != device_id:
        raise table.error(
            "device_id",
            f"{uplink_device!r} differs from {device.path_of('id')} {device_id!r} "
            "(one box has one id: give it once, as [device] id)",
        )

    def optional_file(name: str) -> Path | None:
        if name not in table._data:
            table.take(name, str, "")  # a known key, absent: no file
            return None
        path = table.path(name, Path())
        if not _is_file(path):
            raise table.error(name, f"no such file: {path}")
        return path

    ca, cert, key = optional_file("ca"), optional_file("cert"), optional_file("key")
    if broker.tls and (cert is None) != (key is None):
        raise table.error("cert", "cert and key go together (the device's client certificate)")
    stream = table.take("stream", bool, True)
    collector = optional_file("collector")
    if collector is None:
        if not store.recipients:
            raise table.error("collector", "needs the collector's .pub (or a [store] recipient)")
        collector = store.recipients[0]
    table.done()
    return UplinkConfig(
        broker=broker,
        url=url,
        device_id=uplink_device,
        collector=collector,
        ca=ca,
        cert=cert,
        key=key,
        stream=stream,
    )


def _default_device_id() -> str:
    name = socket.gethostname().split(".")[0].lower()
    return name if is_device_id(name) else "linerec"


@dataclass(frozen=True, slots=True, kw_only=True)
class PinMap:
    status_led: int
    lines: tuple[LinePins, ...]


class PinMapUnreadable(ConfigError):
    """The pin map file itself cannot be read (not: its content is wrong)."""


def _is_file(path: Path) -> bool:
    """Whether `path` is a regular file; a name too long or too deep is simply not one."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def load_pinmap(path: Path) -> PinMap:
    try:
        text = read_text(path, limit=MAX_FILE_BYTES)
    except UnreadableFile as exc:
        raise PinMapUnreadable(path, "", f"cannot read the pin map: {exc}") from exc
    try:
        data = parse_toml(text, path)
    except ConfigError as exc:
        raise ConfigError(path, "", f"pin map is {exc.message}", exc.line) from exc
    source = Source(path, text)
    top = Table(data, "", source)
    top.take("version", int, 1)
    board = top.table("board")
    status_led = _pin(board, "status_led", None)
    board.done()
    lines = []
    for i, entry in enumerate(top.take("line", list, [])):
        if not isinstance(entry, dict):
            raise source.error(f"line[{i}]", f"must be a table (got {_short(entry)})")
        table = Table(entry, f"line[{i}]", source)
        lines.append(
            LinePins(
                hook=_pin(table, "hook_sense", None),
                hook_active_low=table.take("hook_active_low", bool, True),
                ring=_pin(table, "ring_sense", None),
                ring_active_low=table.take("ring_active_low", bool, True),
                led=_pin(table, "recording_led", None),
                button=_optional_pin(table, "button"),
                talk=_optional_pin(table, "talk_switch"),
            )
        )
        table.done()
    top.done()
    return PinMap(status_led=status_led, lines=tuple(lines))


def _pin(table: Table, name: str, default: int | None) -> int:
    value = table.take(name, int, default)
    if value is None:
        raise table.error(name, "is required (a BCM GPIO number)")
    if value not in BCM_PINS:
        raise table.error(name, f"must be a BCM GPIO number 0-27 (got {value})")
    return value


def _optional_pin(table: Table, name: str, default: int | None = None) -> int | None:
    value = table.take(name, int, default)
    if value is not None and value not in BCM_PINS:
        raise table.error(name, f"must be a BCM GPIO number 0-27 (got {value})")
    return value


def _parse_line(index: int, entry: object, source: Source, pinmap: PinMap) -> LineConfig:
    key = f"line[{index}]"
    if not isinstance(entry, dict):
        raise source.error(key, f"must be a table (got {_short(entry)})")
    table = Table(entry, key, source, KEYS["line"])
    name = table.take("name", str, f"line{index + 1}")
    if not _LINE_NAME.match(name):
        raise table.error("name", f"must be 1-32 letters, digits, '_' or '-' (got {name!r})")
    mapped = pinmap.lines[index] if index < len(pinmap.lines) else None
    # "audio": a USB telephone interface instead of the linerec board. The board's talk switch
    # is then not there (no pin unless given), and the beep's default level is the one for an
    # unknown output rather than the one calibrated for the board (hw/README.md).
    hook_source = table.choice("hook_source", ("gpio", "audio"), "gpio")
    on_board = hook_source == "gpio"

    def pin(config_key: str, mapped_value: Callable[[LinePins], int | None]) -> int:
        value = _pin(table, config_key, mapped_value(mapped) if mapped else None)
        return value

    pins = LinePins(
        hook=pin("hook_pin", lambda m: m.hook),
        hook_active_low=table.take(
            "hook_active_low", bool, mapped.hook_active_low if mapped else True
        ),
        ring=pin("ring_pin", lambda m: m.ring),
        ring_active_low=table.take(
            "ring_active_low", bool, mapped.ring_active_low if mapped else True
        ),
        led=pin("led_pin", lambda m: m.led),
        button=_optional_pin(table, "button_pin", mapped.button if mapped else None),
        talk=_optional_pin(table, "talk_pin", mapped.talk if mapped and on_board else None),
    )

    consent = ConsentMode(table.choice("consent", tuple(m.value for m in ConsentMode), "notice"))
    notice = table.path("notice", data_path("notice-en.wav"))
    try:
        read_wav(notice)
    except WavError as exc:
        raise table.error("notice", f"is not a readable WAV file: {exc}") from exc

    rate = int(table.take("rate", int, RATE))
    if rate not in DEVICE_RATES:
        rates = ", ".join(map(str, DEVICE_RATES))
        raise table.error("rate", f"must be one of {rates} Hz (got {rate})")
    channels = table.take("channels", int, 1)
    if channels not in (1, 2):
        raise table.error("channels", f"must be 1 or 2 (got {channels})")
    channel = table.take("channel", int, 0)
    if not 0 <= channel < channels:
        raise table.error(
            "channel", f"must be 0..{channels - 1} for channels = {channels} (got {channel})"
        )
    period_ms = table.take("period_ms", int, FRAME_MS)
    if period_ms not in PERIODS_MS:
        raise table.error(
            "period_ms", f"must be one of {', '.join(map(str, PERIODS_MS))} ms (got {period_ms})"
        )
    capture = table.take("capture_device", str, "default")
    audio = AudioSettings(
        capture_device=capture,
        playback_device=table.take("playback_device", str, capture),
        rate=rate,
        channels=channels,
        channel=channel,
        period_ms=period_ms,
        where=key,
    )
    debounce = table.number("hook_debounce_ms", 30, 5, 500) / 1000
    flash_min = table.number("flash_min_ms", 100, 20, 2000) / 1000
    flash_max = table.number("flash_max_ms", 1000, 100, 5000) / 1000
    if not debounce < flash_min < flash_max:
        raise table.error(
            "flash_max_ms",
            f"need hook_debounce_ms < flash_min_ms < flash_max_ms "
            f"(got {debounce * 1000:g} < {flash_min * 1000:g} < {flash_max * 1000:g})",
        )
    line = LineConfig(
        index=index,
        name=name,
        label=table.take("label", str, ""),
        consent=consent,
        notice=notice,
        notice_gain_db=table.number("notice_gain_db", 0, -40, 20),
        beep_hz=table.number("beep_hz", 1400, 300, 3400),
        beep_level_dbfs=table.number("beep_level_dbfs", -3 if on_board else -12, -40, 0),
        audio=audio,
        pins=pins,
        hook_debounce=debounce,
        flash_min=flash_min,
        flash_max=flash_max,
        hook_source=hook_source,
        silence_ends_call=table.number("silence_ends_call_s", 8, 2, 600),
        opt_out_key=_keys(table, "opt_out_key", "", single=True),
        opt_out_window=table.number("opt_out_window_s", 5, 0, 60),
        pause_code=_keys(table, "pause_code", "*1"),
        resume_code=_keys(table, "resume_code", "*2"),
        pause_limit=table.number("pause_limit_s", 180, 5, 3600),
        dial_gap=table.number("dial_gap_s", 4, 1, 30),
        dial_limit=table.number("dial_limit_s", 30, 5, 300),
        retention_days=table.number("retention_days", 0, 0, 36500),
    )
    table.done()
    return line


def _keys(table: Table, name: str, default: str, *, single: bool = False) -> str:
    value = table.take(name, str, default)
    if any(key not in "0123456789*#ABCD" for key in value) or (single and len(value) > 1):
        expected = "one key" if single else "keys"
        raise table.error(name, f"must be {expected} of 0-9, *, #, A-D (got {value!r})")
    return value


def _pins_in_use(config: Config) -> Iterator[tuple[str, int]]:
    yield "hardware.status_led_pin", config.hardware.status_led
    for line in config.lines:
        key = f"line[{line.index}]"
        yield f"{key}.hook_pin", line.pins.hook
        yield f"{key}.ring_pin", line.pins.ring
        yield f"{key}.led_pin", line.pins.led
        if line.pins.button is not None:
            yield f"{key}.button_pin", line.pins.button
        if line.pins.talk is not None:
            yield f"{key}.talk_pin", line.pins.talk


def _check_unique(config: Config, source: Source) -> None:
    holders: dict[int, str] = {}
    for key, pin in _pins_in_use(config):
        if pin in holders:
            raise source.error(key, f"pin {pin} is already used by {holders[pin]}")
        holders[pin] = key
    names: dict[str, int] = {}
    for line in config.lines:
        if line.name in names:
            raise source.error(
                f"line[{line.index}].name",
                f"{line.name!r} is already the name of line[{names[line.name]}]",
            )
        names[line.name] = line.index
