"""Inputs an attacker or a slip of the keyboard makes (issue 13, defect 11): each one ends in a
one-line error that names the file and the key, step or byte, at a bounded cost; never in a
traceback, and never by reading until the memory or the disk is gone.

Every command runs in a forked child under a memory limit (tests/bounded.py), so a reader that
allocates without bound fails here instead of taking the machine down.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bounded import assert_refused, cli
from calls import call_info
from linerec.codec import Codec
from linerec.store.format import RecordType, frame, json_body, pad_to_block, scan
from linerec.store.keys import keygen, load_or_create_identity, load_private, load_public
from linerec.store.ring import RingStore
from linerec.store.seal import sign_end
from linerec.wav import write_wav

# -- linerec config check ----------------------------------------------------------------------


def check(tmp_path: Path, text: str | bytes) -> Any:
    path = tmp_path / "c.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return cli(["config", "check", str(path)])


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[[line]]\nhook_debounce_ms = 1" + "0" * 400 + "\n", "line[0].hook_debounce_ms"),
        ("[store]\ncapacity = 1" + "0" * 40 + "\n", "store.capacity"),
        ("[[line]]\nrate = 1" + "0" * 40 + "\n", "line[0].rate"),
        ("[hardware]\nstatus_led_pin = -1" + "0" * 40 + "\n", "hardware.status_led_pin"),
    ],
)
def test_config_huge_numbers_name_their_key(tmp_path: Path, text: str, key: str) -> None:
    assert_refused(check(tmp_path, text), "c.toml:2:", key)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[store]\ndir = "~nosuchuser/ring"\n', "store.dir"),
        ('[store]\ndir = "/tmp/a\\u0000b"\n', "store.dir"),
        ('[store]\nrecipients = ["a\\u0000.pub"]\n', "store.recipients[0]"),
        ('[store]\nrecipients = ["~nosuchuser/c.pub"]\n', "store.recipients[0]"),
        ('[hardware]\npinmap = "~nosuchuser/pinmap.toml"\n', "hardware.pinmap"),
        ('[hardware]\npinmap = "x\\u0000y"\n', "hardware.pinmap"),
        ('[[line]]\nnotice = "n\\u0000.wav"\n', "line[0].notice"),
        ('[sim]\ncalls = ["~nosuchuser/call.toml"]\n', "sim.calls[0]"),
    ],
)
def test_config_impossible_paths_name_their_key(tmp_path: Path, text: str, key: str) -> None:
    assert_refused(check(tmp_path, text), "c.toml:2:", key)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[hardware]\npinmap = "a\\nb"\n', "hardware.pinmap"),
        ('[[line]]\nnotice = "n\\r\\n.wav"\n', "line[0].notice"),
        ('[[line]]\nnotice = "n\\u2028x.wav"\n', "line[0].notice"),
    ],
)
def test_config_a_path_with_a_line_break_is_named_in_one_line(
    tmp_path: Path, text: str, key: str
) -> None:
    assert_refused(check(tmp_path, text), "c.toml:2:", key)


def test_config_file_name_too_long(tmp_path: Path) -> None:
    long = "x" * 300
    assert_refused(check(tmp_path, f'[hardware]\npinmap = "{long}"\n'), "hardware.pinmap")
    assert_refused(cli(["config", "check", str(tmp_path / long)]), long)


def test_config_pinmap_that_is_not_utf8(tmp_path: Path) -> None:
    pinmap = tmp_path / "pins.toml"
    pinmap.write_bytes(b"[board]\nstatus_led = 4 # \xff\xfe\n")
    line = assert_refused(check(tmp_path, f'[hardware]\npinmap = "{pinmap}"\n'), str(pinmap))
    assert "UTF-8" in line


def test_config_that_is_not_utf8(tmp_path: Path) -> None:
    assert "UTF-8" in assert_refused(check(tmp_path, b"[store]\n# \xff\n"), "c.toml")


@pytest.mark.parametrize(
    "text",
    [
        "x = " + "[" * 5000 + "]" * 5000 + "\n",
        "x = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n",
    ],
)
def test_config_nested_too_deeply(tmp_path: Path, text: str) -> None:
    assert "nested" in assert_refused(check(tmp_path, text), "c.toml")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "fifo", "."])
def test_config_pinmap_that_is_not_a_regular_file(tmp_path: Path, device: str) -> None:
    if device == "fifo":
        device = str(tmp_path / "fifo")
        os.mkfifo(device)  # nobody writes it: opening it to read would wait for ever
    line = assert_refused(check(tmp_path, f'[hardware]\npinmap = "{device}"\n'), "hardware.pinmap")
    assert "not a regular file" in line


def test_config_itself_not_a_regular_file(tmp_path: Path) -> None:
    assert "not a regular file" in assert_refused(
        cli(["config", "check", "/dev/zero"]), "/dev/zero"
    )


def test_config_too_large_is_refused_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    with open(big, "wb") as file:
        file.truncate(4 << 30)  # sparse: costs no disk, would cost 4 GiB of memory to read
    assert "larger than" in assert_refused(cli(["config", "check", str(big)]), "big.toml")
    pinmap = f'[hardware]\npinmap = "{big}"\n'
    assert "larger than" in assert_refused(check(tmp_path, pinmap), "hardware.pinmap")


# -- linerec simulate ------------------------------------------------------------------------


def simulate(tmp_path: Path, steps: str, *, calls: int = 1) -> Any:
    path = tmp_path / "call.toml"
    path.write_text(("[[call]]\n" + steps) * calls)
    return cli(["simulate", str(path), "--store", str(tmp_path / "store")])


@pytest.mark.parametrize(
    ("step", "key"),
    [
        ('callerid = "' + "5" * 10_000 + '"', "call[0].step[0].callerid"),
        ('callerid = "' + "5" * 21 + '"', "call[0].step[0].callerid"),
        ('callerid = "5551234567"\nname = "Ωmega"', "call[0].step[0].name"),
        ('callerid = "5551234567"\nname = "tab\\there"', "call[0].step[0].name"),
        ('callerid = "5551234567"\nname = "Bob\\n"', "call[0].step[0].name"),
        ('callerid = "5551234567"\nname = "' + "N" * 16 + '"', "call[0].step[0].name"),
        (
            'callerid = "5551234567"\nstandard = "v23"\nname = "' + "N" * 51 + '"',
            "call[0].step[0].name",
        ),
        ('say = "caller"\nseconds = nan', "call[0].step[0].seconds"),
        ('say = "caller"\nseconds = inf', "call[0].step[0].seconds"),
        ('say = "caller"\nlevel_db = nan', "call[0].step[0].level_db"),
        ("tone = 440\nseconds = 1e9", "call[0].step[0].seconds"),
        ("tone = 440\nseconds = 1\nlevel_dbfs = 1e300", "call[0].step[0].level_dbfs"),
        ("at = 1e12\nwait = 1", "call[0].step[0].at"),
        ("at = nan\nwait = 1", "call[0].step[0].at"),
        ("off_hook = true\nbounce_ms = 1e12", "call[0].step[0].bounce_ms"),
        ('dtmf = "1"\ngap_ms = 1e12', "call[0].step[0].gap_ms"),
        ('dtmf = "1"\ntone_ms = 1e12', "call[0].step[0].tone_ms"),
        ('dtmf = "' + "1" * 200_000 + '"', "call[0].step[0].dtmf"),
        ("wait = nan", "call[0].step[0].wait"),
        ("wait = 1\nnoise_dbfs = nan", "call[0].step[0].noise_dbfs"),
        ("overrun = inf", "call[0].step[0].overrun"),
        ('callerid = "5551234567"\nlevel_dbfs = -1e400', "call[0].step[0].level_dbfs"),
    ],
)
def test_simulate_bounds_every_value(tmp_path: Path, step: str, key: str) -> None:
    assert_refused(simulate(tmp_path, "[[call.step]]\n" + step + "\n"), "call.toml", key)
    assert not (tmp_path / "store").exists()  # refused before anything is written


def test_a_line_name_is_checked_to_its_end(tmp_path: Path) -> None:
    """`$` matches before a final newline: "line1\\n" would name files and topics."""
    refused = simulate(tmp_path, 'line = "line1\\n"\n[[call.step]]\nring = 1\n')
    assert_refused(refused, "call.toml", "call[0].line")
    assert_refused(check(tmp_path, '[[line]]\nname = "line1\\n"\n'), "c.toml:2:", "line[0].name")


def test_simulate_bounds_a_call_files_total_duration(tmp_path: Path) -> None:
    # Each wait is allowed; together they pass the four hours a script may last.
    steps = "[[call.step]]\nwait = 5000\n" * 3
    line = assert_refused(simulate(tmp_path, steps), "call.toml", "call[0].step[2]")
    assert "14400" in line
    assert not (tmp_path / "store").exists()


def test_simulate_bounds_the_total_over_calls_on_one_line(tmp_path: Path) -> None:
    line = assert_refused(
        simulate(tmp_path, "[[call.step]]\nwait = 5000\n", calls=3), "call.toml", "call[2]"
    )
    assert "14400" in line


def test_simulate_accepts_the_limits_of_the_standards(tmp_path: Path) -> None:
    from linerec.sim.callfile import load_call_file

    path = tmp_path / "call.toml"
    path.write_text(
        '[[call]]\n[[call.step]]\ncallerid = "' + "1" * 20 + '"\nname = "' + "N" * 15 + '"\n'
        '[[call.step]]\ncallerid = "5"\nstandard = "v23"\nname = "Zoë ' + "n" * 46 + '"\n'
    )
    first, second = load_call_file(path)[0].steps
    assert first.options["name"] == "N" * 15
    assert len(second.options["name"]) == 50


# -- recordings: validly signed files with odd headers ---------------------------------------


@pytest.fixture
def ring(tmp_path: Path) -> RingStore:
    keygen(tmp_path / "keys")
    return RingStore(
        tmp_path / "ring",
        recipients=[load_public(tmp_path / "keys" / "collector.pub")],
        identity=load_or_create_identity(tmp_path / "ring" / "identity.key"),
        device_id="box1",
    )


def record(ring: RingStore, seconds: float = 1.0) -> Path:
    writer = ring.begin(call_info(started_at=datetime(2026, 11, 25, 9, 0, tzinfo=UTC)))
    writer.write(np.zeros(round(seconds * 8000), dtype=np.int16))
    return writer.seal(ended_by="hang-up").path


def resign(ring: RingStore, path: Path, change: Callable[[dict[str, Any]], object]) -> None:
    """Rewrite the recording's header with `change(header)` and sign it again with the ring's
    identity: a file whose signature holds and whose header is whatever the test wants."""
    records = list(scan(path.read_bytes()))
    header = json.loads(records[0].body)
    body = json.dumps(change(header)).encode()
    out = frame(RecordType.HEADER, body)
    for record in records[1:]:
        if record.type is RecordType.PAD:
            out += pad_to_block(len(out))
        elif record.type is RecordType.TRAILER:
            trailer = {k: v for k, v in json.loads(record.body).items() if k != "sig"}
            trailer["digest"] = hashlib.sha256(out).hexdigest()
            signed = sign_end(
                ring.identity, RecordType.TRAILER, hashlib.sha256(body).digest(), trailer
            )
            out += frame(RecordType.TRAILER, json_body(signed))
        else:
            out += frame(record.type, record.body, record.flags)
    path.write_bytes(out)


def without(key: str) -> Callable[[dict[str, Any]], object]:
    return lambda header: {k: v for k, v in header.items() if k != key}


def setting(key: str, value: object) -> Callable[[dict[str, Any]], object]:
    return lambda header: {**header, key: value}


ODD_HEADERS = [
    ("codec", without("codec")),
    ("codec", setting("codec", "mp3")),
    ("codec", setting("codec", ["ulaw"])),
    ("recipients", setting("recipients", "everyone")),
    ("recipients", setting("recipients", [1, 2])),
    ("recipients", setting("recipients", [{"kid": 5, "epk": [], "wrapped": None}])),
    ("rate", setting("rate", 0)),
    ("rate", setting("rate", "8000")),
    ("seq", setting("seq", "one")),
    ("seq", setting("seq", 10**40)),
    ("seq", without("seq")),
    ("retention_days", setting("retention_days", 10**400)),
    ("retention_days", setting("retention_days", -(10**400))),
    # `$` matches before a final newline: each field is checked to its very end
    ("device", setting("device", "box1\n")),
    ("id", setting("id", "box1-00000001-20261125T090000Z-line1\n")),
    ("line", setting("line", "line1\n")),
    ("prev", setting("prev", "0" * 64 + "\n")),
    (
        "recipients[0].kid",
        lambda h: {**h, "recipients": [{**h["recipients"][0], "kid": "0" * 16 + "\n"}]},
    ),
    # the one device id rule (linerec.ids), as at the collector
    ("device", setting("device", "Box1")),
    ("device", setting("device", "x" * 64)),
    ("id", setting("id", "../../escaped")),
    ("id", setting("id", 42)),
    ("started_at", setting("started_at", "yesterday")),
    ("retention_days", setting("retention_days", "forever")),
    ("line", setting("line", {"a": 1})),
    ("prev", setting("prev", 7)),
    ("v", setting("v", 3)),
    ("header", lambda header: [header]),
]


@pytest.mark.parametrize(("key", "change"), ODD_HEADERS)
def test_decrypt_list_verify_refuse_an_odd_signed_header(
    tmp_path: Path, ring: RingStore, key: str, change: Callable[[dict[str, Any]], object]
) -> None:
    path = record(ring)
    resign(ring, path, change)
    field = f"header.{key}" if key != "header" else "JSON object"
    decrypt = cli(
        [
            "decrypt",
            str(path),
            "--key",
            str(tmp_path / "keys" / "collector.key"),
            "-o",
            str(tmp_path / "out.wav"),
        ]
    )
    assert_refused(decrypt, path.name, field, status=1)
    assert not (tmp_path / "out.wav").exists()
    listing = cli(["store", "list", str(tmp_path / "ring")])
    assert_refused(listing, path.name, field, status=1)
    verify = cli(["store", "verify", str(tmp_path / "ring")])
    assert_refused(verify, path.name, field, status=1)
    assert not (tmp_path / "escaped.ack").exists()


def test_verify_names_a_huge_sequence_gap_as_a_range(tmp_path: Path, ring: RingStore) -> None:
    record(ring)
    second = record(ring)
    big = 10**15
    resign(ring, second, lambda header: {**header, "seq": big, "prev": ""})
    verify = cli(["store", "verify", str(tmp_path / "ring")])  # a list of 10^15 ints: MemoryError
    line = assert_refused(verify, second.name, status=1)
    assert f"2..{big - 1}" in line


def test_verify_gaps_are_ranges_around_logged_deletions(tmp_path: Path, ring: RingStore) -> None:
    record(ring)
    last = record(ring)
    resign(ring, last, lambda header: {**header, "seq": 10})
    with open(tmp_path / "ring" / "ring.log", "a") as log:
        for seq in (3, 4, 7):
            log.write(
                json.dumps(
                    {"event": "evicted", "id": f"x{seq}", "seq": seq, "header_hash": "0" * 64}
                )
                + "\n"
            )
    verify = cli(["store", "verify", str(tmp_path / "ring")])
    line = assert_refused(verify, last.name, status=1)
    assert "recordings 2..2, 5..6, 8..9 before it" in line


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("header.codec", without("codec")),
        ("header.retention_days", setting("retention_days", 10**400)),
        ("header.device", setting("device", "box1\n")),
    ],
)
def test_the_store_opens_quarantines_an_odd_recording_and_records_on(
    tmp_path: Path, ring: RingStore, field: str, change: Callable[[dict[str, Any]], object]
) -> None:
    good = record(ring)
    odd = record(ring)
    resign(ring, odd, change)
    store = RingStore(
        tmp_path / "ring", recipients=ring.recipients, identity=ring.identity, device_id="box1"
    )
    assert store.recover() == []
    moved = tmp_path / "ring" / "quarantine" / odd.name
    assert moved.exists() and not odd.exists()
    assert field in (tmp_path / "ring" / "quarantine" / f"{odd.name}.why").read_text()
    assert [entry.path for entry in store.entries.values()] == [good]
    third = record(store)  # and it records on, continuing the chain
    assert store.entries[third.name.removesuffix(".lrec")].seq == 3
    again = RingStore(
        tmp_path / "ring", recipients=ring.recipients, identity=ring.identity, device_id="box1"
    )
    assert again.recover() == [] and sorted(e.path for e in again.entries.values()) == [good, third]


def test_quarantine_emits_a_store_fault(tmp_path: Path, ring: RingStore) -> None:
    from linerec.store.ring import RecordingQuarantined

    odd = record(ring)
    resign(ring, odd, setting("seq", "one"))
    events: list[object] = []
    store = RingStore(
        tmp_path / "ring",
        recipients=ring.recipients,
        identity=ring.identity,
        device_id="box1",
        on_event=events.append,
    )
    assert store.recover() == []
    (event,) = events
    assert isinstance(event, RecordingQuarantined)
    assert event.path == tmp_path / "ring" / "quarantine" / odd.name
    assert "header.seq" in event.reason


def test_linerec_run_starts_with_an_odd_recording_in_its_ring(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    keygen(tmp_path / "keys")
    ring = RingStore(
        tmp_path / "ring",
        recipients=[load_public(tmp_path / "keys" / "collector.pub")],
        identity=load_or_create_identity(tmp_path / "ring" / "identity.key"),
        device_id="box1",
    )
    odd = record(ring)
    resign(ring, odd, without("codec"))
    (tmp_path / "call.toml").write_text("[[call]]\n[[call.step]]\nwait = 30\n")
    config = tmp_path / "linerec.toml"
    config.write_text(
        f'[hardware]\nbackend = "sim"\n[store]\ndir = "{tmp_path / "ring"}"\n'
        'recipients = ["keys/collector.pub"]\n[sim]\ncalls = ["call.toml"]\nspeed = 1.0\n'
        '[[line]]\nconsent = "one-party"\n'
    )
    daemon = subprocess.Popen(
        [sys.executable, "-m", "linerec.cli", "run", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert daemon.stderr is not None
        seen = ""
        for line in daemon.stderr:  # wait for the fault, bounded by the daemon's own life
            seen += line
            if "fault" in line or "Traceback" in line:
                break
        daemon.send_signal(signal.SIGTERM)
        rest = daemon.communicate(timeout=10)[1]
    finally:
        daemon.kill()
    assert daemon.returncode == 0, seen + rest
    assert "kind=store" in seen and "header.codec" in seen
    assert (tmp_path / "ring" / "quarantine" / odd.name).exists()


# -- linerec analyze ---------------------------------------------------------------------------


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def chunk(name: bytes, body: bytes) -> bytes:
    return name + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b"")


def fmt(rate: int = 8000, channels: int = 1, bits: int = 16, tag: int = 1) -> bytes:
    block = bits // 8 * channels
    body = struct.pack(
        "<HHIIHH", tag, channels, rate, rate * block % (1 << 32), block % (1 << 16), bits
    )
    return chunk(b"fmt ", body)


SILENCE = chunk(b"data", bytes(1600))


def analyze(tmp_path: Path, data: bytes) -> Any:
    path = tmp_path / "in.wav"
    path.write_bytes(data)
    return cli(["analyze", str(path)])


@pytest.mark.parametrize(
    "extra",
    [
        chunk(b"cue ", struct.pack("<I", 1000)),  # says 1000 points, holds none
        chunk(b"cue ", b"\x01"),  # too short for its count
        chunk(b"LIST", b"adtl" + b"labl" + struct.pack("<I", 2) + b"ab"),  # a label with no id
        chunk(b"LIST", b"adtl" + b"labl" + struct.pack("<I", 99)),  # runs past its LIST
        chunk(b"LIST", b"ad"),
    ],
)
def test_analyze_damaged_cue_and_list_chunks(tmp_path: Path, extra: bytes) -> None:
    run = analyze(tmp_path, riff(fmt(), extra, SILENCE))
    if run.status == 0:
        return  # an unreadable marker chunk may be skipped: the audio is still there
    assert_refused(run, "in.wav", "byte")


def test_analyze_skips_unknown_chunks_of_odd_size(tmp_path: Path) -> None:
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.int16)
    data = riff(
        chunk(b"junk", b"xyz"), fmt(), chunk(b"LIST", b"INFOabc"), chunk(b"data", tone.tobytes())
    )
    path = tmp_path / "odd.wav"
    path.write_bytes(data)
    from linerec.wav import read_wav

    assert np.array_equal(read_wav(path).mono, tone)


@pytest.mark.parametrize(
    ("wav", "needle"),
    [
        (riff(fmt(rate=1), SILENCE), "1 Hz"),
        (riff(fmt(rate=7999), SILENCE), "7999 Hz"),
        (riff(fmt(rate=4_000_000_000), SILENCE), "Hz"),
        (riff(fmt(channels=0), SILENCE), "channels"),
        (riff(fmt(channels=65535), SILENCE), "channels"),
        (riff(fmt(bits=12), SILENCE), "bits"),
    ],
)
def test_analyze_refuses_formats_it_does_not_read(tmp_path: Path, wav: bytes, needle: str) -> None:
    assert_refused(analyze(tmp_path, wav), "in.wav", needle)


def test_analyze_too_large_or_not_a_file(tmp_path: Path) -> None:
    big = tmp_path / "big.wav"
    with open(big, "wb") as file:
        file.truncate(8 << 30)
    assert "larger than" in assert_refused(cli(["analyze", str(big)]), "big.wav")
    assert "not a regular file" in assert_refused(cli(["analyze", "/dev/zero"]), "/dev/zero")


def test_analyze_reads_every_documented_rate(tmp_path: Path) -> None:
    for rate in (8000, 11025, 16000, 22050, 32000, 44100, 48000):
        path = tmp_path / f"{rate}.wav"
        write_wav(path, np.zeros(rate // 10, dtype=np.int16), rate=rate, codec=Codec.PCM16)
        run = cli(["analyze", str(path)])
        assert run.status == 0, run.err


def test_decrypt_of_a_device_or_huge_file(tmp_path: Path) -> None:
    keygen(tmp_path / "keys")
    key = str(tmp_path / "keys" / "collector.key")
    run = cli(["decrypt", "/dev/zero", "--key", key, "-o", str(tmp_path / "o.wav")])
    assert "not a regular file" in assert_refused(run, "/dev/zero", status=1)
    assert load_private(Path(key))  # the key itself is fine


# -- the collector's configuration -------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('database = "a\\u0000b"', "collector.database"),
        ('data_dir = "d\\u0000"', "collector.data_dir"),
        ('key = "k\\nx"', "collector.key"),
        ('ca = "/dev/zero"', "collector.ca"),  # TLS would read it for ever
        ('cert = "/dev/zero"', "collector.cert"),
        ('client_key = "/"', "collector.client_key"),
    ],
)
def test_collector_config_paths_name_their_key(tmp_path: Path, line: str, key: str) -> None:
    keygen(tmp_path / "keys")
    config = tmp_path / "collector.toml"
    settings = {"data_dir": '"central"', "key": '"keys/collector.key"'}
    settings[line.split(" = ")[0]] = line.split(" = ")[1]
    config.write_text(
        '[collector]\nbroker = "mqtt://127.0.0.1:1"\nallow_plaintext = true\n'
        + "".join(f"{name} = {value}\n" for name, value in settings.items())
    )
    run = cli(["collector", "quarantine", "--config", str(config)])
    assert_refused(run, "collector.toml", key)
