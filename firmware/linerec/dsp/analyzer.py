"""All the line-signal analysis of one line, frame by frame: the one thing the rest uses.

The level is measured on every 20 ms frame (hook sense from audio needs it). The detectors run
on blocks of `STREAM_FRAMES` frames (100 ms): at 160 samples the fixed cost of each numpy call
outweighs its arithmetic, so five frames cost little more than one. A digit is therefore
known up to 100 ms later than frame by frame would know it; the daemon's delay line (200 ms)
still holds its audio when the digit's silence is decided (the daemon takes a shorter block
when its delay line is shorter).
"""

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
from linerec.dsp.spectrum import features
from linerec.dsp.voice import Voice, VoiceDetector

FRAME = 160
STREAM_FRAMES = 5  # frames analysed together on a live line (100 ms)
BLOCK = FRAME * 50  # a second of audio per numpy call when analysing a file

Heard = DtmfDigit | CallerId | CallerIdError | Tone | Quiet | Voice


class LineAnalyzer:
    """Feeds each frame to every detector; returns what they heard."""

    def __init__(self, *, block_frames: int = STREAM_FRAMES, frame_levels: bool = False) -> None:
        self.block_frames = block_frames
        # Hook sense from audio needs each frame's level as it comes; otherwise the level is
        # taken from the block's analysis, which measures it anyway.
        self.frame_levels = frame_levels
        self.level = LevelMeter()
        self.dtmf = DtmfDetector()
        self.fsk = FskCallerIdReceiver()
        self.dtmf_callerid = DtmfCallerIdReceiver()
        self.progress = ProgressToneDetector()
        self.voice = VoiceDetector()
        self._pending: list[Samples] = []  # frames not yet analysed (fewer than a block)

    def feed(self, frame: Samples) -> list[Heard]:
        """One 20 ms frame (as on the appliance). What the detectors heard comes out once a
        block of frames is complete (`pending` frames are waiting)."""
        if len(frame) != FRAME:
            self.level.feed(frame)  # a last, short piece: it may hold the end of a caller ID burst
            heard = self.analyse_pending()
            heard += self._digits(self.dtmf.feed(frame))
            heard += self.fsk.feed(frame)
            self.voice.skip(len(frame))
            return heard
        if self.frame_levels:
            self.level.feed(frame)
        self._pending.append(frame)
        if len(self._pending) < self.block_frames:
            return []
        return self.analyse_pending()

    @property
    def pending(self) -> int:
        """Samples fed but not yet analysed."""
        return len(self._pending) * FRAME

    def analyse_pending(self) -> list[Heard]:
        """Analyse the frames waiting for their block now (the stream stops or pauses)."""
        if not self._pending:
            return []
        block = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        self._pending = []
        return self._analyse(block)

    def feed_block(self, block: Samples) -> list[Heard]:
        """Many frames at once (a file): the same results, the numpy work done in bulk."""
        heard = self.analyse_pending()
        whole = len(block) // FRAME * FRAME
        if whole == len(block):
            return heard + self._analyse(block)
        return heard + self._analyse(block[:whole]) + self.feed(block[whole:])

    def _analyse(self, block: Samples) -> list[Heard]:
        whole = len(block) // FRAME * FRAME
        if not whole:
            return []  # a piece shorter than a frame: `feed` takes it
        frames = block[:whole].reshape(-1, FRAME)
        audio = block[:whole].astype(np.float64)  # once, for all
        seen = features(audio.reshape(-1, FRAME))
        heard: list[Heard] = self._digits(self.dtmf.feed(audio, seen.dtmf_share))
        if not self.frame_levels:
            self.level.feed_powers(seen.power, FRAME)
        said: list[tuple[int, Heard]] = [
            *self.fsk.feed_block(frames, seen),
            *self.progress.feed_block(frames, seen),
            *self.voice.feed_block(seen),
        ]
        if said:  # in the order frame by frame would have said them
            said.sort(key=lambda pair: pair[0])
            heard += [event for _, event in said]
        return heard

    def _digits(self, digits: list[DtmfDigit]) -> list[Heard]:
        heard: list[Heard] = []
        for digit in digits:
            heard.append(digit)
            heard += self.dtmf_callerid.feed(digit)
        return heard

    def flush(self) -> list[Heard]:
        heard = self.analyse_pending()
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
