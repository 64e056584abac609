"""The DTMF receiver against the usual receiver tests (ITU-T Q.24, North American values)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from linerec.dsp.dtmf import HIGH, KEYS, LOW, DtmfDetector, DtmfDigit
from linerec.resources import data_path
from linerec.tones import amplitude
from linerec.wav import read_mono_8k

RATE = 8000
ALL = "123A456B789C*0#D"
SPEECH_DIR = Path("/usr/share/pocketsphinx/test/data")  # Debian's pocketsphinx-testdata


def burst(
    digit: str,
    seconds: float,
    *,
    deviation: float = 0.0,
    level: float = -10.0,
    twist: float = 0.0,
    phase: float = 0.3,
) -> np.ndarray:
    row = next(i for i, keys in enumerate(KEYS) if digit in keys)
    column = KEYS[row].index(digit)
    t = np.arange(round(seconds * RATE)) / RATE
    low = amplitude(level) * np.sin(2 * np.pi * LOW[row] * (1 + deviation) * t)
    high = amplitude(level + twist) * np.sin(2 * np.pi * HIGH[column] * (1 + deviation) * t + phase)
    return low + high


def signal(
    digits: str,
    *,
    on: float = 0.05,
    off: float = 0.05,
    lead: float = 0.1,
    snr: float | None = None,
    seed: int = 0,
    **tone: float,
) -> np.ndarray:
    parts = [np.zeros(round(lead * RATE))]
    for digit in digits:
        parts += [burst(digit, on, **tone), np.zeros(round(off * RATE))]
    x = np.concatenate([*parts, np.zeros(RATE // 10)])
    if snr is not None:
        power = amplitude(tone.get("level", -10.0)) ** 2 / 2
        x = x + np.random.default_rng(seed).normal(0, np.sqrt(power / 10 ** (snr / 10)), len(x))
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def detect(samples: np.ndarray, frame: int = 160) -> list[DtmfDigit]:
    detector = DtmfDetector()
    events: list[DtmfDigit] = []
    for start in range(0, len(samples), frame):
        events += detector.feed(samples[start : start + frame])
    return events + detector.flush()


def digits(samples: np.ndarray) -> str:
    return "".join(e.digit for e in detect(samples))


def test_every_digit_once_with_its_time_and_duration() -> None:
    events = detect(signal(ALL, on=0.06, off=0.06))
    assert "".join(e.digit for e in events) == ALL
    for index, event in enumerate(events):
        assert event.t == pytest.approx(0.1 + index * 0.12, abs=0.006)
        assert event.duration == pytest.approx(0.06, abs=0.011)


@pytest.mark.parametrize("deviation", [-0.015, -0.01, 0.0, 0.01, 0.015])
def test_accepts_frequency_error_within_1_5_percent(deviation: float) -> None:
    assert digits(signal(ALL, deviation=deviation)) == ALL


@pytest.mark.parametrize("deviation", [-0.06, -0.045, -0.035, 0.035, 0.045, 0.06])
def test_rejects_frequency_error_of_3_5_percent_and_more(deviation: float) -> None:
    assert digits(signal(ALL, deviation=deviation)) == ""


@pytest.mark.parametrize("lead_ms", range(0, 10))
def test_accepts_40_ms_tones_with_40_ms_pauses_at_any_alignment(lead_ms: int) -> None:
    assert digits(signal(ALL, on=0.040, off=0.040, lead=0.1 + lead_ms / 1000)) == ALL


@pytest.mark.parametrize("on", [0.010, 0.020, 0.023])
@pytest.mark.parametrize("lead_ms", range(0, 10, 3))
def test_rejects_tones_of_23_ms_or_less(on: float, lead_ms: int) -> None:
    assert digits(signal(ALL, on=on, off=0.040, lead=0.1 + lead_ms / 1000)) == ""


@pytest.mark.parametrize("twist", [-8.0, -4.0, 0.0, 2.0, 4.0])
def test_accepts_twist_8_db_normal_4_db_reverse(twist: float) -> None:
    assert digits(signal(ALL, twist=twist)) == ALL


@pytest.mark.parametrize("twist", [-12.0, -10.0, 6.0, 8.0])
def test_rejects_larger_twist(twist: float) -> None:
    assert digits(signal(ALL, twist=twist)) == ""


@pytest.mark.parametrize("level", [-3.0, -10.0, -20.0, -30.0, -36.0])
def test_accepts_levels_from_minus_3_to_minus_30_dbm0_and_a_margin(level: float) -> None:
    assert digits(signal(ALL, level=level)) == ALL


@pytest.mark.parametrize("deviation", [-0.015, 0.0, 0.015])
@pytest.mark.parametrize("twist", [-8.0, 4.0])
def test_accepts_the_lowest_level_with_the_largest_twist_and_frequency_error(
    twist: float, deviation: float
) -> None:
    # Q.24 (North American values): each accept condition holds in combination with the
    # others. The low-group tone at -30 dBm0 (-33 dBFS) and the high group 8 dB weaker
    # (-41 dBFS) or 4 dB stronger, each off by 1.5 %, in 40 ms bursts.
    samples = signal(ALL * 2, level=-33.0, twist=twist, deviation=deviation, on=0.04, off=0.04)
    assert digits(samples) == ALL * 2


def test_ignores_tones_far_below_the_floor() -> None:
    assert digits(signal(ALL, level=-50.0)) == ""


@pytest.mark.parametrize("snr", [20.0, 15.0])
def test_tolerates_noise_down_to_15_db_snr(snr: float) -> None:
    found = [digits(signal(ALL, snr=snr, seed=seed)) for seed in range(5)]
    assert found == [ALL] * 5


def test_frame_size_does_not_change_what_is_heard() -> None:
    x = signal(ALL, on=0.045, off=0.045, lead=0.1037)
    assert [detect(x, frame) for frame in (160, 80, 333, 1600)] == [detect(x)] * 4


def test_a_noise_hit_inside_a_digit_does_not_split_it() -> None:
    x = signal("5", on=0.2).astype(np.float64)
    x[round(0.19 * RATE) : round(0.2 * RATE)] += np.random.default_rng(1).normal(0, 8000, 80)
    assert digits(np.clip(x, -32768, 32767).astype(np.int16)) == "5"


def _speech_files() -> list[Path]:
    files = sorted(SPEECH_DIR.glob("librivox/*.wav")) + sorted(SPEECH_DIR.glob("cards/*.wav"))
    assert files, f"{SPEECH_DIR} is empty: .ci/setup installs Debian's pocketsphinx-testdata"
    return files


def test_talk_off_on_recorded_speech() -> None:
    clips = [read_mono_8k(p) for p in _speech_files()]
    clips += [read_mono_8k(data_path(f"speech/{name}.wav")) for name in ("caller", "office")]
    speech = np.concatenate(clips)
    assert len(speech) / RATE > 40
    for gain in (0.5, 1.0, 2.0):  # quiet, normal and loud talkers
        loud = np.clip(speech * gain, -32768, 32767).astype(np.int16)
        assert detect(loud) == []
