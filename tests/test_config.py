"""Configuration: defaults, and errors that name file, key, line, expectation and value."""

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from linerec.call.consent import ConsentMode
from linerec.codec import Codec
from linerec.config import KEYS, load_config, parse_config
from linerec.errors import ConfigError
from linerec.resources import data_path
from linerec.wav import write_wav


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "linerec.toml"
    path.write_text(text)
    return path


def test_shipped_example_is_valid() -> None:
    config = load_config(data_path("linerec.example.toml"))
    assert [line.name for line in config.lines] == ["line1"]
    assert config.lines[0].consent is ConsentMode.NOTICE


def test_minimal_file_takes_defaults_and_the_pin_map(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[[line]]\ncapture_device = "plughw:1"\n'))
    line = config.lines[0]
    assert line.name == "line1"
    assert line.consent is ConsentMode.NOTICE
    assert (line.pins.hook, line.pins.ring, line.pins.led) == (17, 27, 22)  # hw/pinmap.toml
    assert line.audio.playback_device == "plughw:1"
    assert line.hook_debounce == 0.030
    assert config.store.codec is Codec.ULAW
    assert config.store.delay == 0.2


def test_empty_file_is_one_line_with_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert len(config.lines) == 1


def test_pin_used_twice_names_both_users(tmp_path: Path) -> None:
    path = write(tmp_path, "[[line]]\n\n[[line]]\nhook_pin = 27\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (
        str(caught.value)
        == f"{path}:4: line[1].hook_pin: pin 27 is already used by line[0].ring_pin"
    )


def test_unknown_key_is_named_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[store]\ndir = "/tmp/x"\ncodek = "ulaw"\n')
    with pytest.raises(
        ConfigError,
        match=r"linerec.toml:3: store.codek: unknown key \(known keys here: capacity, codec, delay_ms, dir, identity, max_age_days, recipients, warn_percent, when_full\)",
    ):
        load_config(path)


def test_wrong_type_says_what_was_expected_and_found(tmp_path: Path) -> None:
    path = write(tmp_path, '[[line]]\nrate = "48k"\n')
    with pytest.raises(
        ConfigError, match=r":2: line\[0\].rate: must be an integer \(got '48k', a string\)"
    ):
        load_config(path)


def test_rate_the_device_cannot_give(tmp_path: Path) -> None:
    path = write(tmp_path, "[[line]]\nrate = 22050\n")
    with pytest.raises(
        ConfigError,
        match=r"line\[0\].rate: must be one of 8000, 16000, 44100, 48000 Hz \(got 22050\)",
    ):
        load_config(path)


def test_impossible_choice(tmp_path: Path) -> None:
    path = write(tmp_path, '[[line]]\nconsent = "two-party"\n')
    with pytest.raises(
        ConfigError,
        match=r"line\[0\].consent: must be one of 'one-party', 'notice', 'beep', 'notice\+beep' \(got 'two-party'\)",
    ):
        load_config(path)


def test_notice_that_is_not_a_wav(tmp_path: Path) -> None:
    (tmp_path / "notice.wav").write_text("not audio")
    path = write(tmp_path, '[[line]]\nnotice = "notice.wav"\n')
    with pytest.raises(
        ConfigError, match=r":2: line\[0\].notice: is not a readable WAV file: .*not a WAV file"
    ):
        load_config(path)


def test_notice_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    write_wav(tmp_path / "mine.wav", np.zeros(800, dtype=np.int16), rate=16000)
    config = load_config(write(tmp_path, '[[line]]\nnotice = "mine.wav"\n'))
    assert config.lines[0].notice == tmp_path / "mine.wav"


def test_missing_notice_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[[line]]\nnotice = "/nonexistent/notice.wav"\n')
    with pytest.raises(ConfigError, match=r"notice: is not a readable WAV file: .*cannot read"):
        load_config(path)


def test_toml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[store]\ndir = "/tmp/x"\ncodec = ulaw\n')
    with pytest.raises(ConfigError, match=r"linerec.toml:3: not valid TOML"):
        load_config(path)


def test_flash_timing_must_be_ordered(tmp_path: Path) -> None:
    path = write(tmp_path, "[[line]]\nflash_min_ms = 1200\n")
    with pytest.raises(
        ConfigError,
        match=r"line\[0\].flash_max_ms: need hook_debounce_ms < flash_min_ms < flash_max_ms \(got 30 < 1200 < 1000\)",
    ):
        load_config(path)


def test_third_line_without_pins_in_the_pin_map(tmp_path: Path) -> None:
    path = write(tmp_path, "[[line]]\n[[line]]\n[[line]]\n")
    with pytest.raises(
        ConfigError, match=r":3: line\[2\].hook_pin: is required \(a BCM GPIO number\)"
    ):
        load_config(path)


def test_duplicate_line_names(tmp_path: Path) -> None:
    path = write(tmp_path, '[[line]]\nname = "a"\n[[line]]\nname = "a"\n')
    with pytest.raises(ConfigError, match=r"line\[1\].name: 'a' is already the name of line\[0\]"):
        load_config(path)


def test_pin_out_of_range(tmp_path: Path) -> None:
    path = write(tmp_path, "[[line]]\nled_pin = 40\n")
    with pytest.raises(
        ConfigError, match=r"line\[0\].led_pin: must be a BCM GPIO number 0-27 \(got 40\)"
    ):
        load_config(path)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: no such file"):
        load_config("/nonexistent/nope.toml")


def test_bad_pin_map_is_named(tmp_path: Path) -> None:
    pinmap = tmp_path / "pins.toml"
    pinmap.write_text("[board]\nstatus_led = 99\n")
    path = write(tmp_path, f'[hardware]\npinmap = "{pinmap}"\n')
    with pytest.raises(
        ConfigError,
        match=r"pins.toml:2: board.status_led: must be a BCM GPIO number 0-27 \(got 99\)",
    ):
        load_config(path)


def test_board_line_gets_the_talk_switch_and_the_board_beep_level(tmp_path: Path) -> None:
    line = load_config(write(tmp_path, "[[line]]\n")).lines[0]
    assert (line.pins.talk, line.beep_level_dbfs) == (6, -3)  # hw/pinmap.toml, hw/README.md


def test_usb_interface_line_has_no_talk_switch_and_a_quieter_beep(tmp_path: Path) -> None:
    line = load_config(write(tmp_path, '[[line]]\nhook_source = "audio"\n')).lines[0]
    assert (line.pins.talk, line.beep_level_dbfs) == (None, -12)
    line = load_config(write(tmp_path, '[[line]]\nhook_source = "audio"\ntalk_pin = 6\n')).lines[0]
    assert line.pins.talk == 6  # given: used


def test_talk_switch_out_of_range_in_the_pin_map_is_named(tmp_path: Path) -> None:
    pinmap = tmp_path / "pins.toml"
    pinmap.write_text(
        "[board]\nstatus_led = 5\n[[line]]\nhook_sense = 17\nring_sense = 27\n"
        "recording_led = 22\ntalk_switch = 40\n"
    )
    path = write(tmp_path, f'[hardware]\npinmap = "{pinmap}"\n')
    with pytest.raises(
        ConfigError,
        match=r"pins.toml:7: line\[0\].talk_switch: must be a BCM GPIO number 0-27 \(got 40\)",
    ):
        load_config(path)


def test_delay_line_must_outlast_the_debounce(tmp_path: Path) -> None:
    path = write(tmp_path, "[store]\ndelay_ms = 40\n[[line]]\nhook_debounce_ms = 30\n")
    with pytest.raises(
        ConfigError,
        match=r":2: store.delay_ms: must be at least hook_debounce_ms \+ 20 = 50 \(got 40\)",
    ):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[hardware]\nstatus_led_pin = 99\n",
            r"hardware.status_led_pin: must be a BCM GPIO number 0-27 \(got 99\)",
        ),
        (
            "[[line]]\nchannels = 1.7\n",
            r"line\[0\].channels: must be an integer \(got 1.7, a float\)",
        ),
        (
            "[[line]]\nchannels = 2\nchannel = 2\n",
            r"line\[0\].channel: must be 0..1 for channels = 2 \(got 2\)",
        ),
        (
            "[[line]]\nperiod_ms = 25\n",
            r"line\[0\].period_ms: must be one of 10, 20, 40 ms \(got 25\)",
        ),
        (
            '[store]\nrecipients = ["nope.pub"]\n',
            r"store.recipients\[0\]: no such file: .*nope.pub",
        ),
        (
            '[store]\nwhen_full = "panic"\n',
            r"store.when_full: must be one of 'overwrite', 'stop' \(got 'panic'\)",
        ),
    ],
)
def test_more_impossible_values(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


# -- one device identity: [device] id and [uplink] device_id ------------------------------------

UPLINK = '[uplink]\nbroker = "mqtt://127.0.0.1:1883"\nallow_plaintext = true\ncollector = "c.pub"\n'


def uplink_config(tmp_path: Path, text: str) -> Path:
    from linerec.store.keys import keygen

    keygen(tmp_path / "keys")
    (tmp_path / "c.pub").write_bytes((tmp_path / "keys" / "collector.pub").read_bytes())
    return write(tmp_path, text)


def test_uplink_device_id_alone_is_the_one_device_id(tmp_path: Path) -> None:
    config = load_config(uplink_config(tmp_path, UPLINK + 'device_id = "bar-dev-1"\n'))
    assert config.uplink is not None
    assert (config.device_id, config.uplink.device_id) == ("bar-dev-1", "bar-dev-1")


def test_uplink_device_id_defaults_to_the_device_id(tmp_path: Path) -> None:
    config = load_config(uplink_config(tmp_path, '[device]\nid = "box7"\n' + UPLINK))
    assert config.uplink is not None
    assert (config.device_id, config.uplink.device_id) == ("box7", "box7")


def test_uplink_device_id_equal_to_the_device_id_is_fine(tmp_path: Path) -> None:
    text = '[device]\nid = "box7"\n' + UPLINK + 'device_id = "box7"\n'
    config = load_config(uplink_config(tmp_path, text))
    assert config.uplink is not None and config.uplink.device_id == "box7"


def test_two_different_device_ids_are_refused_naming_both_keys(tmp_path: Path) -> None:
    path = uplink_config(tmp_path, '[device]\nid = "box7"\n' + UPLINK + 'device_id = "bar-dev-1"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}:7: uplink.device_id: 'bar-dev-1' differs from device.id 'box7' "
        "(one box has one id: give it once, as [device] id)"
    )


def test_reading_configurations_loads_no_sound_or_mqtt_library(tmp_path: Path) -> None:
    """The collector server has no sound card: reading either file must not load ALSA or paho."""
    import subprocess
    import sys

    from linerec.store.keys import keygen

    keygen(tmp_path / "keys")
    collector = tmp_path / "collector.toml"
    collector.write_text(
        '[collector]\nbroker = "mqtt://127.0.0.1:1883"\nallow_plaintext = true\n'
        'data_dir = "central"\nkey = "keys/collector.key"\n'
    )
    script = (
        "import sys\n"
        "from linerec.config import load_config\n"
        "from linerec.collector.config import load_collector_config\n"
        f"load_config({str(data_path('linerec.example.toml'))!r})\n"
        f"load_collector_config({str(collector)!r})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alsaaudio', 'paho')))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


# -- the annotated example: every key the parser reads, each with the parser's default ---------

_HEADER = re.compile(r"^(?:#\s*)?\[\[?\s*(\w+)\s*\]\]?\s*$")
_KEY = re.compile(r"^(#\s*)?(\w+)\s*=")
_MARKER = re.compile(r"#\s*default:")


@dataclass(frozen=True)
class Shown:
    table: str  # a KEYS table name
    key: str
    value: object
    commented: bool
    marked: bool  # `# default: ...` on the line: the value is an example, not the default
    line: int


def shown_keys(text: str) -> list[Shown]:
    """The keys the example shows, active or commented out, with the table each is under."""
    table, shown = "", []
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = header.group(1)
            shown.append(Shown("", table, None, line.startswith("#"), False, number))
            continue
        key = _KEY.match(line)
        if not key:
            continue
        body = line[len(key.group(1) or "") :]
        value = tomllib.loads(body)[key.group(2)]  # TOML itself drops the trailing comment
        after = body.split("=", 1)[1]
        shown.append(
            Shown(
                table, key.group(2), value, bool(key.group(1)), bool(_MARKER.search(after)), number
            )
        )
    return shown


def parser_defaults(tmp_path: Path) -> dict[str, object]:
    """What the parser reads and its defaults, for the example as it stands and with an
    [uplink] table added (the example has it commented out: it turns the uplink on)."""
    from linerec.store.keys import keygen

    keygen(tmp_path / "keys")
    text = data_path("linerec.example.toml").read_text()
    defaults: dict[str, object] = {}
    parse_config(tomllib.loads(text), data_path("linerec.example.toml"), text, defaults=defaults)
    with_uplink = text + '\n[uplink]\nbroker = "mqtts://x"\ncollector = "keys/collector.pub"\n'
    parse_config(tomllib.loads(with_uplink), tmp_path / "x.toml", with_uplink, defaults=defaults)
    return {re.sub(r"\[\d+\]", "", path): value for path, value in defaults.items()}


def test_the_example_shows_every_key_the_parser_reads(tmp_path: Path) -> None:
    shown = {(s.table, s.key) for s in shown_keys(data_path("linerec.example.toml").read_text())}
    read = {
        (".".join(path.split(".")[:-1]), path.split(".")[-1]) for path in parser_defaults(tmp_path)
    }
    accepted = {(table, key) for table, keys in KEYS.items() for key in keys}
    assert read == accepted  # the parser reads every key of its table, and only those
    assert accepted - shown == set()
    assert shown - accepted == set()  # and the example shows no key the parser does not know


def test_every_value_the_example_shows_as_a_default_is_the_parsers(tmp_path: Path) -> None:
    defaults = parser_defaults(tmp_path)
    checked = 0
    for s in shown_keys(data_path("linerec.example.toml").read_text()):
        if s.table == "":
            continue  # a table's header
        where = f"linerec.example.toml:{s.line}: {s.table}.{s.key}"
        if s.marked:
            continue  # no single default: the line says what it is
        assert not (s.commented and s.table != "uplink"), f"{where}: commented out, no marker"
        default = defaults[f"{s.table}.{s.key}"]
        assert s.value == default, f"{where}: shows {s.value!r}, the default is {default!r}"
        checked += 1
    assert checked >= 30


def test_the_example_as_it_stands_is_the_empty_file(tmp_path: Path) -> None:
    import dataclasses

    example = load_config(data_path("linerec.example.toml"))
    empty = load_config(write(tmp_path, ""))
    assert dataclasses.replace(example, path=empty.path) == empty


def test_config_check_takes_the_file_as_path_or_as_config_like_every_other_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from linerec.cli import main

    good = tmp_path / "linerec.toml"
    good.write_text('[device]\nid = "box1"\n')
    assert main(["config", "check", str(good)]) == 0
    assert main(["config", "check", "--config", str(good)]) == 0
    assert capsys.readouterr().out.count("ok: device box1") == 2
    both = tmp_path / "both.toml"
    both.write_text(
        '[device]\nid = "box1"\n'
        '[uplink]\nbroker = "mqtt://127.0.0.1:1"\nallow_plaintext = true\ndevice_id = "bar-dev-1"\n'
    )
    assert main(["config", "check", "--config", str(both)]) != 0
    error = capsys.readouterr().err
    assert "uplink.device_id" in error and "device.id" in error, error
