"""Detectors fed a block of frames at once say exactly what they say fed the same frames one
by one: the same events, at the same frames, in the same order, whatever the block size.

A block that a detector can pass over (speech going on, a quiet line, no FSK) takes a shortcut;
these signals go in and out of every shortcut: speech with pauses long enough to re-arm the
voice detector, tone cadences that complete at block edges, silence and a dead line, caller ID.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bounded import cli
from linerec.codec import Codec
from linerec.dsp import progress
from linerec.dsp.analyzer import FRAME, LineAnalyzer, analyze
from linerec.dsp.callerid import FskCallerIdReceiver
from linerec.dsp.level import LevelMeter, least_power, power_dbfs
from linerec.dsp.progress import ProgressToneDetector, Tone
from linerec.dsp.spectrum import features
from linerec.dsp.voice import VoiceDetector
from linerec.resources import data_path
from linerec.sim.callerid import mdmf, modulate
from linerec.tones import dtmf_pair, tone
from linerec.wav import read_mono_8k, write_wav

RATE = 8000


def _silence(seconds: float, hiss: float = 0.0, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(0, hiss, round(seconds * RATE)) if hiss else None
    return np.zeros(round(seconds * RATE)) if x is None else x


def _cadence(frequencies: tuple[float, ...], on: float, off: float, times: int) -> np.ndarray:
    return np.concatenate(
        [np.concatenate([tone(frequencies, on, -15), _silence(off, 2.0)]) for _ in range(times)]
    )


def _line() -> np.ndarray:
    speech = read_mono_8k(data_path("speech/caller.wav")).astype(np.float64)
    office = read_mono_8k(data_path("speech/office.wav")).astype(np.float64)
    parts = [
        _silence(0.37, 3.0),
        tone((350.0, 440.0), 2.3, -18),  # dial tone
        tone(dtmf_pair("4"), 0.07, -20),
        _silence(0.9, 3.0),
        _cadence((440.0, 480.0), 2.0, 4.0, 2),  # ringback
        speech,
        _silence(1.3, 3.0),  # the voice detector re-arms
        office * 0.3,
        _silence(5.5, 30.0),  # hiss: silence, but not a dead line
        _cadence((480.0, 620.0), 0.5, 0.5, 3),  # busy
        _silence(11.0, 0.0),  # a dead line
        modulate(mdmf(number="5551234567"), level_dbfs=-18).astype(np.float64),
        _silence(0.5, 3.0),
        speech[: 3 * RATE] * 2,
        _silence(2.0, 30.0),
        _cadence((425.0,), 0.25, 0.25, 4),  # ETSI congestion
        office,
    ]
    x = np.concatenate(parts)
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


LINE = _line()
FRAMES = LINE[: len(LINE) // FRAME * FRAME].reshape(-1, FRAME)


def _one_by_one(feed: Callable[[int], list[object]]) -> list[tuple[int, object]]:
    return [(i, event) for i in range(len(FRAMES)) for event in feed(i)]


def _in_blocks(feed_block: Callable[[int, int], list[tuple[int, object]]], size: int) -> list:
    said = []
    for start in range(0, len(FRAMES), size):
        said += [(start + i, e) for i, e in feed_block(start, min(start + size, len(FRAMES)))]
    return said


SEEN_EACH = features(FRAMES.astype(np.float64)).frames()


def _block_features(start: int, stop: int):  # type: ignore[no-untyped-def]
    return features(FRAMES[start:stop].astype(np.float64))


@pytest.mark.parametrize("size", [1, 3, 4, 5, 50])
def test_progress_tones_in_blocks(size: int) -> None:
    alone, blocks = ProgressToneDetector(), ProgressToneDetector()
    expected = _one_by_one(lambda i: alone.feed(FRAMES[i], SEEN_EACH[i]))  # type: ignore[arg-type]
    got = _in_blocks(
        lambda a, b: blocks.feed_block(FRAMES[a:b], _block_features(a, b)),  # type: ignore[arg-type]
        size,
    )
    names = {type(e).__name__ + ":" + getattr(e, "name", "") for _, e in expected}
    assert {"Tone:dial", "Tone:ringback", "Tone:busy", "Quiet:silence", "Quiet:line_dead"} <= names
    assert got == expected


# Short and long bursts around the lengths at which a segment is named (3, 7, 8 frames), low
# and high enough for the alerting signal, some a step apart (one segment or two), with gaps.
_BURSTS = st.lists(
    st.tuples(
        st.sampled_from([(350.0, 440.0), (425.0,), (1370.6,), (1776.7,), (2130.0, 2750.0)]),
        st.integers(1, 12),  # frames on
        st.integers(0, 4),  # frames off (0: the next burst follows straight on)
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(bursts=_BURSTS, size=st.integers(1, 9))
def test_progress_segments_in_blocks_as_frame_by_frame(
    bursts: list[tuple[tuple[float, ...], int, int]], size: int
) -> None:
    # Blocks sort frames into segments and pick the ones to name as `feed` does: after every
    # block, the same segments (where each begins, how long, what its frequencies make it).
    parts = [_silence(0.5, 3.0)]
    for frequencies, on, off in bursts:
        parts += [tone(frequencies, on * FRAME / RATE, -15), _silence(off * FRAME / RATE, 3.0)]
    x = np.clip(np.rint(np.concatenate(parts)), -32768, 32767).astype(np.int16)
    frames = x[: len(x) // FRAME * FRAME].reshape(-1, FRAME)
    seen = features(frames.astype(np.float64))
    alone, blocks = ProgressToneDetector(), ProgressToneDetector()

    def segments(detector: ProgressToneDetector) -> list[tuple[object, ...]]:
        return [(s.colour, s.start, s.frames, s.peaks) for s in detector._segments]

    each = seen.frames()
    for start in range(0, len(frames), size):
        stop = min(start + size, len(frames))
        expected = [
            (i - start, e) for i in range(start, stop) for e in alone.feed(frames[i], each[i])
        ]
        got = blocks.feed_block(frames[start:stop], features(frames[start:stop].astype(np.float64)))
        assert got == expected
        assert segments(blocks) == segments(alone)
        # The count of named segments, which picks the shortcut, follows the history (a named
        # segment leaves it after 12 more): a count too high only costs, too low loses tones.
        assert blocks._named == sum(s.colour is not None for s in blocks._segments)
        assert blocks._unnamed == sum(s.unnamed is not None for s in blocks._segments)


class _NamedAtOnce(ProgressToneDetector):
    """Every segment named as soon as it is picked (an FFT each), and the cadence rules
    written plainly on the named history, as before naming waited for a rule to ask: the
    reference the detector must agree with."""

    def _close(self, segment):  # type: ignore[no-untyped-def]
        super()._close(segment)
        self._colour(segment)

    def _match(self):  # type: ignore[no-untyped-def]
        found = []
        segments = self._segments
        last = segments[-1]
        dials = {"na-dial": "na", "uk-dial": "uk", "etsi": "etsi"}
        if last.colour in dials and last.seconds >= 1.5:
            found.append(("dial", dials[last.colour], last))
        alert = len(segments) >= 2 and segments[-2].colour == "alert"
        if alert and 0.06 <= segments[-2].seconds <= 0.14:
            found.append(("alerting", "", segments[-2]))
        if len(segments) >= 4 and last.colour is None and not last.peaks:
            on1, off, on2 = segments[-4:-1]
            if on1.colour == on2.colour and on1.colour is not None and not off.peaks:
                named = progress._cadence(on1.colour, (on1.seconds, off.seconds, on2.seconds))
                if named is not None:
                    found.append((*named, on1))
        if len(segments) >= 2 and not last.peaks and last.seconds >= 1.0:
            on = segments[-2]
            if on.colour == "na-ringback" and 1.6 <= on.seconds <= 2.4:
                found.append(("ringback", "na", on))
            elif on.colour == "etsi" and 0.8 <= on.seconds <= 1.2:
                found.append(("ringback", "etsi", on))
        if len(segments) >= 2 and not last.peaks and segments[-2].colour == "uk-ringback":
            ons = [s for s in segments[-5:-1] if s.colour == "uk-ringback"]
            if len(ons) >= 2 and all(0.3 <= s.seconds <= 0.5 for s in ons[-2:]):
                found.append(("ringback", "uk", ons[-2]))
        sit = [s for s in segments if s.colour and s.colour.startswith("sit")]
        in_order = [s.colour for s in sit[-3:]] == ["sit1", "sit2", "sit3"]
        if in_order and all(0.2 <= s.seconds <= 0.45 for s in sit[-3:]):
            found.append(("sit", "", sit[-3]))
        return found


# Cadences of every plan's tones, at lengths either side of what the rules look for, SIT
# tones in and out of order and length, between runs of speech and of quiet.
_TONE = st.sampled_from(
    [
        *[(350.0, 440.0), (440.0, 480.0), (480.0, 620.0), (350.0, 450.0), (400.0, 450.0)],
        *[(425.0,), (400.0,), (2130.0, 2750.0)],
    ]
)
_SIT = st.sampled_from([(913.8,), (985.2,), (1370.6,), (1428.5,), (1776.7,), (1100.0,)])
_ON = st.sampled_from([0.09, 0.16, 0.22, 0.25, 0.3, 0.375, 0.4, 0.46, 0.5, 0.6, 1.0, 1.6, 2.0])
_OFF = st.sampled_from([0.0, 0.2, 0.25, 0.35, 0.375, 0.5, 0.525, 1.2, 4.0])
_SIT_LENGTH = st.sampled_from([0.16, 0.2, 0.28, 0.38, 0.44, 0.5])
_PIECES = st.lists(
    st.one_of(
        st.tuples(
            st.just("cadence"), st.lists(st.tuples(_TONE, _ON, _OFF), min_size=1, max_size=3)
        ),
        st.tuples(st.just("sit"), st.lists(st.tuples(_SIT, _SIT_LENGTH, st.just(0.0)), max_size=4)),
        st.tuples(st.just("speech"), st.sampled_from([0.3, 0.8, 2.0])),
        st.tuples(st.just("quiet"), st.sampled_from([0.25, 0.5, 1.2])),
    ),
    min_size=1,
    max_size=8,
)
_SPEECH = read_mono_8k(data_path("speech/caller.wav")).astype(np.float64)


_SIT1, _SIT2, _SIT3 = (913.8,), (1370.6,), (1776.7,)
_UK_RING = (400.0, 450.0)


@settings(max_examples=40, deadline=None, derandomize=True)
@example(
    pieces=[("sit", [(_SIT3, 0.28, 0.0), (_SIT2, 0.28, 0.0), (_SIT1, 0.28, 0.0)])],
    repeat=1,
    size=5,
    offset=0,
)
@example(
    pieces=[("sit", [(_SIT1, 0.28, 0.0), (_SIT2, 0.5, 0.0), (_SIT3, 0.28, 0.0)])],
    repeat=1,
    size=5,
    offset=0,
)
@example(
    pieces=[
        ("sit", [(_SIT1, 0.28, 0.0), (_SIT2, 0.28, 0.0), (_SIT3, 0.28, 0.0)]),
        ("quiet", 0.25),
        ("sit", [(_SIT2, 0.5, 0.0)]),
    ],
    repeat=1,
    size=5,
    offset=0,
)
@example(
    pieces=[("cadence", [(_UK_RING, 0.48, 0.2), (_UK_RING, 0.48, 2.0)])], repeat=2, size=5, offset=0
)
@example(pieces=[("cadence", [((440.0, 480.0), 2.38, 4.0)])], repeat=2, size=5, offset=0)
@example(pieces=[("cadence", [((480.0, 620.0), 0.58, 0.5)])], repeat=3, size=5, offset=0)
@example(pieces=[("cadence", [((400.0,), 0.375, 0.375)])], repeat=3, size=5, offset=0)
@given(pieces=_PIECES, repeat=st.integers(1, 3), size=st.integers(1, 9), offset=st.integers(0, 40))
def test_naming_a_segment_only_when_a_rule_asks_hears_what_naming_each_at_once_hears(
    pieces: list[tuple[object, ...]], repeat: int, size: int, offset: int
) -> None:
    parts = [_silence(0.3, 3.0)]
    for kind, what in pieces:
        if kind in ("cadence", "sit"):
            for _ in range(repeat):
                for frequencies, on, off in what:  # type: ignore[attr-defined]
                    parts += [tone(frequencies, on, -15), _silence(off, 3.0)]
        elif kind == "speech":
            start = offset * RATE // 10
            parts.append(_SPEECH[start : start + round(what * RATE)])  # type: ignore[operator]
        else:
            parts.append(_silence(what, 3.0))  # type: ignore[arg-type]
    x = np.clip(np.rint(np.concatenate(parts)), -32768, 32767).astype(np.int16)
    frames = x[: len(x) // FRAME * FRAME].reshape(-1, FRAME)
    each = features(frames.astype(np.float64)).frames()
    reference, lazy, blocks = _NamedAtOnce(), ProgressToneDetector(), ProgressToneDetector()
    expected = [(i, e) for i in range(len(frames)) for e in reference.feed(frames[i], each[i])]
    assert [(i, e) for i in range(len(frames)) for e in lazy.feed(frames[i], each[i])] == expected
    got = []
    for start in range(0, len(frames), size):
        block = frames[start : start + size]
        said = blocks.feed_block(block, features(block.astype(np.float64)))
        got += [(start + i, e) for i, e in said]
    assert got == expected


@pytest.mark.parametrize("size", [1, 3, 4, 5, 50])
def test_voice_in_blocks(size: int) -> None:
    alone, blocks = VoiceDetector(), VoiceDetector()
    expected = _one_by_one(lambda i: alone.feed(SEEN_EACH[i]))  # type: ignore[arg-type]
    got = _in_blocks(lambda a, b: blocks.feed_block(_block_features(a, b)), size)  # type: ignore[arg-type]
    assert len(expected) >= 3  # speech, again after a pause, and again later
    assert got == expected


@pytest.mark.parametrize("size", [1, 3, 4, 5, 50])
def test_caller_id_in_blocks(size: int) -> None:
    alone, blocks = FskCallerIdReceiver(), FskCallerIdReceiver()
    expected = _one_by_one(lambda i: alone.feed(FRAMES[i], SEEN_EACH[i]))  # type: ignore[arg-type]
    got = _in_blocks(
        lambda a, b: blocks.feed_block(FRAMES[a:b], _block_features(a, b)),  # type: ignore[arg-type]
        size,
    )
    assert [getattr(e, "number", None) for _, e in expected] == ["5551234567"]
    assert got == expected


@pytest.mark.parametrize("block_frames", [1, 4, 5])
def test_the_analyzer_hears_the_same_in_any_block(block_frames: int) -> None:
    reference = LineAnalyzer(block_frames=1)
    analyzer = LineAnalyzer(block_frames=block_frames)
    expected = [e for frame in FRAMES for e in reference.feed(frame)] + reference.flush()
    got = [e for frame in FRAMES for e in analyzer.feed(frame)] + analyzer.flush()
    assert got == expected


def test_a_file_analysed_a_second_at_a_time_hears_what_the_live_line_hears() -> None:
    # Blocks of 50 frames take the FFT, blocks of a few the DFT matrix: the same events.
    live = LineAnalyzer()
    expected = [e for frame in FRAMES for e in live.feed(frame)] + live.flush()
    assert analyze(LINE[: FRAMES.size]) == sorted(expected, key=lambda event: event.t)


@pytest.mark.parametrize("extra", [1, 100, 159, 160, 161])
def test_a_recording_that_ends_just_past_a_whole_second_is_analysed(
    tmp_path: Path, extra: int
) -> None:
    # A second of the line's tones and a few samples more: the last piece is shorter than a
    # frame, and what comes before it is heard as in a recording that stops at the second.
    samples = np.concatenate((LINE[: 3 * RATE], np.full(extra, 50, dtype=np.int16)))
    assert analyze(samples)[: len(analyze(LINE[: 3 * RATE]))] == analyze(LINE[: 3 * RATE])
    assert [e for e in analyze(samples) if isinstance(e, Tone)] == [
        Tone(t=0.36, name="dial", plan="na")
    ]
    path = tmp_path / "short.wav"
    write_wav(path, samples, rate=RATE, codec=Codec.PCM16)
    run = cli(["analyze", str(path)])
    assert run.status == 0, run.err
    assert "dial" in run.out


def test_the_voice_detector_tells_loud_frames_by_power_as_by_level() -> None:
    # Blocks compare each frame's power with one threshold instead of taking its level: the
    # same frames must count as loud, right at the threshold too.
    from linerec.dsp.voice import _LOUD, FLOOR_DBFS

    near = [float(_LOUD)]
    for direction in (0.0, np.inf):
        p = float(_LOUD)
        for _ in range(50):
            p = float(np.nextafter(p, direction))
            near.append(p)
    powers = near + np.random.default_rng(3).uniform(0, 4 * _LOUD, 2000).tolist()
    assert [p >= _LOUD for p in powers] == [power_dbfs(p) >= FLOOR_DBFS for p in powers]
    assert power_dbfs(_LOUD) >= FLOOR_DBFS > power_dbfs(float(np.nextafter(_LOUD, 0.0)))


def test_linerec_analyze_loads_only_the_recorders_commands(tmp_path: Path) -> None:
    # A short file's analysis costs less than loading every command group's modules: the
    # command loads its own group only; usage and the other commands are as before.
    path = tmp_path / "tone.wav"
    write_wav(path, LINE[: 3 * RATE], rate=RATE, codec=Codec.PCM16)
    code = (
        "import sys; from linerec.cli import main; status = main(['analyze', sys.argv[1]]); "
        "print(sorted(m for m in sys.modules if m.startswith('linerec.cli.')), status)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    assert "dial" in done.stdout
    assert done.stdout.splitlines()[-1] == "['linerec.cli.appliance'] 0"
    usage = subprocess.run(
        [sys.executable, "-m", "linerec.cli", "--help"], capture_output=True, text=True
    )
    assert usage.returncode == 0
    for command in ("run", "analyze", "decrypt", "update", "collector"):
        assert f"    {command} " in usage.stdout, command
    wrong = subprocess.run(
        [sys.executable, "-m", "linerec.cli", "analyse"], capture_output=True, text=True
    )
    assert wrong.returncode == 2 and "collector" in wrong.stderr  # every command is offered


@pytest.mark.parametrize("silence_dbfs", [-120.0, -96.0, -55.0, -40.0, 0.0, 3.0])
def test_the_level_meter_says_the_same_of_a_block_as_of_its_frames(silence_dbfs: float) -> None:
    # A block's powers are compared with a threshold, not each turned into a level: the level,
    # the peak and the time quiet come out as taking each frame's level does, at any threshold.
    frames = FRAMES[: 20 * 50].astype(np.float64)
    powers = ((frames * frames).sum(axis=1) / FRAME).tolist()
    meter = LevelMeter(silence_dbfs=silence_dbfs)
    level, peak, silent_for = -96.0, -96.0, 0.0
    for start in range(0, len(powers), 7):
        for power in powers[start : start + 7]:  # frame by frame, each one's level
            level = power_dbfs(power)
            peak = max(peak, level)
            silent_for = silent_for + FRAME / RATE if level < silence_dbfs else 0.0
        meter.feed_powers(powers[start : start + 7], FRAME)
        assert (meter.level, meter.peak, meter.silent_for) == (level, peak, silent_for)
    threshold = least_power(silence_dbfs)
    assert threshold in (0.0, np.inf) or (
        power_dbfs(threshold) >= silence_dbfs > power_dbfs(float(np.nextafter(threshold, 0.0)))
    )
