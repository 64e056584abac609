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

from linerec.call.consent import ConsentMode
from linerec.codec import Codec
from linerec.errors import ConfigError, WavError
from linerec.hardware.audio import DEVICE_RATES, FRAME_MS, PERIODS_MS, AudioSettings
from linerec.ids import DEVICE_ID as DEVICE_ID  # enroll.py reads it here
from linerec.ids import DEVICE_ID_RULE, is_device_id
from linerec.mqttapi import Broker
from linerec.resources import data_path
from linerec.wav import read_wav

DEFAULT_PATH = Path("/etc/linerec/linerec.toml")
DEFAULT_STORE = Path("/var/lib/linerec/ring")
BACKENDS = ("gpio", "sim")
BCM_PINS = range(0, 28)
_LINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


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


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    calls: tuple[Path, ...]
    speed: float  # 1.0 = real time; 0 = as fast as possible


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    path: Path
    device_id: str
    hardware: HardwareConfig
    store: StoreConfig
    sim: SimConfig
    uplink: UplinkConfig | None = None
    lines: tuple[LineConfig, ...] = field(default_factory=tuple)

    def line(self, name: str) -> LineConfig | None:
        return next((line for line in self.lines if line.name == name), None)


T = TypeVar("T")


class Table:
    """One TOML table being read: takes keys with types and defaults, then refuses leftovers."""

    def __init__(self, data: dict[str, Any], key: str, source: Source) -> None:
        self._data = data
        self._key = key
        self._source = source
        self._taken: set[str] = set()

    def path_of(self, name: str) -> str:
        return f"{self._key}.{name}" if self._key else name

    def error(self, name: str, message: str) -> ConfigError:
        return self._source.error(self.path_of(name), message)

    def take(self, name: str, kind: type[T] | tuple[type, ...], default: T) -> T:
        self._taken.add(name)
        if name not in self._data:
            return default
        value = self._data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            expected = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            raise self.error(name, f"must be {expected} (got {value!r}, a {_toml_type(value)})")
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
        return self._source.resolve(value)

    def table(self, name: str) -> Table:
        value = self.take(name, dict, {})
        return Table(value, self.path_of(name), self._source)

    def given(self) -> bool:
        """Whether the file has this table at all."""
        return bool(self._data)

    def done(self) -> None:
        unknown = sorted(set(self._data) - self._taken)
        if unknown:
            known = ", ".join(sorted(self._taken))
            raise self.error(unknown[0], f"unknown key (known keys here: {known})")


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "a table",
    list: "an array",
}


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

    def __init__(self, path: Path, text: str | None) -> None:
        self.path = path
        self.text = text

    def resolve(self, value: str) -> Path:
        candidate = Path(value).expanduser()
        if candidate.is_absolute() or self.text is None:
            return candidate
        return (self.path.parent / candidate).resolve()

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.path, key, message, self.line_of(key))

    def line_of(self, key: str) -> int | None:
        """Find the line of `section[i].name` in the file text (tomllib gives no positions)."""
        if self.text is None:
            return None
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
    """A TOML file's data and text; errors name the file (and the line, where TOML gives it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(path, "", "no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", f"cannot read: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(str(exc))
        raise ConfigError(path, "", f"not valid TOML: {exc}", line) from exc
    return data, text


def _toml_error_line(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None


def parse_config(data: dict[str, Any], path: Path | str, text: str | None = None) -> Config:
    """Validate an already-parsed configuration (`text` gives error line numbers)."""
    source = Source(Path(path), text)
    top = Table(data, "", source)

    device = top.table("device")
    device_id = device.take("id", str, _default_device_id())
    if not is_device_id(device_id):
        raise device.error("id", f"must be {DEVICE_ID_RULE}, not reserved (got {device_id!r})")
    device.done()

    hardware = top.table("hardware")
    backend = hardware.choice("backend", BACKENDS, "gpio")
    pinmap_path = hardware.path("pinmap", default_pinmap())
    pinmap = load_pinmap(pinmap_path)
    status_led = _pin(hardware, "status_led_pin", pinmap.status_led)
    hardware.done()
    hardware_config = HardwareConfig(backend=backend, pinmap=pinmap_path, status_led=status_led)

    store = top.table("store")
    store_dir = store.path("dir", DEFAULT_STORE)
    recipients = store.take("recipients", list, [])
    for i, recipient in enumerate(recipients):
        if not isinstance(recipient, str) or not recipient:
            raise store.error(
                f"recipients[{i}]", f"must be a path to a .pub file (got {recipient!r})"
            )
        if not source.resolve(recipient).is_file():
            raise store.error(f"recipients[{i}]", f"no such file: {source.resolve(recipient)}")
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

    sim = top.table("sim")
    calls = sim.take("calls", list, [])
    for i, call in enumerate(calls):
        if not isinstance(call, str):
            raise sim.error(f"calls[{i}]", f"must be a path string (got {call!r})")
    sim_config = SimConfig(
        calls=tuple(source.resolve(c) for c in calls), speed=sim.number("speed", 1.0, 0, 1000)
    )
    sim.done()

    uplink_config = None
    if "uplink" in data:
        uplink_config = _parse_uplink(top.table("uplink"), device_id, store_config)
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


def _parse_uplink(table: Table, device_id: str, store: StoreConfig) -> UplinkConfig:
    url = table.take("broker", str, "")
    allow = table.take("allow_plaintext", bool, False)
    try:
        broker = Broker.parse(url, allow_plaintext=allow)
    except ValueError as exc:
        raise table.error("broker", str(exc)) from exc
    uplink_device = table.take("device_id", str, device_id)
    if not is_device_id(uplink_device):
        raise table.error(
            "device_id", f"must be {DEVICE_ID_RULE}, not reserved (got {uplink_device!r})"
        )

    def optional_file(name: str) -> Path | None:
        if name not in table._data:
            return None
        path = table.path(name, Path())
        if not path.is_file():
            raise table.error(name, f"no such file: {path}")
        return path

    ca, cert, key = optional_file("ca"), optional_file("cert"), optional_file("key")
    if broker.tls and (cert is None) != (key is None):
        raise table.error("cert", "cert and key go together (the device's client certificate)")
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
    )


def _default_device_id() -> str:
    name = socket.gethostname().split(".")[0].lower()
    return name if is_device_id(name) else "linerec"


@dataclass(frozen=True, slots=True, kw_only=True)
class PinMap:
    status_led: int
    lines: tuple[LinePins, ...]


def load_pinmap(path: Path) -> PinMap:
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read the pin map: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            path, "", f"pin map is not valid TOML: {exc}", _toml_error_line(str(exc))
        ) from exc
    source = Source(path, text)
    top = Table(data, "", source)
    top.take("version", int, 1)
    board = top.table("board")
    status_led = _pin(board, "status_led", None)
    board.done()
    lines = []
    for i, entry in enumerate(top.take("line", list, [])):
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
        raise source.error(key, f"must be a table (got {entry!r})")
    table = Table(entry, key, source)
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

    rate = int(table.take("rate", int, 8000))
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
