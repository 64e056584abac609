"""Property tests over every appliance-side reader the outside world feeds (issue 13, defect 11):
configuration text and structure, pin maps, call files, recordings (bytes mutated from a real
one, and validly signed files with odd headers), WAVs (RIFF with random chunks).

Each example ends in success or in the reader's own error (a LinerecError, or the store's
IntegrityError / RecordingUnreadable, which the CLI turns into exit 1); never another exception.
Each batch runs in one forked child under a memory and file-size limit (tests/bounded.py), in
a working directory of its own: nothing may appear outside the directories it was given.
Deterministic (derandomize) and modest, so CI stays stable and fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bounded import bounded
from calls import call_info
from linerec.errors import LinerecError
from linerec.store.format import RecordType, frame, json_body, pad_to_block, scan
from linerec.store.keys import keygen, load_or_create_identity, load_private, load_public
from linerec.store.ring import RingStore
from linerec.store.seal import sign_end

SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def fuzz(examples: int) -> settings:
    return settings(SETTINGS, max_examples=examples)


def files_under(directory: Path) -> set[Path]:
    return {path for path in directory.rglob("*")}


def batch(tmp_path: Path, test: Callable[[], None], *, allowed: tuple[Path, ...] = ()) -> None:
    """Run the hypothesis test `test` in one bounded child, from an empty working directory;
    afterwards nothing new may exist under tmp_path but below `allowed`."""
    work = tmp_path / "cwd"
    work.mkdir()
    before = files_under(tmp_path)

    def run() -> None:
        os.chdir(work)
        test()

    bounded(run)
    new = files_under(tmp_path) - before
    stray = [p for p in new if not any(p == a or a in p.parents for a in allowed)]
    assert not stray, f"files created outside the given directories: {sorted(stray)[:5]}"


# -- values a hostile file holds -----------------------------------------------------------------

EXTREME_NUMBERS = st.sampled_from(
    [0, -1, 1, 2**63 - 1, -(2**63), 10**40, 1e308, -1e308, float("nan"), float("inf"), 1e-300]
)
NUMBERS = st.one_of(
    EXTREME_NUMBERS,
    st.integers(-100, 100_000),
    st.floats(-1e6, 1e6, allow_nan=False),
)
PATHS = st.sampled_from(
    [
        "/dev/zero",
        "/dev/null",
        "~nosuchuser/x",
        "a\0b",
        "x" * 300,
        "/",
        ".",
        "/proc/self/mem",
        "",
        "../../etc/passwd",
        "nope.wav",
    ]
)
TEXT = st.one_of(PATHS, st.text(max_size=30), st.text(alphabet="0123456789*#ABCDx", max_size=40))
SCALARS = st.one_of(NUMBERS, TEXT, st.booleans())
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def toml_value(value: Any) -> str:
    """A value as TOML (enough of TOML for the fuzzer: no dates)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(str(value), repr(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


# -- configuration and pin map ------------------------------------------------------------------

CONFIG_KEYS = {
    "device": ["id"],
    "hardware": ["backend", "pinmap", "status_led_pin"],
    "store": ["dir", "codec", "delay_ms", "recipients", "capacity", "when_full", "identity"],
    "sim": ["calls", "speed"],
    "uplink": ["broker", "device_id", "collector", "ca", "allow_plaintext"],
}
LINE_KEYS = [
    "name",
    "consent",
    "notice",
    "rate",
    "channels",
    "channel",
    "period_ms",
    "hook_pin",
    "hook_debounce_ms",
    "flash_min_ms",
    "opt_out_key",
    "pause_code",
    "retention_days",
    "hook_source",
]


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    lines = []
    for section, keys in CONFIG_KEYS.items():
        chosen = draw(st.lists(st.sampled_from(keys), max_size=3, unique=True))
        if chosen or draw(st.booleans()):
            lines.append(f"[{section}]")
            lines += [f"{key} = {toml_value(draw(VALUES))}" for key in chosen]
    for _ in range(draw(st.integers(0, 2))):
        lines.append("[[line]]")
        keys = draw(st.lists(st.sampled_from(LINE_KEYS), max_size=4, unique=True))
        lines += [f"{key} = {toml_value(draw(VALUES))}" for key in keys]
    text = "\n".join(lines) + "\n"
    # Now and then, damage the text itself.
    cut = draw(st.integers(0, len(text)))
    return draw(
        st.sampled_from(
            [text, text[:cut], text[:cut] + draw(st.sampled_from(["[", "=", "\\", '"', "[[", "]"]))]
        )
    )


def test_config_text_and_structure(tmp_path: Path) -> None:
    from linerec.config import load_config, parse_config

    path = tmp_path / "cwd" / "c.toml"

    @fuzz(150)
    @given(config_texts())
    def text(source: str) -> None:
        path.write_text(source)
        with contextlib.suppress(LinerecError):
            load_config(path)

    @fuzz(150)
    @given(st.dictionaries(st.sampled_from([*CONFIG_KEYS, "line", "x"]), VALUES, max_size=4))
    def structure(data: dict[str, Any]) -> None:
        with contextlib.suppress(LinerecError):
            parse_config(data, path)

    def both() -> None:
        text()
        structure()

    batch(tmp_path, both, allowed=(path,))


@st.composite
def pinmap_texts(draw: st.DrawFn) -> str:
    lines = ["version = " + toml_value(draw(NUMBERS)), "[board]"]
    lines.append(f"status_led = {toml_value(draw(VALUES))}")
    for _ in range(draw(st.integers(0, 3))):
        lines.append("[[line]]")
        keys = [
            "hook_sense",
            "ring_sense",
            "recording_led",
            "button",
            "talk_switch",
            "hook_active_low",
            "x",
        ]
        for key in draw(st.lists(st.sampled_from(keys), max_size=5, unique=True)):
            lines.append(f"{key} = {toml_value(draw(VALUES))}")
    return "\n".join(lines) + "\n"


def test_pin_maps(tmp_path: Path) -> None:
    from linerec.config import load_pinmap

    path = tmp_path / "cwd" / "pins.toml"

    @fuzz(150)
    @given(pinmap_texts(), st.binary(max_size=8))
    def pinmaps(source: str, junk: bytes) -> None:
        path.write_bytes(source.encode() + junk)
        with contextlib.suppress(LinerecError):
            load_pinmap(path)

    batch(tmp_path, pinmaps, allowed=(path,))


# -- call files -------------------------------------------------------------------------------------

STEP_KEYS = [
    "ring", "off_hook", "on_hook", "flash", "wait", "say", "dtmf", "tone", "callerid", "press",
    "overrun", "stall", "at", "bounce_ms", "noise_dbfs", "seconds", "level_db", "tone_ms",
    "gap_ms", "level_dbfs", "name", "datetime", "format", "standard", "absent", "alert",
    "corrupt", "cadence",
]  # fmt: skip
SMALL = st.one_of(
    EXTREME_NUMBERS, st.integers(0, 30), st.floats(0, 30, allow_nan=False), st.booleans()
)
STEP_VALUES = st.one_of(
    SMALL,
    TEXT,
    st.sampled_from(["caller", "office", "mdmf", "sdmf", "dtmf", "v23", "private", "uk"]),
    st.lists(SMALL, max_size=3),
)


ACTION_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "ring": st.integers(0, 60),
    "off_hook": st.just(True),
    "on_hook": st.just(True),
    "flash": SMALL,
    "wait": st.one_of(SMALL, st.sampled_from([36000, 14400, 5000])),
    "say": st.sampled_from(["caller", "office", "/dev/zero", "nope.wav", "a\0b", "x" * 300]),
    "dtmf": st.text(alphabet="0123456789*#ABCDx", max_size=50),
    "tone": st.one_of(st.sampled_from([440, 350, 20, 3900, 1e9]), st.lists(SMALL, max_size=3)),
    "callerid": st.one_of(st.text(alphabet="0123456789", max_size=30), TEXT),
    "press": st.just(True),
    "overrun": SMALL,
    "stall": st.just(True),
}
OPTION_VALUES = st.one_of(
    st.integers(0, 60),
    st.floats(0, 60),
    st.integers(-60, 0),
    SMALL,
    st.sampled_from([1e9, -1e9, 5000, 0.5, "Ωmega", "N" * 60, "11251200", "mdmf", "v23", "uk"]),
    TEXT,
)


@st.composite
def call_texts(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(1, 3))):
        lines.append("[[call]]")
        if draw(st.booleans()):
            line = draw(st.sampled_from(["line1", "line1", "line2", "line2", "a/b", "x" * 40]))
            lines.append(f"line = {toml_value(line)}")
        for _ in range(draw(st.integers(1, 4))):
            lines.append("[[call.step]]")
            action = draw(st.sampled_from(sorted(ACTION_VALUES)))
            lines.append(f"{action} = {toml_value(draw(ACTION_VALUES[action]))}")
            own = sorted(_OPTIONS[action]) or ["at"]
            keys = (
                st.sampled_from([*own, "at"])
                if draw(st.integers(0, 9))
                else st.sampled_from(STEP_KEYS)
            )
            for key in draw(st.lists(keys, max_size=3, unique=True)):
                if key != action and key not in ACTION_VALUES:
                    lines.append(f"{key} = {toml_value(draw(OPTION_VALUES))}")
    return "\n".join(lines) + "\n"


