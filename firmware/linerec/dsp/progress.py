"""Call-progress tones, the CPE alerting signal, silence and a dead line. Frame by frame.

Every 20 ms frame is tonal or not: its energy must sit in a few bins of its spectrum (one or
two narrow peaks), not spread as speech spreads it.
Runs of frames with the same peaks become segments; a segment's exact frequencies come from
a long FFT of its audio (440 and 450 Hz are only 10 Hz apart), which gives it a colour: the
North American precise tones (350, 440, 480, 620 Hz), ETSI/CEPT 425 Hz, the UK 350/400/450 Hz,
the special information tones and the CPE alerting signal. The cadence of the segments then
names the tone. (The FFT waits until a cadence rule, having looked at the segments' lengths,
asks for the colour: in speech most tonal segments, held vowels, are never asked about.)

| plan | tone | frequencies | cadence |
|---|---|---|---|
| North America | dial | 350+440 | continuous |
| | ringback | 440+480 | 2 s on, 4 s off |
| | busy | 480+620 | 0.5 s on, 0.5 s off |
| | reorder | 480+620 | 0.25 s on, 0.25 s off |
| ETSI (CEPT) | dial | 425 | continuous |
| | ringback | 425 | 1 s on, 4 s off |
| | busy | 425 | 0.5 s on, 0.5 s off |
| | congestion | 425 | 0.25 s on, 0.25 s off (0.2/0.2 to 0.3/0.3) |
| UK | dial | 350+450 | continuous |
| | ringback | 400+450 | 0.4 on, 0.2 off, 0.4 on, 2 off |
| | busy | 400 | 0.375 s on, 0.375 s off |
| | congestion | 400 | 0.4 on, 0.35 off, 0.225 on, 0.525 off |
| any | sit | 913.8 / 1370.6 / 1776.7 (or 985.2 / 1428.5) | three rising tones of 276-380 ms |
| any | alerting | 2130+2750 | 80-100 ms (caller ID follows) |

Each tone is reported once when recognised (a tone that stops and comes back later is
reported again). Silence (nothing above -55 dBFS, and no tone cadence going on) is reported
once after 5 s, and a dead line
(nothing above -70 dBFS: no hum, no hiss, as when the loop is open) after 10 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from linerec.codec import RATE, Samples
from linerec.dsp.spectrum import BlockFeatures, FrameFeatures, frame_features

FRAME = 160
FRAME_SECONDS = FRAME / RATE
MIN_LEVEL_DBFS = -45.0
MAX_SPREAD = 10.0  # bins a tonal frame's energy may spread over (one tone ~3, two ~6)
SILENCE_DBFS, SILENCE_AFTER = -55.0, 5.0
DEAD_DBFS, DEAD_AFTER = -70.0, 10.0
FORGET = 6.5  # seconds unseen before a tone counts as new (the longest gap: ringback, 4 s)

# Frequency sets that make a frame's "colour": checked in this order (more tones first).
_SETS: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("alert", (2130.0, 2750.0)),
    ("na-dial", (350.0, 440.0)),
    ("na-ringback", (440.0, 480.0)),
    ("na-busy", (480.0, 620.0)),
    ("uk-dial", (350.0, 450.0)),
    ("uk-ringback", (400.0, 450.0)),
    ("sit1", (913.8,)),
    ("sit1", (985.2,)),
    ("sit2", (1370.6,)),
    ("sit2", (1428.5,)),
    ("sit3", (1776.7,)),
    ("etsi", (425.0,)),
    ("uk-400", (400.0,)),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tone:
    t: float  # when the tone began
    name: str  # dial, ringback, busy, reorder, congestion, sit, alerting
    plan: str  # na, etsi, uk, or "" (sit, alerting)


@dataclass(frozen=True, slots=True, kw_only=True)
class Quiet:
    t: float  # when the quiet began
    name: str  # "silence" or "line_dead"


ProgressEvent = Tone | Quiet

_FULL = 32767.0**2 / 2
_PEAK_HZ = 150  # a tonal frame's peak, in steps of this
_HISTORY = 12  # segments kept
_FFT = 8192  # a segment's spectrum, zero-padded: peaks to about 1 Hz
_MAX_SEGMENT = RATE  # samples of a segment kept for its spectrum (1 s)
MIN_FRAMES = 3  # the shortest named tone, the alerting signal, lasts 80 ms
# The shortest element of any cadence below (UK congestion's 225 ms, less its 70 ms
# tolerance) lasts 8 frames; a shorter segment is named only if it may be the alerting
# signal, whose energy sits near 2.4 kHz, far above any other tone's (SIT's highest, 1777 Hz,
# is part of a cadence). Speech makes many short tonal segments, all of them lower: naming
# each would cost an FFT for nothing.
CADENCE_FRAMES = 8
ALERT_PEAK = 10  # 1500 Hz, in the 150 Hz steps of a segment's peak


def _db(level: float) -> float:
    return _FULL * 10 ** (level / 10)


# The thresholds as mean squares, worked out once rather than on every frame.
_MIN_POWER, _SILENCE_POWER, _DEAD_POWER = _db(MIN_LEVEL_DBFS), _db(SILENCE_DBFS), _db(DEAD_DBFS)


@dataclass(slots=True)
class _Segment:
    colour: str | None  # what its frequencies make it (None: no tone)
    start: float
    frames: int
    peaks: tuple[int, ...] = ()  # the frame spectrum's strongest bins (50 Hz), to split on
    samples: list[Samples] | None = None
    # The audio that names it, once `_names` picked it and until a cadence rule asks for its
    # colour (then an FFT; most segments picked in speech are never asked about).
    unnamed: npt.NDArray[np.int16] | None = None

    @property
    def seconds(self) -> float:
        return self.frames * FRAME_SECONDS


class ProgressToneDetector:
    def __init__(self) -> None:
        self._position = 0
        self._segments: list[_Segment] = []  # recent history, oldest first, bounded
        self._named = 0  # how many of them have a colour
        self._unnamed = 0  # how many wait to be named (`_Segment.unnamed`)
        self._last_seen: dict[str, float] = {}  # "plan-name" -> when last recognised
        self._quiet_since: float | None = None
        self._dead_since: float | None = None
        self._said_silence = False
        self._said_dead = False
        self._last_tone_at = float("-inf")  # the latest of _last_seen's times
        # What _match said while only the last segment's length changes (speech, silence):
        # (segment, segment count, whether it had reached a second) -> the matches.
        self._matched: tuple[_Segment, int, bool, list[tuple[str, str, _Segment]]] | None = None

    def feed(self, frame: Samples, seen: FrameFeatures | None = None) -> list[ProgressEvent]:
        """One 20 ms frame, with its features if the caller has them already."""
        t = self._position / RATE
        self._position += len(frame)
        if len(frame) != FRAME:
            return []
        seen = seen or frame_features(frame)
        peaks = _tonal_peaks(seen.power, seen.spread, seen.centroid)
        return self._step(frame, t, seen.power, peaks)

    def feed_block(
        self, frames: npt.NDArray[np.int16], seen: BlockFeatures
    ) -> list[tuple[int, ProgressEvent]]:
        """Whole frames (rows) with their features: what `feed` would say of each, with the
        index of the frame it said it at.

        While no segment in the history has a name (speech, silence: most of a call), no
        cadence can match, so a frame only grows or starts a segment and moves the silence
        and dead-line timers: frames are sorted into segments in one tight loop, and only a
        frame whose segment must be named (an FFT, which may give it a name) takes `_step`.
        With a named segment about, a run of frames with no tone in it that only lengthens a
        toneless segment changes no segment but the last one's length; when no cadence
        matches before or after it, only the silence and dead-line timers need each frame.
        """
        powers = seen.power
        # `_tonal_peaks` of each frame, inline (a call per frame costs)
        peaks: list[tuple[int, ...]] = [
            () if power < _MIN_POWER or spread > MAX_SPREAD else (round(centroid / _PEAK_HZ),)
            for power, spread, centroid in zip(powers, seen.spread, seen.centroid, strict=True)
        ]
        base = self._position  # where the block begins
        events: list[tuple[int, ProgressEvent]] = []
        named = self._named > 0
        i = 0
        while i < len(peaks):
            if self._segments and not named:
                stop = self._sort_unnamed(frames, peaks, i, base)
                events += self._quiet_span(powers, i, stop, base)
                self._position = base + stop * FRAME
                if stop == len(peaks):
                    break
                i = stop  # this frame names a segment: as `feed` takes it
            else:
                last = self._segments[-1] if self._segments else None
                if (
                    last is not None
                    and not last.peaks
                    and not peaks[i]
                    and not self._cached_match()
                ):
                    stop = i + 1
                    while stop < len(peaks) and not peaks[stop]:
                        stop += 1
                    last.frames += stop - i
                    if not self._cached_match():  # nothing matches at either length
                        events += self._quiet_span(powers, i, stop, base)
                        self._position = base + stop * FRAME
                        i = stop
                        continue
                    last.frames -= stop - i  # a cadence completes in this run: frame by frame
            t = self._position / RATE
            self._position += FRAME
            events += [(i, e) for e in self._step(frames[i], t, powers[i], peaks[i])]
            named = self._named > 0
            i += 1
        return events

    def _sort_unnamed(
        self,
        frames: npt.NDArray[np.int16],
        peaks: list[tuple[int, ...]],
        start: int,
        base: int,
    ) -> int:
        """Frames from `start` on while no segment has a colour: each grows the last segment
        or starts one, as `_step` would, up to the first frame at which `_step` would pick a
        segment to name (returned; the block's length if none). While some segment waits to
        be named (it may have a colour), also up to the first frame that changes what a rule
        looks at: one that starts a segment, or takes the last one past a length a rule
        tests; `_step` asks the rules there, and between such frames they say the same."""
        last = self._segments[-1]
        watch = self._unnamed > 0
        for i in range(start, len(peaks)):
            if not peaks[i] and not last.peaks:  # toneless grows toneless: no audio kept
                if watch and _lengths(last.frames + 1) != _lengths(last.frames):
                    return i
                last.frames += 1
                continue
            grows = _same_segment(last.peaks, peaks[i])
            if _names(last, grows):
                return i  # `_step` takes this frame
            if watch and (not grows or _lengths(last.frames + 1) != _lengths(last.frames)):
                return i
            if grows:
                _grow(last, frames[i])
            else:
                last = self._begin((base + i * FRAME) / RATE, peaks[i], frames[i])
        return len(peaks)

    def _step(
        self, frame: Samples, t: float, power: float, peaks: tuple[int, ...]
    ) -> list[ProgressEvent]:
        last = self._segments[-1] if self._segments else None
        if last is None:
            self._begin(t, peaks, frame)
        else:
            grows = _same_segment(last.peaks, peaks)
            name = _names(last, grows)
            if grows:
                _grow(last, frame)
            if name:  # a segment that ends, or a long tone before it ends (dial tone never does)
                self._close(last)
            if not grows:
                self._begin(t, peaks, frame)
        events = self._recognise()
        return self._quiet(t, power) + events

    def _begin(self, t: float, peaks: tuple[int, ...], frame: Samples) -> _Segment:
        """A new segment from frame `frame` at `t`; the history keeps the latest 12."""
        segment = _Segment(None, t, 1, peaks, [frame] if peaks else None)
        self._segments.append(segment)
        if len(self._segments) > _HISTORY:
            oldest = self._segments[0]
            self._named -= oldest.colour is not None
            self._unnamed -= oldest.unnamed is not None
            del self._segments[0]
        return segment

    def _quiet_span(
        self, powers: list[float], start: int, stop: int, base: int
    ) -> list[tuple[int, ProgressEvent]]:
        """The silence and dead-line timers over frames `start` to `stop` of a block that
        began at sample `base`, when nothing else about those frames can say anything."""
        if start == stop:
            return []
        run = powers[start:stop]
        if min(run) >= _SILENCE_POWER:  # loud throughout: both timers start over
            self._quiet_since, self._said_silence = None, False
            self._dead_since, self._said_dead = None, False
            return []
        events: list[tuple[int, ProgressEvent]] = []
        for i in range(start, stop):
            events += [(i, e) for e in self._quiet((base + i * FRAME) / RATE, powers[i])]
        return events

    # -- per frame ----------------------------------------------------------------------------

    def _close(self, segment: _Segment) -> None:
        """A segment `_names` picked: its audio is kept to name it by when a cadence rule asks
        (`_colour`; the FFT costs, and in speech no rule asks about most of them)."""
        assert segment.samples  # `_names` picks only segments with audio
        segment.unnamed = np.concatenate(segment.samples)
        segment.samples = None
        self._unnamed += 1

    def _colour(self, segment: _Segment) -> str | None:
        """What a segment's frequencies make it, from a long FFT of its audio (once)."""
        if segment.unnamed is None:
            return segment.colour
        audio = segment.unnamed.astype(np.float64)
        segment.unnamed = None
        self._unnamed -= 1
        size = min(_FFT, 1 << (4 * len(audio) - 1).bit_length())  # the power of 2 at or above
        spectrum = np.abs(np.fft.rfft(audio * _hann(len(audio)), size))
        frequencies = []
        peak = int(spectrum.argmax())
        top = float(spectrum[peak])
        for second in (False, True):
            if second:
                peak = int(spectrum.argmax())
                if spectrum[peak] < top / 10:  # more than 20 dB below the strongest: not a tone
                    break
            frequencies.append(peak * RATE / size)
            guard = round(40 * size / RATE)  # 40 Hz either side: the same tone
            spectrum[max(peak - guard, 0) : peak + guard] = 0
        segment.colour = _name(sorted(frequencies))
        self._named += segment.colour is not None
        return segment.colour

    def _quiet(self, t: float, power: float) -> list[ProgressEvent]:
        events: list[ProgressEvent] = []
        recent_tone = t - self._last_tone_at < FORGET  # any tone seen within FORGET
        if power < _SILENCE_POWER and not recent_tone:
            self._quiet_since = t if self._quiet_since is None else self._quiet_since
            if not self._said_silence and t + FRAME_SECONDS - self._quiet_since >= SILENCE_AFTER:
                self._said_silence = True
                events.append(Quiet(t=round(self._quiet_since, 3), name="silence"))
        else:
            self._quiet_since, self._said_silence = None, False
        if power < _DEAD_POWER:
            self._dead_since = t if self._dead_since is None else self._dead_since
            if not self._said_dead and t + FRAME_SECONDS - self._dead_since >= DEAD_AFTER:
                self._said_dead = True
                events.append(Quiet(t=round(self._dead_since, 3), name="line_dead"))
        else:
            self._dead_since, self._said_dead = None, False
        return events

    # -- cadences -----------------------------------------------------------------------------

    def _recognise(self) -> list[ProgressEvent]:
        # A tone is reported when first recognised, and again only after it has not been
        # seen for longer than any cadence's gap.
        now = self._position / RATE
        events: list[ProgressEvent] = []
        for name, plan, first in self._cached_match():
            key = f"{plan}-{name}"
            if now - self._last_seen.get(key, float("-inf")) > FORGET:
                events.append(Tone(t=round(first.start, 3), name=name, plan=plan))
            self._last_seen[key] = now
            self._last_tone_at = now
        return events

    def _cached_match(self) -> list[tuple[str, str, _Segment]]:
        # A segment not named (speech, silence, a tone not yet named) changes nothing _match
        # looks at as it grows, but whether it has lasted a second (and that only when it is
        # toneless: a tonal segment with no colour matches nothing itself): no need to ask
        # again every frame. (One waiting to be named may have a colour: asked every frame.)
        last = self._segments[-1]
        if last.colour is not None or last.unnamed is not None:
            self._matched = None
            return self._match()
        count, long = len(self._segments), last.seconds >= 1.0
        cached = self._matched
        if cached is None or cached[0] is not last or cached[1:3] != (count, long):
            cached = self._matched = (last, count, long, self._match())
        return cached[3]

    def _match(self) -> list[tuple[str, str, _Segment]]:
        """The tones the history ends in. Each rule looks at the lengths first and asks for a
        colour (`_colour`: an FFT if not yet named) only of segments the lengths allow."""
        found: list[tuple[str, str, _Segment]] = []
        segments = self._segments
        if not self._named and not self._unnamed:
            return found  # every rule below asks for a named tone (speech names none)
        colour = self._colour
        last = segments[-1]
        dial = colour(last) if last.seconds >= 1.5 else None
        if dial in _DIALS:
            found.append(("dial", _DIALS[dial], last))
        if (
            len(segments) >= 2
            and 0.06 <= segments[-2].seconds <= 0.14
            and colour(segments[-2]) == "alert"
        ):
            found.append(("alerting", "", segments[-2]))
        if len(segments) >= 4 and not last.peaks:  # (a toneless segment has no colour)
            on1, off, on2 = segments[-4:-1]
            lengths = (on1.seconds, off.seconds, on2.seconds)
            if (
                not off.peaks
                and any(_cadence(cadenced, lengths) is not None for cadenced in _CADENCED)
                and colour(on1) is not None
                and colour(on1) == colour(on2)
            ):
                named = _cadence(colour(on1), lengths)  # type: ignore[arg-type]
                if named is not None:
                    found.append((*named, on1))
        if len(segments) >= 2 and not last.peaks and last.seconds >= 1.0:
            on = segments[-2]
            if 1.6 <= on.seconds <= 2.4 and colour(on) == "na-ringback":
                found.append(("ringback", "na", on))
            elif 0.8 <= on.seconds <= 1.2 and colour(on) == "etsi":
                found.append(("ringback", "etsi", on))
        if (
            len(segments) >= 2
            and not last.peaks
            and 0.3 <= segments[-2].seconds <= 0.5  # the last of the rings below
            and colour(segments[-2]) == "uk-ringback"
        ):
            ons = [s for s in segments[-5:-1] if colour(s) == "uk-ringback"]
            if len(ons) >= 2 and all(0.3 <= s.seconds <= 0.5 for s in ons[-2:]):
                found.append(("ringback", "uk", ons[-2]))
        first_sit = self._sit()
        if first_sit is not None:
            found.append(("sit", "", first_sit))
        return found

    def _sit(self) -> _Segment | None:
        """The first of the three SIT tones the history ends in, if it does: its last three
        SIT-coloured segments are sit1, sit2 and sit3, each of a SIT tone's length. Those are
        the latest three SIT-coloured among the segments of that length, and no segment of
        another length since the first of them is SIT-coloured: named in that order, and only
        as far as needed."""
        segments = self._segments
        may = [_may_be_sit(s) and 0.2 <= s.seconds <= 0.45 for s in segments]
        if sum(may) < 3:
            return None
        found: list[_Segment] = []
        left = sum(may)  # segments of a SIT tone's length not looked at yet
        for segment, candidate in zip(reversed(segments), reversed(may), strict=True):
            if not candidate:
                continue
            if left < 3 - len(found):
                return None  # too few left for three tones
            left -= 1
            colour = self._colour(segment) or ""
            if not colour.startswith("sit"):
                continue
            if colour != ("sit3", "sit2", "sit1")[len(found)]:
                return None
            found.append(segment)
            if len(found) == 3:
                break
        else:
            return None
        first = found[-1]
        since = next(i for i, segment in enumerate(segments) if segment is first) + 1
        for segment, candidate in zip(segments[since:], may[since:], strict=True):
            # A SIT-coloured segment of another length would be among the last three.
            if (
                not candidate
                and _may_be_sit(segment)
                and (self._colour(segment) or "").startswith("sit")
            ):
                return None
        return first


def _same_segment(peaks: tuple[int, ...], then: tuple[int, ...]) -> bool:
    """Whether a frame with `then` peaks continues a segment with `peaks`: both toneless, or
    both tonal within one 150 Hz step of each other (a tone near a step's edge wavers)."""
    return peaks == then or bool(peaks and then and abs(peaks[0] - then[0]) <= 1)


def _may_be_sit(segment: _Segment) -> bool:
    """Whether a segment is, or may be once named, SIT-coloured."""
    return segment.unnamed is not None or (segment.colour or "").startswith("sit")


def _lengths(frames: int) -> tuple[bool, bool, bool]:
    """What the rules of `_match` ask of the last segment's length (frames long): a second
    (ringback's gap), a SIT tone's length, a second and a half (dial tone)."""
    seconds = frames * FRAME_SECONDS  # as `_Segment.seconds`
    return seconds >= 1.0, 0.2 <= seconds <= 0.45, seconds >= 1.5


def _grow(segment: _Segment, frame: Samples) -> None:
    """One more frame of a segment; of a tonal one's audio, its first second is kept."""
    segment.frames += 1
    if segment.samples is not None and len(segment.samples) * FRAME < _MAX_SEGMENT:
        segment.samples.append(frame)


def _names(segment: _Segment, grows: bool) -> bool:
    """Whether the next frame, which grows the segment or ends it, makes `_step` pick it to
    be named (its audio kept for an FFT). A tone long enough for a cadence is picked as it
    reaches that length (dial tone never ends). A tone that ends is picked if long enough for
    a cadence or high enough for the alerting signal; a shorter one is shorter than any tone
    we name (speech makes many such), or too low for the alerting signal: not worth an FFT."""
    if segment.colour is not None or not segment.samples:
        return False  # picked already, or no tone in it
    if grows:
        return segment.frames + 1 == CADENCE_FRAMES
    return segment.frames >= MIN_FRAMES and (
        segment.frames >= CADENCE_FRAMES or segment.peaks[0] >= ALERT_PEAK
    )


def _tonal_peaks(power: float, spread: float, centroid: float) -> tuple[int, ...]:
    """For a tonal frame (a few bins of its spectrum hold its energy), where its energy sits,
    to 150 Hz: enough to split one SIT tone from the next, steady on a dual tone."""
    if power < _MIN_POWER or spread > MAX_SPREAD:
        return ()
    return (round(centroid / _PEAK_HZ),)


@lru_cache(maxsize=64)
def _hann(length: int) -> npt.NDArray[np.float64]:
    """A segment's window (segments are whole frames, so few lengths ever occur)."""
    return np.hanning(length)


def _name(frequencies: list[float]) -> str | None:
    """The colour of a set of measured frequencies (networks hold them to about 1 %)."""
    for colour, wanted, within in _TOLERANCES:
        if len(wanted) == len(frequencies) and all(
            abs(f - w) <= tol for f, w, tol in zip(frequencies, wanted, within, strict=True)
        ):
            return colour
    return None


_DIALS = {"na-dial": "na", "uk-dial": "uk", "etsi": "etsi"}  # colour -> plan
_CADENCED = ("na-busy", "etsi", "uk-400")  # the colours `_cadence` knows

_TOLERANCES = [(colour, wanted, [max(6.0, 0.012 * w) for w in wanted]) for colour, wanted in _SETS]


def _cadence(colour: str, cadence: tuple[float, float, float]) -> tuple[str, str] | None:
    on1, off, on2 = cadence

    def near(value: float, target: float, tolerance: float = 0.1) -> bool:
        return abs(value - target) <= tolerance

    if colour == "na-busy":
        if near(on1, 0.5) and near(off, 0.5) and near(on2, 0.5):
            return "busy", "na"
        if near(on1, 0.25, 0.06) and near(off, 0.25, 0.06) and near(on2, 0.25, 0.06):
            return "reorder", "na"
    if colour == "etsi":
        if near(on1, 0.5) and near(off, 0.5) and near(on2, 0.5):
            return "busy", "etsi"
        if 0.18 <= on1 <= 0.32 and 0.18 <= off <= 0.32 and 0.18 <= on2 <= 0.32:
            return "congestion", "etsi"
    if colour == "uk-400":
        if near(on1, 0.375, 0.07) and near(off, 0.375, 0.07) and near(on2, 0.375, 0.07):
            return "busy", "uk"
        if near(on1, 0.4, 0.07) and near(off, 0.35, 0.07) and near(on2, 0.225, 0.07):
            return "congestion", "uk"
    return None
