"""G.711 µ-law and A-law, and plain 16-bit PCM, done with numpy lookup tables.

Encoding indexes a 64 Ki-entry table by the sample's bit pattern, so a 20 ms frame costs one
fancy-index, not a Python loop. Decoding is a 256-entry table. The tables are computed once
from the G.711 segment rules at import, vectorised (a few ms).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]

RATE = 8000  # samples per second of every signal past the sound card: G.711's rate


class Codec(Enum):
    ULAW = "ulaw"
    ALAW = "alaw"
    PCM16 = "pcm16"

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self is Codec.PCM16 else 1

    @property
    def wav_format_tag(self) -> int:
        return {Codec.PCM16: 1, Codec.ALAW: 6, Codec.ULAW: 7}[self]


_ULAW_BIAS = 0x84  # bias of the 16-bit decoder
_ULAW_BIAS14 = 33  # the same bias at 14 bits, used by the encoder
_ULAW_CLIP = 8159


def _bit_length(values: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    return np.frexp(values.astype(np.float64))[1].astype(np.int32)


def _ulaw_encode_all(s: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    # The 14-bit magnitude as the ITU-T G.191 reference coder takes it: a negative sample is
    # the mirror of a positive one about -1/2 (one's complement). Taking -(s >> 2) instead (the
    # widespread Sun coder) puts samples just below a negative decision value into the
    # interval above it: -1 would become code 0x7E (-8), not 0x7F (0).
    mask = np.where(s < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.where(s < 0, -1 - s, s) >> 2, _ULAW_CLIP) + _ULAW_BIAS14
    segment = _bit_length(magnitude) - 6
    code = (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    code = np.where(segment > 7, 0x7F, code)  # beyond the last segment: full scale
    return (code ^ mask).astype(np.uint8)


def _ulaw_decode_all(c: npt.NDArray[np.int32]) -> Samples:
    c = ~c & 0xFF
    exponent, mantissa = (c >> 4) & 0x07, c & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(c & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_encode_all(s: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    sign = np.where(s >= 0, 0x80, 0)
    magnitude = np.where(s < 0, -1 - s, s) >> 3  # 13-bit magnitude, mirrored as for µ-law
    exponent = np.maximum(_bit_length(magnitude) - 5, 0)
    segment = np.where(
        magnitude < 32, magnitude >> 1, (exponent << 4) | ((magnitude >> exponent) & 0x0F)
    )
    return ((sign | segment) ^ 0x55).astype(np.uint8)


def _alaw_decode_all(c: npt.NDArray[np.int32]) -> Samples:
    c = c ^ 0x55
    exponent, mantissa = (c >> 4) & 0x07, c & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    return np.where(c & 0x80, magnitude, -magnitude).astype(np.int16)


# Tables indexed by the sample's uint16 bit pattern (encode) or by the code byte (decode).
_ALL_CODES = np.arange(256, dtype=np.int32)


def _in_pieces(
    encode_all: Callable[[npt.NDArray[np.int32]], npt.NDArray[np.uint8]],
) -> npt.NDArray[np.uint8]:
    # A piece at a time, each piece's samples made for it: the whole range at once held
    # megabytes of int64 temporaries, and even the samples alone (256 KB) would stay in the
    # daemon's memory for good.
    pieces = []
    for start in range(0, 65536, 4096):
        bits = np.arange(start, start + 4096, dtype=np.int32).astype(np.uint16)
        pieces.append(encode_all(bits.view(np.int16).astype(np.int32)))
    return np.concatenate(pieces)


_ULAW_ENC = _in_pieces(_ulaw_encode_all)
_ULAW_DEC = _ulaw_decode_all(_ALL_CODES)
_ALAW_ENC = _in_pieces(_alaw_encode_all)
_ALAW_DEC = _alaw_decode_all(_ALL_CODES)


def encode(codec: Codec, pcm: Samples) -> bytes:
    """Encode int16 samples to the codec's bytes (little-endian for PCM16)."""
    if codec is Codec.PCM16:
        return pcm.astype("<i2", copy=False).tobytes()
    table = _ULAW_ENC if codec is Codec.ULAW else _ALAW_ENC
    return table[pcm.view(np.uint16)].tobytes()


def decode(codec: Codec, data: bytes | memoryview) -> Samples:
    """Decode codec bytes back to int16 samples."""
    if codec is Codec.PCM16:
        return np.frombuffer(data, dtype="<i2").astype(np.int16)
    table = _ULAW_DEC if codec is Codec.ULAW else _ALAW_DEC
    return table[np.frombuffer(data, dtype=np.uint8)]
