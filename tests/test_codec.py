import numpy as np
import pytest

from linerec.codec import Codec, decode, encode

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)


@pytest.mark.parametrize(
    ("codec", "sample", "code"),
    [
        # Values from the G.711 tables: silence, small and full-scale signals of both signs.
        (Codec.ULAW, 0, 0xFF),
        (Codec.ULAW, -1, 0x7E),  # the reference coder works on 14 bits: -1 >> 2 is -1
        (Codec.ULAW, 32767, 0x80),
        (Codec.ULAW, -32768, 0x00),
        (Codec.ALAW, 0, 0xD5),
        (Codec.ALAW, -1, 0x55),
        (Codec.ALAW, 32767, 0xAA),
        (Codec.ALAW, -32768, 0x2A),
    ],
)
def test_known_codes(codec: Codec, sample: int, code: int) -> None:
    assert encode(codec, np.array([sample], dtype=np.int16)) == bytes([code])


@pytest.mark.parametrize("codec", [Codec.ULAW, Codec.ALAW])
def test_every_code_decodes_to_a_value_that_encodes_back_to_it(codec: Codec) -> None:
    codes = bytes(range(256))
    values = decode(codec, codes)
    again = encode(codec, values)
    # µ-law has two codes for zero (0x7F and 0xFF); every other code is its own inverse.
    differing = [c for c, d in zip(codes, again, strict=True) if c != d]
    assert differing in ([], [0x7F])


@pytest.mark.parametrize("codec", [Codec.ULAW, Codec.ALAW])
def test_quantisation_error_is_within_the_segment_step(codec: Codec) -> None:
    round_trip = decode(codec, encode(codec, ALL_SAMPLES)).astype(np.int32)
    error = np.abs(round_trip - ALL_SAMPLES.astype(np.int32))
    magnitude = np.abs(ALL_SAMPLES.astype(np.int32))
    # Logarithmic: the error grows with the signal, about 1/32 of it at the most (+ small floor).
    assert np.all(error <= magnitude / 16 + 16)
    # and the encoding is monotonic, so waveforms keep their shape.
    assert np.all(np.diff(round_trip) >= 0)


def test_pcm16_is_lossless_little_endian() -> None:
    data = encode(Codec.PCM16, ALL_SAMPLES)
    assert data[:2] == b"\x00\x80"
    assert np.array_equal(decode(Codec.PCM16, data), ALL_SAMPLES)
