"""The DTMF receiver's gate: a block in which no frame can be a digit's (the frames' share of
their power in the strongest low and high tone, from the shared spectrum) is passed over, and
no digit is lost, gained or moved because of that."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linerec.dsp import dtmf, spectrum
from linerec.dsp.analyzer import FRAME, LineAnalyzer
from linerec.dsp.dtmf import DtmfDetector
from linerec.dsp.spectrum import features
from linerec.resources import data_path
from linerec.tones import amplitude, dtmf_pair
from linerec.wav import read_mono_8k

RATE = 8000
SPEECH = read_mono_8k(data_path("speech/caller.wav")).astype(np.float64)


def _burst(digit: str, samples: int, level: float, twist: float, deviation: float) -> np.ndarray:
    low, high = dtmf_pair(digit)
    t = np.arange(samples) / RATE
    return amplitude(level) * np.sin(2 * np.pi * low * (1 + deviation) * t) + amplitude(
        level + twist
    ) * np.sin(2 * np.pi * high * (1 + deviation) * t + 0.4)


def _as_samples(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def _gated_and_not(x: np.ndarray, size: int) -> tuple[list[object], list[object], int]:
    """Digits from blocks of `size` frames with the frames' shares, and without; and how
    many blocks the gated receiver transformed."""
    frames = x[: len(x) // FRAME * FRAME].astype(np.float64).reshape(-1, FRAME)
    gated, plain = DtmfDetector(), DtmfDetector()
    transformed = 0
    classify = gated._classify

    def counting(*args: object) -> list[str | None]:
        nonlocal transformed
        transformed += 1
        return classify(*args)  # type: ignore[arg-type]

    gated._classify = counting  # type: ignore[method-assign]
    with_gate: list[object] = []
    without: list[object] = []
    for start in range(0, len(frames), size):
        block = frames[start : start + size]
        with_gate += gated.feed(block.ravel(), features(block).dtmf_share)
        without += plain.feed(block.ravel())
    return with_gate + gated.flush(), without + plain.flush(), transformed


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    digits=st.lists(
        st.tuples(
            st.sampled_from("123A456B789C*0#D"),
            st.integers(120, 480),  # 15-60 ms on: around the 23 and 40 ms limits
            st.integers(0, 640),  # samples off before the next, at any phase of the frames
            st.sampled_from([-10.0, -33.0, -36.0, -44.0, -47.0]),
            st.sampled_from([0.0, -8.0, 4.0, -9.5]),
            st.sampled_from([0.0, 0.015, -0.015, 0.035]),
        ),
        min_size=1,
        max_size=6,
    ),
    speech_gain=st.sampled_from([0.0, 0.3, 1.0]),
    size=st.integers(1, 9),
)
def test_the_gate_hears_what_the_receiver_hears_without_it(
    digits: list[tuple[str, int, int, float, float, float]], speech_gain: float, size: int
) -> None:
    parts = [np.zeros(400)]
    for digit, on, off, level, twist, deviation in digits:
        parts += [_burst(digit, on, level, twist, deviation), np.zeros(off)]
    tones = np.concatenate([*parts, np.zeros(1600)])
    talk = np.resize(SPEECH, len(tones)) * speech_gain
    with_gate, without, _ = _gated_and_not(_as_samples(tones + talk), size)
    assert with_gate == without


def test_speech_is_passed_over_and_keys_in_it_are_heard() -> None:
    # Speech, with a key every second: most blocks are not transformed, every key is heard.
    x = SPEECH[: 8 * RATE].copy()
    for i, digit in enumerate("1234567"):
        start = (i + 1) * RATE + 37 * i
        x[start : start + 480] += _burst(digit, 480, -10.0, 0.0, 0.0)
    with_gate, without, transformed = _gated_and_not(_as_samples(x), 5)
    assert "".join(d.digit for d in with_gate) == "1234567"  # type: ignore[attr-defined]
    assert with_gate == without
    assert transformed < 8 * 10 // 3  # of 80 blocks


@pytest.mark.parametrize("digit", ["1", "5", "D"])
def test_a_frame_of_a_digit_has_nearly_all_its_power_in_the_two_tones(digit: str) -> None:
    block = _burst(digit, 5 * FRAME, -20.0, 0.0, 0.0).reshape(-1, FRAME)
    shares = features(block).dtmf_share
    assert shares is not None and min(shares) > 0.9 and max(shares) < 1.1
    speech = features(SPEECH[RATE : RATE + 5 * FRAME].reshape(-1, FRAME)).dtmf_share
    assert speech is not None and max(speech) < dtmf.MIN_PURITY
    # A second at a time (a file), the receiver's own transform costs less than the shares.
    assert features(np.resize(block, (50, FRAME))).dtmf_share is None


def test_a_quiet_block_cannot_hold_a_digit() -> None:
    # Below the spectrum's floor no frame is transformed: its share is 0, which must be safe:
    # a window's power at any frequency is at most 3.02 times its mean power (Cauchy-Schwarz
    # with the Hann window), and the spectrum's floor is more than that below DTMF's.
    window = np.hanning(dtmf.WINDOW)
    bound = float(window @ window) * dtmf.WINDOW * dtmf._POWER_SCALE
    assert bound * spectrum._SPECTRUM_FLOOR < dtmf._FLOOR
    quiet = _burst("5", 5 * FRAME, -54.0, 0.0, 0.0).reshape(-1, FRAME)  # -51 dBFS together
    assert features(quiet).dtmf_share == [0.0] * 5


def test_the_analyzer_gives_the_gate_its_shares() -> None:
    analyzer = LineAnalyzer()
    seen: list[list[float] | None] = []
    feed = analyzer.dtmf.feed

    def recording(frame: np.ndarray, shares: list[float] | None = None) -> list[object]:
        seen.append(shares)
        return feed(frame, shares)  # type: ignore[return-value]

    analyzer.dtmf.feed = recording  # type: ignore[method-assign,assignment]
    for start in range(0, 10 * FRAME, FRAME):
        analyzer.feed(_as_samples(SPEECH[start : start + FRAME]))
    assert len(seen) == 2 and all(shares is not None and len(shares) == 5 for shares in seen)
