import struct
from pathlib import Path

import numpy as np
import pytest

from linerec.codec import Codec
from linerec.errors import WavError
from linerec.wav import WavWriter, read_wav, write_wav


@pytest.mark.parametrize("codec", list(Codec))
def test_written_wav_reads_back_with_markers(tmp_path: Path, codec: Codec) -> None:
    path = tmp_path / "x.wav"
    tone = (8000 * np.sin(np.arange(8000) * 0.3)).astype(np.int16)
    with open(path, "wb") as file:
        writer = WavWriter(file, rate=8000, codec=codec)
        writer.write(tone[:4000])
        writer.mark("gap 0.100 s: overrun")
        writer.write(tone[4000:])
        writer.close()
    audio = read_wav(path)
    assert audio.rate == 8000
    assert audio.codec is codec
    assert audio.samples.shape == (8000, 1)
    assert [(m.sample, m.label) for m in audio.markers] == [(4000, "gap 0.100 s: overrun")]
    if codec is Codec.PCM16:
        assert np.array_equal(audio.mono, tone)


def test_sox_reads_our_ulaw_file(tmp_path: Path) -> None:
    import shutil
    import subprocess

    sox = shutil.which("soxi")
    assert sox, "sox is installed by .ci/setup"
    path = tmp_path / "u.wav"
    write_wav(path, np.zeros(800, dtype=np.int16), rate=8000, codec=Codec.ULAW)
    out = subprocess.run([sox, str(path)], capture_output=True, text=True, check=True).stdout
    assert "u-law" in out
    assert "800 samples" in out


def test_not_a_wav_names_the_offset(tmp_path: Path) -> None:
    path = tmp_path / "n.wav"
    path.write_bytes(b"hello, this is text")
    with pytest.raises(WavError, match=r"n\.wav \(byte 0\): not a WAV file"):
        read_wav(path)


def test_cut_fmt_chunk_names_the_offset(tmp_path: Path) -> None:
    path = tmp_path / "c.wav"
    path.write_bytes(
        b"RIFF" + struct.pack("<I", 100) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + b"\x01\x00"
    )
    with pytest.raises(WavError, match=r"\(byte 12\): chunk b'fmt ' is cut short"):
        read_wav(path)


def test_unsupported_encoding_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.wav"
    fmt = struct.pack("<HHIIHH", 0x55, 1, 8000, 32000, 4, 32)  # MPEG layer 3
    path.write_bytes(
        b"RIFF"
        + struct.pack("<I", 36)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", 0)
    )
    with pytest.raises(WavError, match="unsupported encoding: format tag 85, 32 bits"):
        read_wav(path)


@pytest.mark.parametrize(
    ("encoding", "bits"), [("signed-integer", 24), ("signed-integer", 32), ("floating-point", 32)]
)
def test_wide_and_float_wavs_made_by_sox_read_as_16_bit(
    tmp_path: Path, encoding: str, bits: int
) -> None:
    import subprocess

    path = tmp_path / "wide.wav"
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "16000",
            "-e",
            encoding,
            "-b",
            str(bits),
            str(path),
            "synth",
            "0.5",
            "sine",
            "1000",
            "vol",
            "0.5",
        ],
        check=True,
    )
    audio = read_wav(path)
    assert audio.rate == 16000
    peak = int(np.abs(audio.mono.astype(np.int32)).max())
    assert 16000 < peak < 16500  # half of full scale


def test_float_samples_that_are_not_audio_read_as_silence_or_full_scale(tmp_path: Path) -> None:
    """A float WAV may hold NaN, infinities or 3e38: read as 0 and full scale, with no
    numpy warning on the console (and no undefined cast)."""
    import warnings

    values = [float("nan"), float("inf"), float("-inf"), 3e38, -3e38, 0.5]
    body = struct.pack(f"<{len(values)}f", *values)
    fmt = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(body))
    path = tmp_path / "odd.wav"
    path.write_bytes(
        b"RIFF" + struct.pack("<I", 4 + len(chunks) + len(body)) + b"WAVE" + chunks + body
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        audio = read_wav(path)
    assert audio.mono.tolist() == [0, 32767, -32767, 32767, -32767, 16384]
