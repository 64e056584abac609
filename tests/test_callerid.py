"""Caller ID: FSK frames built from the specs with known bytes, and DTMF caller ID."""

from __future__ import annotations

import numpy as np
import pytest

from linerec.dsp.analyzer import analyze
from linerec.dsp.callerid import CallerId, CallerIdError, DtmfCallerIdReceiver, FskCallerIdReceiver
from linerec.dsp.dtmf import DtmfDigit
from linerec.resources import data_path
from linerec.sim.callerid import mdmf, modulate, sdmf
from linerec.tones import dtmf_pair, tone
from linerec.wav import read_mono_8k

RATE = 8000


def receive(signal: np.ndarray, lead: float = 0.3) -> list[object]:
    x = np.concatenate(
        [np.zeros(round(lead * RATE), np.int16), signal, np.zeros(RATE // 2, np.int16)]
    )
    receiver = FskCallerIdReceiver()
    events: list[object] = []
    for start in range(0, len(x), 160):
        events += receiver.feed(x[start : start + 160])
    return events + receiver.flush()


@pytest.mark.parametrize("standard", ["bell202", "v23"])
def test_mdmf_with_date_number_and_name(standard: str) -> None:
    message = mdmf(datetime="11221530", number="5551234567", name="JOHN DOE")
    assert message[:2] == b"\x80\x20" and sum(message) % 256 == 0  # built to the spec
    (event,) = receive(modulate(message, standard=standard))
    assert event == CallerId(
        t=0.3,
        standard=standard,
        format="mdmf",
        number="5551234567",
        name="JOHN DOE",
        datetime="11221530",
    )


def test_sdmf() -> None:
    (event,) = receive(modulate(sdmf(datetime="01020304", number="2125551212")))
    assert event == CallerId(
        t=0.3, standard="bell202", format="sdmf", number="2125551212", datetime="01020304"
    )


@pytest.mark.parametrize(("reason", "code"), [("private", "P"), ("out of area", "O")])
def test_absence_reasons(reason: str, code: str) -> None:
    (sd,) = receive(modulate(sdmf(datetime="01020304", number_absent=reason)))
    (md,) = receive(
        modulate(
            mdmf(datetime="01020304", number_absent=reason, name_absent=reason), standard="v23"
        )
    )
    assert (sd.number_absent, sd.number) == (reason, "")  # type: ignore[attr-defined]
    assert (md.number_absent, md.name_absent) == (reason, reason)  # type: ignore[attr-defined]


def test_bad_checksum_is_reported_not_guessed() -> None:
    events = receive(modulate(mdmf(datetime="11221530", number="5551234567", corrupt=True)))
    assert events == [CallerIdError(t=0.3, standard="bell202", reason="bad checksum")]


@pytest.mark.parametrize("level", [-3.0, -20.0, -35.0, -45.0])
def test_levels(level: float) -> None:
    (event,) = receive(modulate(mdmf(number="5551234567"), level_dbfs=level))
    assert event.number == "5551234567"  # type: ignore[attr-defined]


@pytest.mark.parametrize("snr", [20.0, 12.0])
def test_noise(snr: float) -> None:
    x = modulate(mdmf(number="5551234567", name="A CALLER")).astype(np.float64)
    noisy = x + np.random.default_rng(2).normal(
        0, np.sqrt(np.mean(x**2) / 10 ** (snr / 10)), len(x)
    )
    (event,) = receive(np.clip(noisy, -32768, 32767).astype(np.int16))
    assert event.number == "5551234567"  # type: ignore[attr-defined]


def test_short_seizure_and_mark_as_some_exchanges_send() -> None:
    (event,) = receive(modulate(mdmf(number="5551234567"), seizure_bits=96, mark_bits=55))
    assert event.number == "5551234567"  # type: ignore[attr-defined]


def test_speech_is_not_caller_id() -> None:
    speech = np.concatenate(
        [read_mono_8k(data_path(f"speech/{n}.wav")) for n in ("caller", "office")] * 3
    )
    assert receive(speech) == []


def test_uk_style_alerting_signal_then_v23_before_the_first_ring() -> None:
    line = np.concatenate(
        [
            np.zeros(2400, np.int16),
            tone((2130.0, 2750.0), 0.1, -15),
            np.zeros(800, np.int16),
            modulate(mdmf(number="02071234567"), standard="v23"),
        ]
    )
    names = [
        (type(e).__name__, getattr(e, "name", "") or getattr(e, "number", ""))
        for e in analyze(line)
    ]
    assert names == [("Tone", "alerting"), ("CallerId", "02071234567")]


def dtmf_digits(text: str, start: float = 1.0) -> list[DtmfDigit]:
    return [DtmfDigit(t=start + i * 0.14, digit=d, duration=0.07) for i, d in enumerate(text)]


def test_dtmf_caller_id() -> None:
    receiver = DtmfCallerIdReceiver()
    events = [e for d in dtmf_digits("A4512345678C") for e in receiver.feed(d)]
    assert events == [CallerId(t=1.0, standard="dtmf", format="dtmf", number="4512345678")]
    private = [e for d in dtmf_digits("B10C", 9.0) for e in receiver.feed(d)]
    assert private == [CallerId(t=9.0, standard="dtmf", format="dtmf", number_absent="private")]


def test_dtmf_caller_id_through_the_analyzer() -> None:
    parts = [np.zeros(1600, np.int16)]
    for digit in "D5551234C":
        parts += [tone(dtmf_pair(digit), 0.07, -10), np.zeros(560, np.int16)]
    found = [e for e in analyze(np.concatenate(parts)) if isinstance(e, CallerId)]
    assert [(e.standard, e.number) for e in found] == [("dtmf", "5551234")]
