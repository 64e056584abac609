"""Caller ID: FSK (Bell 202 and ITU V.23) and DTMF (A<number>C), streaming and bounded.

FSK, as sent by the exchange (Telcordia GR-30, ETSI EN 300 659, BT SIN 227):
channel seizure (alternating bits), a mark period, then the message as 8N1 asynchronous
bytes at 1200 baud: type (0x04 SDMF, 0x80 MDMF), length, payload, and a checksum that makes
the sum of all bytes 0 modulo 256. Bell 202 uses 1200 Hz for mark and 2200 Hz for space;
V.23 1300 and 2100 Hz.

The receiver here:
1. gates cheaply: per 20 ms frame, the share of the frame's energy at the four FSK
   frequencies; frames that do not look like FSK cost almost nothing;
2. demodulates a burst that looks like FSK with a delay-line FM discriminator (mix to 1700 Hz,
   low-pass, the phase step per sample is the frequency) - amplitude does not matter;
3. when the burst ends, finds the start bits, samples each bit at its centre, and looks for a
   message whose checksum holds. A bad checksum is reported as such, never guessed at.

DTMF caller ID (used in parts of Europe and Asia) arrives as digits before the first ring:
`A` (or `D`) number `C`, or `B` + a two-digit absence code + `C` (00 unavailable, 10 private).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from linerec.codec import RATE, Samples
from linerec.dsp.dtmf import DtmfDigit
from linerec.dsp.spectrum import BlockFeatures, FrameFeatures, frame_features

BAUD = 1200
SAMPLES_PER_BIT = RATE / BAUD
CENTRE = 1700.0  # between the mark and space of both standards
MIN_BURST = 0.08  # seconds of FSK before a burst is worth decoding
MAX_BURST = 4.0  # seconds kept at most (a message is well under one second)
GATE_SHARE = 0.8  # share of a frame's energy in the FSK band
HANGOVER = 2  # frames that fail the gate before a burst counts as over
GATE_FLOOR_DBFS = -48.0


def _lowpass(cutoff: float, taps: int) -> npt.NDArray[np.float64]:
    n = np.arange(taps) - (taps - 1) / 2
    h: npt.NDArray[np.float64] = np.sinc(2 * cutoff / RATE * n) * np.hamming(taps)
    normalised: npt.NDArray[np.float64] = h / float(h.sum())
    return normalised


# Baseband low-pass: the +-400/500 Hz tones and their keying sidebands pass; most of the
# noise of the 4 kHz channel does not.
_LOWPASS = _lowpass(900.0, 21)
_SMOOTH = np.ones(3) / 3  # the frequency, averaged over about half a bit

# The parameter types of MDMF and what they are called in our events.
_MDMF = {
    0x01: "datetime",
    0x02: "number",
    0x03: "number",
    0x04: "number_absent",
    0x07: "name",
    0x08: "name_absent",
}
_ABSENT = {"O": "out of area", "P": "private"}


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerId:
    """A caller ID message heard on the line."""

    t: float
    standard: str  # "bell202", "v23" or "dtmf"
    format: str  # "sdmf", "mdmf" or "dtmf"
    number: str = ""
    name: str = ""
    datetime: str = ""  # MMDDHHMM as sent
    number_absent: str = ""  # "private", "out of area", "unavailable"
    name_absent: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerIdError:
    """FSK that looked like caller ID but did not decode (bad checksum, cut short)."""

    t: float
    standard: str
    reason: str


CallerIdEvent = CallerId | CallerIdError


_GATE_FLOOR = 32767.0**2 / 2 * 10 ** (GATE_FLOOR_DBFS / 10)


@dataclass(slots=True)
class _Burst:
    start: float  # when the first frame that looked like FSK began
    frames: list[Samples] = field(default_factory=list)
    quiet: int = 0  # frames in a row that did not look like FSK (noise can break the gate)


def _looks_like_fsk(seen: FrameFeatures) -> bool:
    # Nearly all of the frame's energy between 1000 and 2400 Hz: FSK keeps it there (the
    # seizure too, whose energy sits beside the tones); speech rarely does for 80 ms running.
    return seen.power >= _GATE_FLOOR and seen.fsk_share > GATE_SHARE


class FskCallerIdReceiver:
    def __init__(self) -> None:
        self._position = 0
        self._burst: _Burst | None = None
        self._previous: Samples | None = None

    def feed(self, frame: Samples, seen: FrameFeatures | None = None) -> list[CallerIdEvent]:
        """One 20 ms frame, with its features if the caller has them already."""
        t = self._position / RATE
        self._position += len(frame)
        looks_fsk = len(frame) == 160 and _looks_like_fsk(seen or frame_features(frame))
        events: list[CallerIdEvent] = []
        if looks_fsk:
            if self._burst is None:
                # Keep the frame before too: the gate opens only once most of a frame is FSK.
                self._burst = _Burst(
                    start=t, frames=[] if self._previous is None else [self._previous]
                )
            self._burst.frames.append(frame)
            self._burst.quiet = 0
            if len(self._burst.frames) * 0.02 >= MAX_BURST:
                events += self._finish()
        elif self._burst is not None:
            self._burst.frames.append(frame)  # the last bits end inside this frame
            self._burst.quiet += 1
            if self._burst.quiet > HANGOVER:
                events += self._finish()
        self._previous = frame
        return events

    def feed_block(
        self, frames: npt.NDArray[np.int16], seen: BlockFeatures
    ) -> list[tuple[int, CallerIdEvent]]:
        """Whole frames (rows) with their features: what `feed` would say of each, with the
        index of the frame it said it at. Outside a burst, a block with no frame that looks
        like FSK is passed over at once (the usual case)."""
        if self._burst is None and (
            max(seen.fsk_share, default=0.0) <= GATE_SHARE
            or not any(
                power >= _GATE_FLOOR and share > GATE_SHARE
                for power, share in zip(seen.power, seen.fsk_share, strict=True)
            )
        ):
            self._position += frames.size
            self._previous = frames[-1]
            return []
        each = seen.frames()
        return [(i, e) for i, frame in enumerate(frames) for e in self.feed(frame, each[i])]

    def flush(self) -> list[CallerIdEvent]:
        return self._finish() if self._burst is not None else []

    def _finish(self) -> list[CallerIdEvent]:
        burst, self._burst = self._burst, None
        assert burst is not None
        samples = np.concatenate(burst.frames).astype(np.float64)
        if len(samples) / RATE < MIN_BURST:
            return []
        return decode_burst(samples, burst.start)


def discriminate(samples: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Instantaneous frequency in Hz, per sample (FM discriminator around 1700 Hz)."""
    n = np.arange(len(samples))
    baseband = samples * np.exp(-2j * np.pi * CENTRE * n / RATE)
    smooth = np.convolve(baseband, _LOWPASS, mode="same")
    step = np.angle(smooth[1:] * np.conj(smooth[:-1]))
    frequency = np.concatenate(([0.0], step)) * RATE / (2 * np.pi) + CENTRE
    return np.convolve(frequency, _SMOOTH, mode="same")


