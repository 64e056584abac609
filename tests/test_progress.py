"""Call-progress tones: frequencies and cadences of the North American, ETSI and UK plans."""

from __future__ import annotations

import numpy as np
import pytest

from linerec.dsp.progress import ProgressToneDetector, Quiet, Tone
from linerec.resources import data_path
from linerec.tones import tone
from linerec.wav import read_mono_8k

RATE = 8000


def cadence(
    frequencies: tuple[float, ...], pattern: list[float], seconds: float, level: float = -15
) -> np.ndarray:
    parts, t, i = [], 0.0, 0
    while t < seconds:
        length = pattern[i % len(pattern)]
        parts.append(
            tone(frequencies, length, level)
            if i % 2 == 0
            else np.zeros(round(length * RATE), np.int16)
        )
        t += length
        i += 1
    return np.concatenate(parts)


def detect(x: np.ndarray) -> list[object]:
    x = np.concatenate([np.zeros(1600, np.int16), x, np.zeros(RATE, np.int16)])
    detector = ProgressToneDetector()
    return [e for start in range(0, len(x), 160) for e in detector.feed(x[start : start + 160])]


CASES = [
    ("na", "dial", (350.0, 440.0), [3.0, 0.0]),
    ("na", "ringback", (440.0, 480.0), [2.0, 4.0]),
    ("na", "busy", (480.0, 620.0), [0.5, 0.5]),
    ("na", "reorder", (480.0, 620.0), [0.25, 0.25]),
    ("etsi", "dial", (425.0,), [3.0, 0.0]),
    ("etsi", "ringback", (425.0,), [1.0, 4.0]),
    ("etsi", "busy", (425.0,), [0.5, 0.5]),
    ("etsi", "congestion", (425.0,), [0.25, 0.25]),
    ("uk", "dial", (350.0, 450.0), [3.0, 0.0]),
    ("uk", "ringback", (400.0, 450.0), [0.4, 0.2, 0.4, 2.0]),
    ("uk", "busy", (400.0,), [0.375, 0.375]),
    ("uk", "congestion", (400.0,), [0.4, 0.35, 0.225, 0.525]),
]


@pytest.mark.parametrize(("plan", "name", "frequencies", "pattern"), CASES)
def test_each_tone_of_each_plan_once(
    plan: str, name: str, frequencies: tuple[float, ...], pattern: list[float]
) -> None:
    events = detect(cadence(frequencies, pattern, 13.0))
    assert events == [Tone(t=0.2, name=name, plan=plan)]


@pytest.mark.parametrize(("plan", "name", "frequencies", "pattern"), CASES)
def test_frequency_off_by_one_percent_still_counts(
    plan: str, name: str, frequencies: tuple[float, ...], pattern: list[float]
) -> None:
    shifted = tuple(f * 1.01 for f in frequencies)
    assert [e.name for e in detect(cadence(shifted, pattern, 13.0))] == [name]  # type: ignore[attr-defined]


def test_special_information_tones() -> None:
    sit = np.concatenate(
        [tone((913.8,), 0.274, -15), tone((1370.6,), 0.274, -15), tone((1776.7,), 0.38, -15)]
    )
    assert detect(sit) == [Tone(t=0.2, name="sit", plan="")]


def test_alerting_signal() -> None:
    assert detect(tone((2130.0, 2750.0), 0.08, -15)) == [Tone(t=0.2, name="alerting", plan="")]


def test_no_tones_in_speech() -> None:
    speech = np.concatenate(
        [read_mono_8k(data_path(f"speech/{n}.wav")) for n in ("caller", "office")] * 3
    )
    assert [e for e in detect(speech) if isinstance(e, Tone)] == []


def test_silence_and_a_dead_line() -> None:
    hiss = np.random.default_rng(0).normal(0, 20, RATE * 12).astype(np.int16)  # about -64 dBFS
    assert detect(hiss) == [Quiet(t=0.0, name="silence")]
    assert detect(np.zeros(RATE * 12, np.int16)) == [
        Quiet(t=0.0, name="silence"),
        Quiet(t=0.0, name="line_dead"),
    ]
