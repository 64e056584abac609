"""All the line-signal analysis of one line, frame by frame: the one thing the rest uses."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict

from linerec.codec import Samples
from linerec.dsp.callerid import (
    CallerId,
    CallerIdError,
    DtmfCallerIdReceiver,
    FskCallerIdReceiver,
)
from linerec.dsp.dtmf import DtmfDetector, DtmfDigit
from linerec.dsp.level import LevelMeter
from linerec.dsp.progress import ProgressToneDetector, Quiet, Tone

FRAME = 160

Heard = DtmfDigit | CallerId | CallerIdError | Tone | Quiet


class LineAnalyzer:
    """Feeds each frame to every detector; returns what they heard."""

    def __init__(self) -> None:
        self.level = LevelMeter()
        self.dtmf = DtmfDetector()
        self.fsk = FskCallerIdReceiver()
        self.dtmf_callerid = DtmfCallerIdReceiver()
        self.progress = ProgressToneDetector()

    def feed(self, frame: Samples) -> list[Heard]:
        self.level.feed(frame)
        heard: list[Heard] = []
        for digit in self.dtmf.feed(frame):
            heard.append(digit)
            heard += self.dtmf_callerid.feed(digit)
        heard += self.fsk.feed(frame)
        heard += self.progress.feed(frame)
        return heard

    def flush(self) -> list[Heard]:
        heard: list[Heard] = []
        for digit in self.dtmf.flush():
            heard.append(digit)
            heard += self.dtmf_callerid.feed(digit)
        return heard + list(self.fsk.flush())


def analyze(samples: Samples) -> list[Heard]:
    """Everything heard in a recording (8 kHz mono), in time order."""
    analyzer = LineAnalyzer()
    heard: list[Heard] = []
    for start in range(0, len(samples), FRAME):
        heard += analyzer.feed(samples[start : start + FRAME])
    heard += analyzer.flush()
    return sorted(heard, key=lambda event: event.t)


_NAMES = {
    DtmfDigit: "dtmf",
    CallerId: "callerid",
    CallerIdError: "callerid_error",
    Tone: "tone",
    Quiet: "quiet",
}


def as_record(event: Heard) -> dict[str, object]:
    """One JSON object: `{"t": 1.52, "event": "dtmf", "digit": "5", "duration": 0.06}`."""
    fields = {k: v for k, v in asdict(event).items() if v != "" and k != "t"}
    if isinstance(event, Quiet):
        return {"t": event.t, "event": event.name}
    return {"t": event.t, "event": _NAMES[type(event)], **fields}


def as_text(events: Iterable[Heard]) -> list[str]:
    lines = []
    for event in events:
        record = as_record(event)
        t, name = record.pop("t"), record.pop("event")
        details = " ".join(f"{key}={value}" for key, value in record.items())
        lines.append(f"{t:9.3f}  {name:15} {details}".rstrip())
    return lines
