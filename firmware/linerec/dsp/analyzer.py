"""All the line-signal analysis of one line, frame by frame: the one thing the rest uses."""

from __future__ import annotations

from collections.abc import Iterable

from linerec.codec import Samples
from linerec.dsp.dtmf import DtmfDetector, DtmfDigit
from linerec.dsp.level import LevelMeter

FRAME = 160

Heard = DtmfDigit


class LineAnalyzer:
    """Feeds each frame to every detector; returns what they heard, in time order."""

    def __init__(self) -> None:
        self.level = LevelMeter()
        self.dtmf = DtmfDetector()

    def feed(self, frame: Samples) -> list[Heard]:
        self.level.feed(frame)
        return self.dtmf.feed(frame)

    def flush(self) -> list[Heard]:
        return self.dtmf.flush()


def analyze(samples: Samples) -> list[Heard]:
    """Everything heard in a recording (8 kHz mono), in time order."""
    analyzer = LineAnalyzer()
    heard: list[Heard] = []
    for start in range(0, len(samples), FRAME):
        heard += analyzer.feed(samples[start : start + FRAME])
    heard += analyzer.flush()
    return sorted(heard, key=lambda event: event.t)


def as_record(event: Heard) -> dict[str, object]:
    """`{"t": 1.52, "event": "dtmf", "digit": "5", "duration": 0.06}`."""
    return {"t": event.t, "event": "dtmf", "digit": event.digit, "duration": event.duration}


def as_text(events: Iterable[Heard]) -> list[str]:
    return [f"{e.t:9.3f}  dtmf      {e.digit}  ({e.duration * 1000:.0f} ms)" for e in events]
