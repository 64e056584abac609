"""The energy gate: a block below the spectrum floor is not transformed, and nothing any
detector reports changes because of that."""

from __future__ import annotations

import numpy as np
import pytest

from linerec.dsp import spectrum
from linerec.dsp.analyzer import analyze
from linerec.dsp.callerid import GATE_FLOOR_DBFS
from linerec.dsp.progress import MIN_LEVEL_DBFS
from linerec.dsp.voice import FLOOR_DBFS
from linerec.sim.callerid import mdmf, modulate
from linerec.tones import dtmf_pair, tone


def test_every_detector_looks_only_above_the_spectrum_floor() -> None:
    assert min(GATE_FLOOR_DBFS, MIN_LEVEL_DBFS, FLOOR_DBFS) >= spectrum.SPECTRUM_FLOOR_DBFS


def _line() -> np.ndarray:
    rng = np.random.default_rng(5)
    quiet = rng.normal(0, 3, 8000 * 3)  # line hiss, about -80 dBFS
    parts = [
        quiet,
        tone((350.0, 440.0), 2.0, -20),  # dial tone
        quiet,
        tone(dtmf_pair("5"), 0.06, -25),
        quiet[:800],
        tone(dtmf_pair("7"), 0.06, -25),
        quiet,
        modulate(mdmf(number="5551234567"), level_dbfs=-20).astype(np.float64),
        quiet,
        quiet,
        quiet,
        quiet,
    ]
    x = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])
    return np.clip(np.rint(x + rng.normal(0, 3, len(x))), -32768, 32767).astype(np.int16)


def test_gated_analysis_hears_what_full_analysis_hears(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _line()
    gated = analyze(x)
    kinds = {type(event).__name__ for event in gated}
    assert {"DtmfDigit", "CallerId", "Tone", "Quiet"} <= kinds
    monkeypatch.setattr(spectrum, "_SPECTRUM_FLOOR", 0.0)  # every block transformed
    assert analyze(x) == gated
