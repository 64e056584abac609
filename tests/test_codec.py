import subprocess

import numpy as np
import pytest

from linerec.codec import Codec, decode, encode

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)


@pytest.mark.parametrize(
    ("codec", "sample", "code"),
    [
        # Values from the G.711 tables: silence, small and full-scale signals of both signs.
        (Codec.ULAW, 0, 0xFF),
        (Codec.ULAW, -1, 0x7F),  # -1/4 of a 14-bit step: negative zero (G.711, G.191)
        (Codec.ULAW, -5, 0x7E),
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


# -- against G.711's decision values, and against sox -------------------------------------------

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32)


def g711_decision_values(codec: Codec) -> np.ndarray:
    """Lower ends of the 128 magnitude intervals (ITU-T G.711 tables 1a and 2a), in input LSBs
    of 16-bit samples (µ-law is defined on 14 bits, A-law on 13)."""
    if codec is Codec.ULAW:  # segment s: 16 steps of 2^(s+1), biased by 33
        ends = [max((1 << (s + 5)) + k * (2 << s) - 33, 0) for s in range(8) for k in range(16)]
        return np.array(ends) * 4
    ends = [2 * k for k in range(16)]  # A-law: segments 0 and 1 both step 2
    ends += [(1 << (s + 4)) + k * (1 << s) for s in range(1, 8) for k in range(16)]
    return np.array(ends) * 8


def g711_reference(codec: Codec, x: np.ndarray) -> np.ndarray:
    """The code whose decision interval holds the sample's magnitude; a negative sample is the
    mirror of a positive one about -1/2 (x -> -1-x), as in the ITU-T G.191 reference coder."""
    negative = x < 0
    magnitude = np.where(negative, -1 - x, x)
    index = np.searchsorted(g711_decision_values(codec), magnitude, side="right") - 1
    if codec is Codec.ULAW:
        return (~(np.where(negative, 0x80, 0) | index) & 0xFF).astype(np.uint8)
    return ((np.where(negative, 0, 0x80) | index) ^ 0x55).astype(np.uint8)


def sox(args: list[str], data: bytes) -> bytes:
    run = subprocess.run(["sox", "-D", *args], input=data, capture_output=True, check=True)
    return run.stdout


SOX_PCM = ["-t", "raw", "-r", "8000", "-c", "1", "-e", "signed-integer", "-b", "16", "-L"]


@pytest.mark.parametrize("codec", [Codec.ULAW, Codec.ALAW])
def test_every_sample_gets_the_code_of_its_g711_decision_interval(codec: Codec) -> None:
    ours = np.frombuffer(encode(codec, ALL_INT16.astype(np.int16)), dtype=np.uint8)
    assert np.array_equal(ours, g711_reference(codec, ALL_INT16))
    mirrored = np.frombuffer(encode(codec, (-1 - ALL_INT16).astype(np.int16)), dtype=np.uint8)
    assert np.array_equal(mirrored, ours ^ 0x80)  # the sign bit alone tells +x from -1-x


@pytest.mark.parametrize(("codec", "kind", "lsbs"), [(Codec.ULAW, "ul", 4), (Codec.ALAW, "al", 8)])
def test_against_sox_over_every_sample_and_code(codec: Codec, kind: str, lsbs: int) -> None:
    codes = bytes(range(256))
    theirs = np.frombuffer(sox(["-t", kind, "-", *SOX_PCM, "-"], codes), dtype="<i2")
    assert np.array_equal(decode(codec, codes), theirs)  # decoding: identical

    samples = ALL_INT16.astype("<i2").tobytes()
    theirs_coded = np.frombuffer(sox([*SOX_PCM, "-", "-t", kind, "-"], samples), dtype=np.uint8)
    ours = np.frombuffer(encode(codec, ALL_INT16.astype(np.int16)), dtype=np.uint8)
    # sox first rounds each sample to 14 (µ-law) or 13 (A-law) bits, to the nearest; G.711's
    # decision values apply to the value itself. So sox differs only within half a 14/13-bit
    # step of a decision value, where its rounding carries the sample over it.
    differ = np.flatnonzero(ours != theirs_coded)
    bounds = g711_decision_values(codec)
    distance = np.min(
        np.abs(np.abs(ALL_INT16[differ] + (ALL_INT16[differ] < 0))[:, None] - bounds[None, :]),
        axis=1,
    )
    assert 0 < len(differ) < 65536 // 50
    assert distance.max() <= lsbs // 2


def test_the_sample_rate_is_defined_once() -> None:
    """RATE lives in linerec.codec; nothing else defines it or writes 8000 for it."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    definitions, literals = [], []
    for path in sorted([*(root / "firmware").rglob("*.py"), *(root / "bench").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else []
            if any(isinstance(t, ast.Name) and t.id == "RATE" for t in targets):
                definitions.append(path.relative_to(root).as_posix())
            if isinstance(node, ast.Constant) and node.value == 8000:
                literals.append(f"{path.relative_to(root).as_posix()}:{node.lineno}")
    assert definitions == ["firmware/linerec/codec.py"]
    # The definition itself, and among the rates a sound card may offer.
    assert [spot.split(":")[0] for spot in literals] == [
        "firmware/linerec/codec.py",
        "firmware/linerec/hardware/pcm.py",
    ]