def decode_burst(samples: npt.NDArray[np.float64], start: float) -> list[CallerIdEvent]:
    """Decode one FSK burst into a caller ID message (or an error saying why not)."""
    frequency = discriminate(samples)
    marks = frequency[frequency < CENTRE]
    if len(marks) < 20:
        return []
    standard = "bell202" if float(np.median(marks)) < 1250 else "v23"
    bits = np.where(frequency < CENTRE, 1, 0).astype(np.int8)  # mark = 1
    data = _uart_bytes(bits)
    message = _find_message(data)
    if message is None:
        if len(data) >= 8:  # FSK that carried bytes: say it failed, do not guess
            return [CallerIdError(t=round(start, 3), standard=standard, reason=_why(data))]
        return []
    kind, payload = message
    return [_parse(kind, payload, round(start, 3), standard)]


def _uart_bytes(bits: npt.NDArray[np.int8]) -> list[int]:
    """8N1 framing: each start bit is a mark-to-space edge; sample each bit at its centre."""
    out: list[int] = []
    edges = np.flatnonzero((bits[:-1] == 1) & (bits[1:] == 0)) + 1
    position = 0
    offsets = (np.arange(10) + 0.5) * SAMPLES_PER_BIT
    for edge in edges:
        if edge < position:
            continue
        centres = np.rint(edge + offsets).astype(int)
        if centres[-1] >= len(bits):
            break
        sampled = bits[centres]
        if sampled[0] != 0 or sampled[9] != 1:  # no start bit, or no stop bit: not a byte
            continue
        out.append(int(np.dot(sampled[1:9], 1 << np.arange(8))))
        position = int(centres[9])  # the next start bit comes after this stop bit
    return out


