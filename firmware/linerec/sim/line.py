"""Render scripted calls into what a line interface would see: audio, pin edges, faults.

The audio is what the capture input hears from the line (the parties' voices, tones); the
edges are the opto outputs of the hook and ring sense stages; faults are things the sound
card does to us (an overrun that loses audio, a capture that hangs).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from linerec.codec import RATE, Samples
from linerec.errors import WavError
from linerec.resample import to_int16
from linerec.resources import data_path
from linerec.sim import callerid
from linerec.sim.callfile import (
    MAX_SCRIPT_SECONDS,
    CallFileError,
    ScriptedCall,
    Step,
    step_seconds,
    too_long,
)
from linerec.tones import dtmf_pair, tone
from linerec.wav import read_mono_8k

SPEECH = ("caller", "office")
# Ring cadences: (on, off) seconds per ring, and the ringing frequency.
_CADENCES = {
    "us": (((2.0, 4.0),), 20.0),
    "uk": (((0.4, 0.2), (0.4, 2.0)), 25.0),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class PinEdge:
    t: float
    signal: str  # "hook", "ring" or "button"
    active: bool  # hook: off hook; ring: ringing voltage present


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    t: float
    kind: str  # "overrun" or "stall"
    seconds: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """What the line carried from `start` to `end` (for the user and for tests)."""

    start: float
    end: float
    what: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedLine:
    chunks: tuple[tuple[int, Samples], ...]  # (first sample, audio), in order of start
    length: int  # samples of line audio
    edges: tuple[PinEdge, ...]
    faults: tuple[Fault, ...]
    segments: tuple[Segment, ...]
    end: float

    def blocks(self, size: int = RATE * 10) -> Iterator[Samples]:
        """The line audio in blocks, mixed as needed: an hour-long call never sits in memory."""
        chunks = list(self.chunks)
        for block_start in range(0, self.length, size):
            block_end = min(block_start + size, self.length)
            mix = np.zeros(block_end - block_start, dtype=np.int32)
            for start, samples in chunks:
                if start >= block_end:
                    break
                a, b = max(start, block_start), min(start + len(samples), block_end)
                if a < b:
                    mix[a - block_start : b - block_start] += samples[a - start : b - start]
            chunks = [(s, c) for s, c in chunks if s + len(c) > block_end]
            yield np.clip(mix, -32768, 32767).astype(np.int16)

    @property
    def audio(self) -> Samples:
        """The whole line audio at once (for short calls and tests)."""
        return np.concatenate([*self.blocks(), np.zeros(0, dtype=np.int16)])


def speech_path(name: str) -> Path:
    return data_path(f"speech/{name}.wav")


class _Timeline:
    def __init__(self) -> None:
        self.cursor = 0.0
        self.chunks: list[tuple[int, Samples]] = []
        self.edges: list[PinEdge] = []
        self.faults: list[Fault] = []
        self.segments: list[Segment] = []

    def audio(self, samples: Samples, what: str) -> None:
        start = round(self.cursor * RATE)
        self.chunks.append((start, samples))
        end = self.cursor + len(samples) / RATE
        self.segments.append(Segment(start=self.cursor, end=end, what=what))
        self.cursor = end

    def hook(self, off_hook: bool, bounce_ms: float) -> None:
        t = self.cursor
        if bounce_ms > 0:  # contact bounce: the switch chatters before it settles
            step = bounce_ms / 1000 / 4
            for i in range(4):
                self.edges.append(
                    PinEdge(t=t + i * step, signal="hook", active=off_hook == (i % 2 == 0))
                )
            t += 4 * step
        self.edges.append(PinEdge(t=t, signal="hook", active=off_hook))
        self.cursor = t

    def length(self) -> int:
        end = max((start + len(chunk) for start, chunk in self.chunks), default=0)
        return max(end, round(self.cursor * RATE))


def render_line(calls: list[ScriptedCall]) -> RenderedLine:
    """Lay the calls of one line end to end and render them."""
    timeline = _Timeline()
    for call in calls:
        begins = timeline.cursor  # `at` counts from the start of its own call
        for step in call.steps:
            if step.at is not None:
                at = begins + step.at
                if at + 1e-9 < timeline.cursor:
                    raise CallFileError(
                        call.source,
                        f"{step.where}.at",
                        f"{step.at:g} s is before the end of the previous step "
                        f"({timeline.cursor - begins:.3f} s)",
                    )
                timeline.cursor = at
            # Checked before the step is made: a step is never rendered past the bound.
            if timeline.cursor + step_seconds(step) > MAX_SCRIPT_SECONDS:
                raise CallFileError(
                    call.source, step.where, too_long(timeline.cursor + step_seconds(step))
                )
            _apply(timeline, step, call.source)
            if timeline.cursor > MAX_SCRIPT_SECONDS:  # a WAV that `say` names, longer than said
                raise CallFileError(call.source, step.where, too_long(timeline.cursor))
    return RenderedLine(
        chunks=tuple(sorted(timeline.chunks, key=lambda chunk: chunk[0])),
        length=timeline.length(),
        edges=tuple(sorted(timeline.edges, key=lambda e: e.t)),
        faults=tuple(timeline.faults),
        segments=tuple(timeline.segments),
        end=timeline.cursor,
    )


def _apply(timeline: _Timeline, step: Step, source: Path) -> None:
    action, value, options = step.action, step.value, step.options
    if action == "ring":
        bursts, frequency = _CADENCES[options.get("cadence", "us")]
        half = 0.5 / frequency
        for ring in range(value):
            for burst, (on, off) in enumerate(bursts):
                pulses = round(on * frequency)
                start = timeline.cursor
                for p in range(pulses):
                    timeline.edges.append(
                        PinEdge(t=start + p * 2 * half, signal="ring", active=True)
                    )
                    timeline.edges.append(
                        PinEdge(t=start + (p * 2 + 1) * half, signal="ring", active=False)
                    )
                last = ring == value - 1 and burst == len(bursts) - 1
                timeline.segments.append(Segment(start=start, end=start + on, what="ring"))
                timeline.cursor = start + on + (0.0 if last else off)
    elif action == "off_hook":
        timeline.hook(True, options.get("bounce_ms", 0))
    elif action == "on_hook":
        timeline.hook(False, options.get("bounce_ms", 0))
    elif action == "flash":
        timeline.hook(False, 0)
        timeline.cursor += value
        timeline.hook(True, 0)
    elif action == "wait" and "noise_dbfs" in options:  # a real line's hiss, not digital zero
        rms = 32768 * 10 ** (options["noise_dbfs"] / 20)
        left = round(value * RATE)
        while left:  # a minute at a time: hours of hiss never exist as floats all at once
            count = min(left, 60 * RATE)
            hiss = np.random.default_rng(round(timeline.cursor * RATE)).normal(0, rms, count)
            timeline.audio(to_int16(hiss), "line noise")
            left -= count
    elif action == "wait":
        timeline.cursor += value
    elif action == "say":
        timeline.audio(_speech(value, options, source, step.where), f"say {value}")
    elif action == "dtmf":
        on, off = options.get("tone_ms", 70) / 1000, options.get("gap_ms", 70) / 1000
        level = options.get("level_dbfs", -10)
        for digit in value:
            timeline.audio(tone(dtmf_pair(digit), on, level), f"dtmf {digit}")
            timeline.cursor += off
    elif action == "tone":
        frequencies = tuple(value) if isinstance(value, list) else (value,)
        timeline.audio(
            tone(frequencies, options["seconds"], options.get("level_dbfs", -13)), f"tone {value}"
        )
    elif action == "callerid":
        timeline.audio(_caller_id(value, options), f"callerid {value or options.get('absent')}")
    elif action == "press":  # the line's push button, held for 150 ms
        timeline.edges += [
            PinEdge(t=timeline.cursor, signal="button", active=True),
            PinEdge(t=timeline.cursor + 0.15, signal="button", active=False),
        ]
        timeline.cursor += 0.15
    elif action == "overrun":
        timeline.faults.append(Fault(t=timeline.cursor, kind="overrun", seconds=value))
    elif action == "stall":
        timeline.faults.append(Fault(t=timeline.cursor, kind="stall"))


@lru_cache(maxsize=32)
def _speech_file(path: Path) -> Samples:
    """A speech file at 8 kHz, read once however many steps say it."""
    samples = read_mono_8k(path)
    samples.flags.writeable = False
    return samples


def _caller_id(number: str, options: dict[str, Any]) -> Samples:
    level = options.get("level_dbfs", -13.0)
    absent = options.get("absent", "")
    parts = []
    if options.get("alert"):  # the dual-tone alerting signal first (UK; call waiting)
        parts += [tone((2130.0, 2750.0), 0.1, level), np.zeros(RATE // 20, dtype=np.int16)]
    fmt = options.get("format", "mdmf")
    if fmt == "dtmf":
        code = f"B{'10' if absent == 'private' else '00'}C" if absent else f"A{number}C"
        for digit in code:
            parts += [tone(dtmf_pair(digit), 0.07, -10), np.zeros(560, dtype=np.int16)]
        return np.concatenate(parts)
    stamp = options.get("datetime", "11251200")
    if fmt == "sdmf":
        message = callerid.sdmf(datetime=stamp, number=number, number_absent=absent)
    else:
        message = callerid.mdmf(
            datetime=stamp,
            number=number,
            name=options.get("name", ""),
            number_absent=absent,
            corrupt=options.get("corrupt", False),
        )
    standard = options.get("standard", "bell202")
    parts.append(callerid.modulate(message, standard=standard, level_dbfs=level))
    return np.concatenate(parts)


def _speech(name: str, options: dict[str, float], source: Path, where: str) -> Samples:
    path = speech_path(name) if name in SPEECH else (source.parent / name).resolve()
    try:
        samples = _speech_file(path)
    except WavError as exc:
        raise CallFileError(source, f"{where}.say", str(exc)) from exc
    if "seconds" in options:
        samples = samples[: round(options["seconds"] * RATE)]
    gain = 10 ** (options.get("level_db", 0) / 20)
    return to_int16(samples.astype(np.float64) * gain) if gain != 1 else samples
