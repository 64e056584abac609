"""All the line-signal analysis of one line, frame by frame: the one thing the rest uses."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict

import numpy as np

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
from linerec.dsp.spectrum import features, frame_features
from linerec.dsp.voice import Voice, VoiceDetector

FRAME = 160
BLOCK = FRAME * 50  # a second of audio per numpy call when analysing a file

Heard = DtmfDigit | CallerId | CallerIdError | Tone | Quiet | Voice


class LineAnalyzer:
    """Feeds each frame to every detector; returns what they heard."""

    def __init__(self) -> None:
        self.level = LevelMeter()
        self.dtmf = DtmfDetector()
        self.fsk = FskCallerIdReceiver()
        self.dtmf_callerid = DtmfCallerIdReceiver()
        self.progress = ProgressToneDetector()
        self.voice = VoiceDetector()

    def feed(self, frame: Samples) -> list[Heard]:
        """One 20 ms frame (as on the appliance)."""
        self.level.feed(frame)
        heard: list[Heard] = self._digits(self.dtmf.feed(frame))
        if len(frame) == FRAME:
            seen = frame_features(frame)
            heard += self.fsk.feed(frame, seen)
            heard += self.progress.feed(frame, seen)
            heard += self.voice.feed(seen)
        else:  # a last, short piece: it may hold the end of a caller ID burst
            heard += self.fsk.feed(frame)
            self.voice.skip(len(frame))
        return heard

    def feed_block(self, block: Samples) -> list[Heard]:
        """Many frames at once (a file): the same results, the numpy work done in bulk."""
        whole = len(block) // FRAME * FRAME
        frames = block[:whole].reshape(-1, FRAME)
        heard: list[Heard] = self._digits(self.dtmf.feed(block[:whole]))
        for frame, seen in zip(frames, features(frames.astype(np.float64)), strict=True):
            heard += self.fsk.feed(frame, seen)
            heard += self.progress.feed(frame, seen)
            heard += self.voice.feed(seen)
        return heard + (self.feed(block[whole:]) if whole < len(block) else [])

    def _digits(self, digits: list[DtmfDigit]) -> list[Heard]:
        heard: list[Heard] = []
        for digit in digits:
            heard.append(digit)
            heard += self.dtmf_callerid.feed(digit)
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
    for start in range(0, len(samples), BLOCK):
        heard += analyzer.feed_block(samples[start : start + BLOCK])
    heard += analyzer.flush()
    return sorted(heard, key=lambda event: event.t)


_NAMES = {
    DtmfDigit: "dtmf",
    CallerId: "callerid",
    CallerIdError: "callerid_error",
    Tone: "tone",
    Quiet: "quiet",
    Voice: "voice",
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