def _find_message(data: list[int]) -> tuple[int, bytes] | None:
    for i in range(len(data) - 2):
        kind, length = data[i], data[i + 1]
        if kind not in (0x04, 0x80, 0x06, 0x82) or i + 2 + length >= len(data):
            continue
        body = data[i : i + 3 + length]
        if sum(body) & 0xFF == 0:
            return kind, bytes(data[i + 2 : i + 2 + length])
    return None


def _why(data: list[int]) -> str:
    for i in range(len(data) - 1):
        if data[i] in (0x04, 0x80) and i + 2 + data[i + 1] >= len(data):
            return "message cut short"
        if data[i] in (0x04, 0x80):
            return "bad checksum"
    return "no message type found"


def _text(payload: bytes) -> str:
    return payload.decode("latin-1").strip()


def _parse(kind: int, payload: bytes, t: float, standard: str) -> CallerId:
    if kind in (0x04, 0x06):  # SDMF: MMDDHHMM then the number, or O / P
        stamp, rest = _text(payload[:8]), _text(payload[8:])
        if rest in _ABSENT:
            return CallerId(
                t=t, standard=standard, format="sdmf", datetime=stamp, number_absent=_ABSENT[rest]
            )
        return CallerId(t=t, standard=standard, format="sdmf", datetime=stamp, number=rest)
    fields: dict[str, str] = {}
    i = 0
    while i + 2 <= len(payload):
        code, length = payload[i], payload[i + 1]
        value = _text(payload[i + 2 : i + 2 + length])
        name = _MDMF.get(code)
        if name is not None:
            if name.endswith("_absent"):
                value = _ABSENT.get(value, value)
            fields.setdefault(name, value)
        i += 2 + length
    return CallerId(t=t, standard=standard, format="mdmf", **fields)


class DtmfCallerIdReceiver:
    """`A`/`D` number `C`, or `B` code `C`, from the DTMF receiver's digits."""

    def __init__(self, gap: float = 0.5) -> None:
        self.gap = gap
        self._digits = ""
        self._start = 0.0
        self._last_end = 0.0

    def feed(self, digit: DtmfDigit) -> list[CallerId]:
        if self._digits and digit.t - self._last_end > self.gap:
            self._digits = ""
        self._last_end = digit.t + digit.duration
        if not self._digits:
            if digit.digit not in "ABD":
                return []
            self._start = digit.t
        self._digits += digit.digit
        if digit.digit != "C" or len(self._digits) < 2:
            return []
        digits, self._digits = self._digits, ""
        body = digits[1:-1]
        if digits[0] == "B":
            reason = {"00": "unavailable", "10": "private"}.get(body, f"code {body}")
            return [CallerId(t=self._start, standard="dtmf", format="dtmf", number_absent=reason)]
        return [CallerId(t=self._start, standard="dtmf", format="dtmf", number=body)]
