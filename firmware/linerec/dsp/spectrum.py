"""What the tone, caller ID and DTMF detectors need to know of each 20 ms frame, computed once.

One Hann-windowed power spectrum per frame (81 bins of 50 Hz), and the same window's power at
the eight DTMF frequencies from the same product, give a few numbers per frame,
computed for a block of frames at a time (a few on the appliance, a second's worth for a
file): the same numbers, the numpy work done in bulk, kept as lists of plain floats, which
a detector reads faster than numpy scalars, and from which it can tell at once that a whole
block holds nothing for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from linerec.codec import RATE
from linerec.dsp.dtmf import HIGH, LOW

FRAME = 160
HANN = np.hanning(FRAME)
BIN_HZ = np.arange(FRAME // 2 + 1) * RATE / FRAME
_FSK_BAND = slice(1000 * FRAME // RATE, 2400 * FRAME // RATE + 1)
# Below this level no detector looks at a frame's spectrum (caller ID's gate, -48 dBFS, is the
# lowest; tones need -45, voice -42): a block of such frames is measured, not transformed.
SPECTRUM_FLOOR_DBFS = -50.0
# The windowed real DFT as one matrix (cosines, then sines): at a few frames per call one
# product costs less than the FFT's set-up; from this many frames on the FFT costs less.
_DFT_FRAMES = 8
_ANGLES = 2 * np.pi * np.outer(np.arange(FRAME), np.arange(FRAME // 2 + 1)) / FRAME
_BINS = FRAME // 2 + 1
# The DTMF frequencies (low group, then high): a frame's DFT at each, in the same product as
# its spectrum, tells the DTMF receiver whether the frame can be a digit. Columns: the tones'
# cosines and the bins' cosines, then the same sines, so that one sum of squares gives the
# tones' powers and the spectrum side by side. (The tones come first in each half: the
# spectrum's columns then come out of the product exactly as they would alone.)
_TONE_ANGLES = 2 * np.pi * np.outer(np.arange(FRAME), LOW + HIGH) / RATE
_TONE_DFT = np.concatenate(
    (HANN[:, None] * np.cos(_TONE_ANGLES), HANN[:, None] * np.sin(_TONE_ANGLES)), axis=1
)
_TONES = len(LOW + HIGH)
_HALF = _TONES + _BINS  # the cosines' columns; the sines' follow
_DFT = np.concatenate(
    (
        _TONE_DFT[:, :_TONES],
        HANN[:, None] * np.cos(_ANGLES),
        _TONE_DFT[:, _TONES:],
        HANN[:, None] * np.sin(_ANGLES),
    ),
    axis=1,
)
# A sine of amplitude A gives |X| = A * sum(window) / 2; its mean power is A^2 / 2.
_TONE_SCALE = 1 / (2 * (float(HANN.sum()) / 2) ** 2)
# A spectrum's total, its energy in the FSK band and its first moment, in one product.
_IN_FSK_BAND = np.zeros(len(BIN_HZ))
_IN_FSK_BAND[_FSK_BAND] = 1.0
_SUMS = np.stack((np.ones(len(BIN_HZ)), _IN_FSK_BAND, BIN_HZ), axis=1)
_SPECTRUM_FLOOR = 32767.0**2 / 2 * 10 ** (SPECTRUM_FLOOR_DBFS / 10)


class FrameFeatures(NamedTuple):
    """(A tuple: made for every frame a detector looks at one by one, it must cost little.)"""

    power: float  # mean square of the frame
    fsk_share: float  # share of the frame's (windowed) energy between 1000 and 2400 Hz
    spread: float  # how many bins its energy is spread over (a tone: 3, two: 6; speech: many)
    centroid: float  # where its energy sits, in Hz


@dataclass(frozen=True, slots=True)
class BlockFeatures:
    """The features of a block of frames, a list of each (one entry per frame)."""

    power: list[float]
    fsk_share: list[float]
    spread: list[float]
    centroid: list[float]
    # Per frame, the share of its power in its strongest DTMF low and high tone (a digit's
    # frame: about 1), for the DTMF receiver's gate; None when not measured (a block long
    # enough for the FFT: there the receiver's own transform costs less than measuring it).
    dtmf_share: list[float] | None = None

    def __len__(self) -> int:
        return len(self.power)

    def frames(self) -> list[FrameFeatures]:
        """Frame by frame, for a detector that must look at each."""
        return list(map(FrameFeatures, self.power, self.fsk_share, self.spread, self.centroid))


def _sum_rows(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.add.reduce(values, axis=1)  # type: ignore[no-any-return]


def features(frames: npt.NDArray[np.float64]) -> BlockFeatures:
    """The features of each row of `frames` (shape (k, 160))."""
    # (The ufuncs' own reductions: at a few frames a call, numpy's Python wrappers cost more
    # than the arithmetic.)
    power = (_sum_rows(frames * frames) / FRAME).tolist()
    if max(power, default=0.0) < _SPECTRUM_FLOOR:  # a quiet line: nothing to look for
        # (No DTMF tone reaches the receiver's floor either: -45 dBFS, 5 dB above this.)
        zeros = [0.0] * len(power)
        return BlockFeatures(power, zeros, [np.inf] * len(power), zeros, zeros)
    dtmf: list[float] | None = None
    if len(frames) <= _DFT_FRAMES:
        bins = frames @ _DFT
        np.multiply(bins, bins, out=bins)
        both = bins[:, :_HALF] + bins[:, _HALF:]  # the tones' powers, then the spectrum
        tones, spectrum = both[:, :_TONES], both[:, _TONES:]
        # The strongest tone of each group, as the DTMF receiver's talk-off test takes them.
        strongest = np.maximum.reduce(tones.reshape(-1, 2, 4), axis=2).tolist()
        dtmf = [
            (low + high) * _TONE_SCALE / p if p > 0 else 0.0
            for (low, high), p in zip(strongest, power, strict=True)
        ]
    else:
        parts = np.fft.rfft(frames * HANN, axis=1).view(np.float64)  # real, imaginary, ...
        np.multiply(parts, parts, out=parts)
        spectrum = parts[:, 0::2] + parts[:, 1::2]
    square_sums: list[float] = _sum_rows(spectrum * spectrum).tolist()
    sums = (spectrum @ _SUMS).tolist()  # per frame: total, energy in the FSK band, moment
    if min(square_sums) > 0 < min(total for total, _, _ in sums):  # the usual case
        # (On plain floats: at a few frames a numpy call costs more than its arithmetic; the
        # same divisions, so the same numbers.)
        fsk_share = [fsk / total for total, fsk, _ in sums]
        centroid = [moment / total for total, _, moment in sums]
        spread = [
            total * total / square for (total, _, _), square in zip(sums, square_sums, strict=True)
        ]
        return BlockFeatures(power, fsk_share, spread, centroid, dtmf)
    total = np.array([row[0] for row in sums])
    squares = np.array(square_sums)
    safe = np.where(total > 0, total, 1.0)
    fsk = spectrum[:, _FSK_BAND].sum(axis=1) / safe
    spreads = np.where(squares > 0, safe**2 / np.where(squares > 0, squares, 1.0), np.inf)
    centroids = spectrum @ BIN_HZ / safe
    zero = total <= 0  # energy only where the window is zero (a click at the edge)
    fsk[zero], spreads[zero] = 0.0, np.inf
    return BlockFeatures(power, fsk.tolist(), spreads.tolist(), centroids.tolist(), dtmf)


def frame_features(frame: npt.NDArray[np.generic]) -> FrameFeatures:
    """The same numbers for one frame, with one-dimensional numpy (cheaper for one)."""
    x = np.asarray(frame, dtype=np.float64)
    power = float(x @ x) / FRAME
    bins = np.fft.rfft(x * HANN)
    spectrum = bins.real**2 + bins.imag**2
    total = float(spectrum.sum())
    if total <= 0:
        return FrameFeatures(power=power, fsk_share=0.0, spread=float("inf"), centroid=0.0)
    return FrameFeatures(
        power=power,
        fsk_share=float(spectrum[_FSK_BAND].sum()) / total,
        spread=total * total / float(spectrum @ spectrum),  # the participation ratio
        centroid=float(spectrum @ BIN_HZ) / total,
    )
