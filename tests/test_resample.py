import numpy as np
import pytest

from linerec.resample import Resampler


def _gain_db(rate_in: int, rate_out: int, frequency: float) -> float:
    t = np.arange(rate_in) / rate_in
    x = 10000 * np.sin(2 * np.pi * frequency * t)
    y = Resampler(rate_in, rate_out).process(x)
    settled = y[len(y) // 4 :]
    return float(20 * np.log10(np.std(settled) / np.std(x)))


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
@pytest.mark.parametrize("frequency", [300, 1000, 2000, 3400])
def test_telephone_band_is_flat(rate: int, frequency: float) -> None:
    assert abs(_gain_db(rate, 8000, frequency)) < 0.1


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_what_would_alias_is_removed(rate: int) -> None:
    # 4.5 kHz would fold to 3.5 kHz at 8 kHz: it must be at least 60 dB down.
    assert _gain_db(rate, 8000, 4500) < -60


@pytest.mark.parametrize(
    ("rate_in", "rate_out", "period"), [(48000, 8000, 960), (44100, 8000, 882), (8000, 48000, 160)]
)
def test_period_by_period_equals_all_at_once(rate_in: int, rate_out: int, period: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(0, 3000, period * 25)
    whole = Resampler(rate_in, rate_out).process(x)
    streaming = Resampler(rate_in, rate_out)
    parts = [streaming.process(x[i : i + period]) for i in range(0, len(x), period)]
    assert all(len(p) == period * rate_out // rate_in for p in parts)
    assert np.allclose(np.concatenate(parts), whole)


def test_same_rate_passes_through() -> None:
    x = np.arange(160, dtype=np.int16)
    assert np.array_equal(Resampler(8000, 8000).process(x), x)


@pytest.mark.parametrize(("rate_in", "rate_out"), [(48000, 8000), (16000, 8000), (8000, 48000)])
def test_chunks_of_any_length_equal_all_at_once(rate_in: int, rate_out: int) -> None:
    # Periods that are not a whole number of output samples (a short read, a 44.1 kHz-style
    # odd length): the samples left over wait for the next chunk.
    rng = np.random.default_rng(2)
    x = rng.normal(0, 3000, 30000)
    whole = Resampler(rate_in, rate_out).process(x)
    streaming = Resampler(rate_in, rate_out)
    cuts = np.cumsum(rng.integers(0, 1500, 60))
    cuts = cuts[cuts < len(x)]
    parts = [streaming.process(p) for p in np.split(x, cuts)]
    assert np.allclose(np.concatenate(parts), whole)