from linerec.sim.callfile import _OPTIONS  # noqa: E402 - each action's own options


def test_call_files(tmp_path: Path) -> None:
    from linerec.sim.callfile import load_call_file
    from linerec.sim.line import render_line

    path = tmp_path / "cwd" / "call.toml"

    @fuzz(200)
    @given(call_texts())
    def calls(source: str) -> None:
        path.write_text(source)
        with contextlib.suppress(LinerecError):
            loaded = load_call_file(path)
            for line in {call.line for call in loaded}:
                render_line([call for call in loaded if call.line == line])

    batch(tmp_path, calls, allowed=(path,))


# -- recordings ---------------------------------------------------------------------------------


def make_ring(directory: Path, keys: Path) -> RingStore:
    return RingStore(
        directory,
        recipients=[load_public(keys / "collector.pub")],
        identity=load_or_create_identity(keys / "identity.key"),
        device_id="box1",
    )


def make_recording(ring: RingStore) -> Path:
    writer = ring.begin(call_info(started_at=datetime(2026, 11, 25, 9, 0, tzinfo=UTC)))
    writer.write(np.zeros(8000, dtype=np.int16))
    return writer.seal(ended_by="hang-up").path


def read_every_way(path: Path, ring_dir: Path, keys: Path) -> None:
    """Everything that reads a recording; each may only fail with its own error."""
    from linerec.store.chunks import InMemory, open_audio
    from linerec.store.reader import IntegrityError, decrypt, inspect
    from linerec.store.ring import RecordingUnreadable, read_entry
    from linerec.store.verify import verify_ring

    data = path.read_bytes()
    with contextlib.suppress(IntegrityError):
        inspect(data)
        decrypt(data, load_private(keys / "collector.key"))
    with contextlib.suppress(IntegrityError):  # the console's player: from any sample
        audio = open_audio(InMemory(data), load_private(keys / "collector.key"))
        for _ in audio.read(0, audio.samples):
            pass
    with contextlib.suppress(RecordingUnreadable):
        read_entry(path)
    verify_ring(ring_dir)
    # The daemon's start: whatever the file is, the ring opens and recovers (or quarantines).
    ring = make_ring(ring_dir, keys)
    ring.recover()
    assert all(entry.path.exists() for entry in ring.entries.values())


MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "truncate"]),
        st.integers(0, 1 << 16),
        st.binary(min_size=1, max_size=8),
    ),
    min_size=1,
    max_size=4,
)


def test_recordings_with_mutated_bytes(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keygen(keys)
    original_ring = tmp_path / "original"
    original = make_recording(make_ring(original_ring, keys)).read_bytes()
    ring_dir = tmp_path / "cwd" / "ring"

    @fuzz(120)
    @given(MUTATIONS)
    def mutated(changes: list[tuple[str, int, bytes]]) -> None:
        data = bytearray(original)
        for kind, where, what in changes:
            at = where % (len(data) + 1)
            if kind == "flip" and data:
                data[at % len(data)] ^= what[0] or 1
            elif kind == "insert":
                data[at:at] = what
            elif kind == "delete":
                del data[at : at + len(what)]
            else:
                del data[at:]
        shutil.rmtree(ring_dir, ignore_errors=True)
        ring_dir.mkdir()
        path = ring_dir / "box1-00000001-20261125T090000Z-line1.lrec"
        path.write_bytes(bytes(data))
        read_every_way(path, ring_dir, keys)

    batch(tmp_path, mutated, allowed=(ring_dir,))


HEADER_FIELDS = [
    "v", "id", "device", "seq", "prev", "line", "started_at", "clock_synchronized",
    "retention_days", "codec", "rate", "device_key", "recipients",
]  # fmt: skip
JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**20), max_value=10**20),
        st.sampled_from([10**15, 2**63, -1, 0]),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
        st.sampled_from(["../x", "ulaw", "pcm16", "", "2026-11-25T09:00:00", "yesterday"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def test_recordings_validly_signed_with_odd_headers(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keygen(keys)
    identity = load_or_create_identity(keys / "identity.key")
    records = list(scan(make_recording(make_ring(tmp_path / "original", keys)).read_bytes()))
    header = json.loads(records[0].body)
    ring_dir = tmp_path / "cwd" / "ring"

    @fuzz(120)
    @given(
        st.dictionaries(st.sampled_from(HEADER_FIELDS), JSON_VALUES, max_size=3),
        st.lists(st.sampled_from(HEADER_FIELDS), max_size=2),
        st.dictionaries(
            st.sampled_from(["chunks", "samples", "digest", "x"]), JSON_VALUES, max_size=2
        ),
    )
    def odd(changed: dict[str, Any], dropped: list[str], end_changes: dict[str, Any]) -> None:
        odd_header = {k: v for k, v in {**header, **changed}.items() if k not in dropped}
        body = json_body(odd_header)
        out = frame(RecordType.HEADER, body)
        for record in records[1:]:
            if record.type is RecordType.PAD:
                out += pad_to_block(len(out))
            elif record.type is RecordType.TRAILER:
                trailer = {k: v for k, v in json.loads(record.body).items() if k != "sig"}
                trailer["digest"] = hashlib.sha256(out).hexdigest()
                trailer.update(end_changes)
                digest = hashlib.sha256(body).digest()
                out += frame(
                    RecordType.TRAILER,
                    json_body(sign_end(identity, RecordType.TRAILER, digest, trailer)),
                )
            else:
                out += frame(record.type, record.body, record.flags)
        shutil.rmtree(ring_dir, ignore_errors=True)
        ring_dir.mkdir()
        path = ring_dir / "box1-00000001-20261125T090000Z-line1.lrec"
        path.write_bytes(out)
        read_every_way(path, ring_dir, keys)

    batch(tmp_path, odd, allowed=(ring_dir,))


# -- WAV files --------------------------------------------------------------------------------------

CHUNK_IDS = st.sampled_from([b"fmt ", b"data", b"cue ", b"LIST", b"junk", b"fact", b"\0\0\0\0"])


@st.composite
def riff_files(draw: st.DrawFn) -> bytes:
    body = b"WAVE"
    for _ in range(draw(st.integers(0, 5))):
        name = draw(CHUNK_IDS)
        if name == b"fmt " and draw(st.booleans()):
            tag = draw(st.sampled_from([1, 3, 6, 7, 0xFFFE, 2, 0]))
            channels = draw(st.sampled_from([0, 1, 2, 3, 65535]))
            rate = draw(st.sampled_from([0, 1, 7999, 8000, 11025, 44100, 48000, 2**32 - 1]))
            bits = draw(st.sampled_from([0, 8, 12, 16, 24, 32, 64]))
            content = struct.pack("<HHIIHH", tag, channels, rate, 0, 0, bits)
            content += draw(st.binary(max_size=12))
        elif name == b"LIST" and draw(st.booleans()):
            content = b"adtl" + draw(st.binary(max_size=40))
            if draw(st.booleans()):
                content += (
                    b"labl"
                    + struct.pack("<I", draw(st.integers(0, 64)))
                    + draw(st.binary(max_size=20))
                )
        elif name == b"cue " and draw(st.booleans()):
            content = struct.pack("<I", draw(st.integers(0, 2**32 - 1))) + draw(
                st.binary(max_size=60)
            )
        else:
            content = draw(st.binary(max_size=2000))
        size = draw(st.one_of(st.just(len(content)), st.integers(0, 2**32 - 1)))
        body += name + struct.pack("<I", size) + content + (b"\0" if len(content) & 1 else b"")
    riff_size = draw(st.one_of(st.just(len(body)), st.integers(0, 2**32 - 1)))
    return b"RIFF" + struct.pack("<I", riff_size) + body


def test_wav_files(tmp_path: Path) -> None:
    from linerec.dsp.analyzer import analyze
    from linerec.wav import read_mono_8k

    path = tmp_path / "cwd" / "in.wav"

    @fuzz(250)
    @given(riff_files())
    def wavs(data: bytes) -> None:
        path.write_bytes(data)
        with contextlib.suppress(LinerecError):
            analyze(read_mono_8k(path))

    batch(tmp_path, wavs, allowed=(path,))
