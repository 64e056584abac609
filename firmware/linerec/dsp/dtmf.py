"""DTMF receiver: 20 ms frames in, one event per digit out. Pure numpy, bounded state.

How it decides, every 10 ms, on the last 20 ms of audio (a *window*):

1. Energy at the eight DTMF frequencies from one Hann-windowed DFT (a matrix product), and
   the window's total energy. Windows overlap by half, so both come from the 10 ms halves:
   each half is transformed once, with the first and with the second half of the window.
2. Talk-off first: the strongest low-group and high-group tones must carry most of the
   window's energy together (speech spreads its energy); most windows end here. The rest are
   probed again, each tone at its frequency and 1.2 % either side (the largest of the three,
   so a tone 1.5 % off loses no level to the window): both tones must be above the level
   floor, stand clear of the other tones of their group, and keep the twist in bounds (high
   group up to 8 dB weaker or 4 dB stronger than the low group).
3. The tone must fill the window: the energy of each half of the window is compared, so a
   window that only partly overlaps a burst fails. Two such windows in a row are needed, so a
   burst of 23 ms or less never makes a digit and one of 40 ms always does.
4. Frequency: the phase advance of each tone between two sub-windows 5 ms apart gives its
   frequency to a few Hz (unambiguous within +-100 Hz). Within +-2.5 % of nominal passes:
   Q.24 asks to accept +-1.5 % and reject +-3.5 %.

A digit is reported once, when it ends, with its start time and duration. One window that
fails inside a digit (a noise burst) does not split it.

On a live line most blocks are speech or silence: given each frame's share of its power in
its strongest low and high tone (`spectrum.features` measures it in the product that gives
the frame's spectrum), a block in which no frame reaches the talk-off share, with no digit
sounding or begun, is passed over before step 1 (every other window is a frame, so no two
windows in a row could pass).
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from linerec.codec import RATE, Samples

HOP = 80  # 10 ms
WINDOW = 160  # 20 ms
SUB = 120  # sub-windows for the frequency estimate, 40 samples (5 ms) apart
LOW = (697.0, 770.0, 852.0, 941.0)
HIGH = (1209.0, 1336.0, 1477.0, 1633.0)
KEYS = ("123A", "456B", "789C", "*0#D")

# Decision thresholds (see the module docstring; tuned on the tests' accept/reject grid).
MIN_LEVEL_DBFS = -45.0  # per tone; -30 dBm0 is about -33 dBFS at the usual 3 dBm0 = 0 dBFS, and
# a tone 8 dB below that (twist) must still pass, with a margin
MAX_TWIST_NORMAL_DB = 8.5  # high group weaker (8 dB must pass, with a margin)
MAX_TWIST_REVERSE_DB = 4.5  # high group stronger (4 dB must pass)
MIN_PURITY = 0.70  # share of the window's energy in the two tones
MIN_PEAK_RATIO_DB = 8.0  # best tone over the next best of its group
MAX_HALF_RATIO_DB = 1.5  # energy of one half of the window against the other
MAX_FREQ_ERROR = 0.025
PROBE_OFFSET = 0.012  # the power of each tone is read at its frequency and this far either side
MISSES_TO_END = 2  # windows without the digit before it counts as ended


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfDigit:
    t: float  # start, seconds from the start of the stream
    digit: str
    duration: float


def _dft_matrix(
    frequencies: tuple[float, ...], length: int, window: npt.NDArray[np.float64]
) -> npt.NDArray[np.complex128]:
    n = np.arange(length)
    matrix: npt.NDArray[np.complex128] = np.exp(-2j * np.pi * np.outer(n, frequencies) / RATE)
    return matrix * window[:, None]


_FREQS = LOW + HIGH
_HANN = np.hanning(WINDOW)
# Each tone is probed at its nominal frequency and 1.2 % either side, and its power is the
# largest of the three: a 20 ms window loses up to 1.4 dB on a tone 1.5 % off (25 Hz at
# 1633 Hz) but only the high tone's, which would read as 1.4 dB more twist than is there.
_PROBES = (1 - PROBE_OFFSET, 1.0, 1 + PROBE_OFFSET)
_MATRIX = _dft_matrix(tuple(f * k for k in _PROBES for f in _FREQS), WINDOW, _HANN)
# The same as one real matrix (real parts, then imaginary): real windows need no complex copy.
_REAL_MATRIX = np.concatenate((_MATRIX.real, _MATRIX.imag), axis=1)
_PROBED = _MATRIX.shape[1]
# The nominal frequencies alone, for the halves of a window: a window's DFT is its first
# half's product with the first half of this matrix plus its second half's with the second.
_NOMINAL = _dft_matrix(_FREQS, WINDOW, _HANN)
# Rows: real parts, then imaginary, for a window's first half; the same for its second half.
# The products come out one row per frequency part (one column per 10 ms of audio), so each
# step after them works along contiguous rows.
_HALVES = np.concatenate(
    (_NOMINAL.real[:HOP].T, _NOMINAL.imag[:HOP].T, _NOMINAL.real[HOP:].T, _NOMINAL.imag[HOP:].T)
)
_SUB_HANN = np.hanning(SUB)
_SUB_MATRIX = _dft_matrix(_FREQS, SUB, _SUB_HANN)
_SUB_COLUMNS = [np.ascontiguousarray(_SUB_MATRIX[:, k]) for k in range(len(_FREQS))]
# A sine of amplitude A gives |X| = A * sum(window) / 2; its mean power is A^2 / 2.
_POWER_SCALE = 1 / (2 * (_HANN.sum() / 2) ** 2)
_FLOOR = 32767.0**2 / 2 * 10 ** (MIN_LEVEL_DBFS / 10)
_TWIST_LOW = 10 ** (-MAX_TWIST_NORMAL_DB / 10)
_TWIST_HIGH = 10 ** (MAX_TWIST_REVERSE_DB / 10)
_PEAK_RATIO = 10 ** (MIN_PEAK_RATIO_DB / 10)
_HALF_LOW = 10 ** (-MAX_HALF_RATIO_DB / 10)
_HALF_HIGH = 10 ** (MAX_HALF_RATIO_DB / 10)
# Talk-off on the unscaled sums: |X|^2 of the two tones against the window's sum of squares.
_PURE = MIN_PURITY / (WINDOW * _POWER_SCALE)
# The frames' own share of their power in the two tones (`spectrum.features`) comes from
# another product, rounded differently: a frame below this fails the talk-off test for sure.
_SURELY_IMPURE = MIN_PURITY * (1 - 1e-9)


class DtmfDetector:
    def __init__(self) -> None:
        self._buffer = np.zeros(WINDOW - HOP, dtype=np.float64)  # the last 10 ms
        self._position = 0  # samples seen
        self._digit: str | None = None
        self._start = 0.0
        self._last_hit_end = 0.0
        self._candidate: str | None = None
        self._candidate_start = 0.0
        self._misses = 0

    def feed(
        self, frame: Samples | npt.NDArray[np.float64], shares: list[float] | None = None
    ) -> list[DtmfDigit]:
        """One frame (any length, usually 160 samples); returns digits that ended in it.

        `shares`, if given, is the `dtmf_share` of each 20 ms frame of `frame` (whole frames,
        from `spectrum.features`): with no digit sounding or begun, a block in which no frame
        can be a digit's is passed over without transforming its windows."""
        if (
            shares is not None
            and self._candidate is None
            and self._digit is None
            and max(shares, default=1.0) < _SURELY_IMPURE
            and len(self._buffer) == HOP
            and len(frame) == WINDOW * len(shares)
        ):
            # Every other window is one of the frames, so no two windows in a row can pass:
            # no digit can begin, and none is left begun (`_track` ends at a frame's window).
            self._buffer = np.asarray(frame[-HOP:], dtype=np.float64)
            self._position += len(frame)
            return []
        data = np.concatenate((self._buffer, frame), dtype=np.float64)
        halves = len(data) // HOP
        events: list[DtmfDigit] = []
        if halves > 1:
            hits = self._classify(data, data[: halves * HOP].reshape(halves, HOP))
            base = self._position - len(self._buffer)
            if self._digit is None and not any(hits):
                self._candidate = None  # what tracking each empty window would come to
            else:
                for k, hit in enumerate(hits):
                    if hit is None and self._digit is None:
                        self._candidate = None  # what `_track` makes of an empty window
                        continue
                    t0 = (base + k * HOP) / RATE
                    events += self._track(hit, t0, t0 + WINDOW / RATE)
            data = data[(halves - 1) * HOP :]
        self._buffer = data
        self._position += len(frame)
        return events

    @property
    def sounding_since(self) -> float | None:
        """When the digit sounding now began (None if none): the daemon keeps it out of the
        recording while it lasts, however long it is held."""
        return None if self._digit is None else self._start - HOP / RATE / 2

    def flush(self) -> list[DtmfDigit]:
        """End of the stream: report a digit still sounding."""
        if self._digit is None:
            return []
        event = self._ended()
        self._digit = None
        return [event]

    def _ended(self) -> DtmfDigit:
        # Windows count only when the tone fills them, so the burst began up to one hop
        # before the first and ended up to one hop after the last: split the difference.
        assert self._digit is not None
        start, end = self._start - HOP / RATE / 2, self._last_hit_end + HOP / RATE / 2
        return DtmfDigit(
            t=round(max(start, 0.0), 3), digit=self._digit, duration=round(end - start, 3)
        )

    # -- per window ------------------------------------------------------------------------

    def _classify(
        self, data: npt.NDArray[np.float64], halves: npt.NDArray[np.float64]
    ) -> list[str | None]:
        """The windows of `data` (one per hop), whose halves are the rows of `halves`."""
        count = len(halves) - 1
        energy = np.add.reduce(halves * halves, axis=1)
        sums = energy[:-1] + energy[1:]  # each window's sum of squares
        totals = sums.tolist()
        if max(totals) < 2 * _FLOOR * WINDOW:  # silence, or too quiet for two tones: usual
            return [None] * count
        parts = _HALVES @ halves.T  # (32, halves)
        nominal = parts[:16, :-1] + parts[16:, 1:]  # each window's DFT: real, then imaginary
        np.multiply(nominal, nominal, out=nominal)
        power = nominal[:8] + nominal[8:]  # (8, windows)
        # Talk-off first, for all windows at once: speech spreads its energy, so the two
        # strongest tones (of each group) rarely hold most of it. Only the windows that pass
        # go on (the ufuncs' own reductions: numpy's wrappers cost more than a few windows).
        best = np.maximum.reduce(power[:4]) + np.maximum.reduce(power[4:])
        pure = np.flatnonzero(best >= _PURE * sums).tolist()
        if not pure:
            return [None] * count
        results: list[str | None] = [None] * count
        for i in pure:
            window = data[i * HOP : i * HOP + WINDOW]
            probed = window @ _REAL_MATRIX  # real, then imaginary parts of each probe
            probed *= probed
            tones = ((probed[:_PROBED] + probed[_PROBED:]) * _POWER_SCALE).reshape(3, 8)
            peak = np.maximum.reduce(tones, axis=0).tolist()
            results[i] = self._decide(window, tones[1].tolist(), peak, totals[i] / WINDOW)
        return results

    def _decide(
        self, window: npt.NDArray[np.float64], power: list[float], peak: list[float], total: float
    ) -> str | None:
        # (Plain floats: a few windows a second come here, eight numbers each.)
        low, high = power[:4], power[4:]
        p_low, p_high = max(low), max(high)
        row, col = low.index(p_low), high.index(p_high)
        if p_low + p_high < MIN_PURITY * total:
            return None
        level_low, level_high = peak[row], peak[4 + col]
        if level_low < _FLOOR or level_high < _FLOOR:
            return None
        if not _TWIST_LOW < level_high / level_low < _TWIST_HIGH:
            return None
        # Each tone against the next strongest of its group.
        if p_low < _PEAK_RATIO * sorted(low)[2] or p_high < _PEAK_RATIO * sorted(high)[2]:
            return None
        first, second = float(window[:HOP] @ window[:HOP]), float(window[HOP:] @ window[HOP:])
        if not _HALF_LOW < first / (second + 1e-9) < _HALF_HIGH:
            return None  # the tone does not fill the window: it started or stopped inside it
        digit = KEYS[row][col]
        # A digit already sounding had its frequencies checked when it began.
        if digit != self._digit and not self._frequencies_ok(window, row, 4 + col):
            return None
        return digit

    @staticmethod
    def _frequencies_ok(window: npt.NDArray[np.float64], low: int, high: int) -> bool:
        early, late = window[:SUB], window[WINDOW - SUB :]
        # The DFT is referenced to each sub-window's own start, so a tone exactly on its
        # nominal frequency advances by 2*pi*f*dt; what is left over is the error.
        dt = (WINDOW - SUB) / RATE
        for column in (low, high):
            nominal = _FREQS[column]
            turn = (
                complex(late @ _SUB_COLUMNS[column])
                * complex(early @ _SUB_COLUMNS[column]).conjugate()
            )
            advance = cmath.phase(turn) - 2 * math.pi * nominal * dt
            error = (advance + math.pi) % (2 * math.pi) - math.pi
            if abs(error / (2 * math.pi * dt)) > MAX_FREQ_ERROR * nominal:
                return False
        return True

    # -- digits ----------------------------------------------------------------------------

    def _track(self, hit: str | None, start: float, end: float) -> list[DtmfDigit]:
        events: list[DtmfDigit] = []
        if self._digit is not None:
            if hit == self._digit:
                self._misses = 0
                self._last_hit_end = end
                return events
            self._misses += 1
            if self._misses < MISSES_TO_END and hit is None:
                return events
            events.append(self._ended())
            self._digit = None
        if hit is None:
            self._candidate = None
        elif hit == self._candidate:
            # Two windows in a row: a digit. It began about where the first window did.
            self._digit, self._start, self._last_hit_end = hit, self._candidate_start, end
            self._misses = 0
            self._candidate = None
        else:
            self._candidate, self._candidate_start = hit, start
        return events
