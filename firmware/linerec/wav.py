"""WAV files: read any PCM/G.711 WAV into int16, write one as a stream.

Python's `wave` module writes only linear PCM, and telephony recordings want G.711 (format tags
6 and 7), so this is a small RIFF reader/writer of our own. The writer streams: it writes a
header with placeholder sizes, appends audio, and on `close()` appends a `cue ` chunk with a
`LIST/adtl` label per marker (we mark gaps in the audio this way, so a player or editor shows
them) and patches the sizes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from linerec.codec import RATE, Codec, Samples, decode, encode
from linerec.errors import WavError
from linerec.files import MIB, UnreadableFile, read_file
from linerec.resample import Resampler, to_int16

_TAG_TO_CODEC = {1: Codec.PCM16, 6: Codec.ALAW, 7: Codec.ULAW}
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# What we read: the standard rates from 8 to 48 kHz (an odd rate such as 47999 Hz makes the
# resampler's filter thousands of phases long), mono or stereo, in files of at most MAX_BYTES
# (over two hours of 8 kHz 16-bit audio). Anything else is refused before any audio is
# decoded, so a hostile header costs nothing.
RATES = (RATE, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
CHANNELS = (1, 2)
MAX_BYTES = 128 * MIB


@dataclass(frozen=True, slots=True, kw_only=True)
class Marker:
    """A labelled position in a WAV file, in samples from the start."""

    sample: int
    label: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WavAudio:
    """Decoded audio: int16 samples (frames x channels flattened to mono is the caller's job)."""

    samples: Samples  # shape (n, channels)
    rate: int
    codec: Codec
    markers: tuple[Marker, ...] = ()

    @property
    def mono(self) -> Samples:
        if self.samples.shape[1] == 1:
            mono: Samples = self.samples[:, 0].copy()
        else:
            mono = self.samples.astype(np.int32).mean(axis=1).round().astype(np.int16)
        return mono

    @property
    def duration(self) -> float:
        return float(self.samples.shape[0] / self.rate)


def read_wav(path: Path | str) -> WavAudio:
    """Read a WAV file of 8/16-bit PCM, µ-law or A-law; errors name the byte offset."""
    path = Path(path)
    try:
        data = read_file(path, limit=MAX_BYTES)
    except UnreadableFile as exc:
        raise WavError(path, f"cannot read: {exc}") from exc
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError(path, "not a WAV file (no RIFF/WAVE header)", 0)
    fmt: tuple[int, int, int, int] | None = None
    fmt_offset = 0
    audio: memoryview | None = None
    cue_points: dict[int, int] = {}
    labels: dict[int, str] = {}
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        end = offset + 8 + size
        if end > len(data) and chunk_id != b"data":
            raise WavError(path, f"chunk {chunk_id!r} is cut short", offset)
        body = b"" if chunk_id == b"data" else data[offset + 8 : end]
        if chunk_id == b"fmt ":
            if size < 16:
                raise WavError(path, f"fmt chunk of {size} bytes is too short", offset)
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _WAVE_FORMAT_EXTENSIBLE and size >= 26:
                (tag,) = struct.unpack_from("<H", body, 24)
            fmt, fmt_offset = (tag, channels, rate, bits), offset
        elif chunk_id == b"data":
            audio = memoryview(data)[offset + 8 : end]  # the audio, not copied
        elif chunk_id == b"cue ":
            cue_points.update(_cue_points(path, body, offset))
        elif chunk_id == b"LIST" and body[:4] == b"adtl":
            labels.update(_labels(path, body, offset))
        # Any other chunk is skipped; a chunk of odd size is followed by a pad byte.
        offset += 8 + size + (size & 1)
    if fmt is None:
        raise WavError(path, "no fmt chunk")
    if audio is None:
        raise WavError(path, "no data chunk")
    tag, channels, rate, bits = fmt
    if channels not in CHANNELS:
        raise WavError(path, f"fmt says {channels} channels: only mono or stereo", fmt_offset)
    if rate not in RATES:
        rates = ", ".join(map(str, RATES))
        raise WavError(path, f"fmt says {rate} Hz: the rates read are {rates} Hz", fmt_offset)
    if tag == 1 and bits == 16:
        codec = Codec.PCM16
        pcm = decode(codec, audio[: len(audio) - len(audio) % (2 * channels)])
    elif tag == 1 and bits == 8:
        codec = Codec.PCM16
        raw = np.frombuffer(audio[: len(audio) - len(audio) % channels], dtype=np.uint8)
        pcm = ((raw.astype(np.int16) - 128) << 8).astype(np.int16)
    elif tag in (6, 7) and bits == 8:
        codec = _TAG_TO_CODEC[tag]
        pcm = decode(codec, audio[: len(audio) - len(audio) % channels])
    elif (tag == 1 and bits in (24, 32)) or (tag == 3 and bits in (32, 64)):
        codec = Codec.PCM16  # wider samples are reduced to 16 bits: the line carries less
        pcm = _wide_to_int16(audio, tag, bits, channels)
    else:
        raise WavError(path, f"unsupported encoding: format tag {tag}, {bits} bits per sample")
    markers = tuple(
        Marker(sample=sample, label=labels.get(cue_id, ""))
        for cue_id, sample in sorted(cue_points.items(), key=lambda item: item[1])
    )
    return WavAudio(samples=pcm.reshape(-1, channels), rate=rate, codec=codec, markers=markers)


def _cue_points(path: Path, body: bytes, offset: int) -> dict[int, int]:
    """cue id -> sample of a `cue ` chunk (at `offset`)."""
    if len(body) < 4:
        raise WavError(path, f"cue chunk of {len(body)} bytes is too short", offset)
    (count,) = struct.unpack_from("<I", body)
    if 4 + 24 * count > len(body):
        raise WavError(
            path, f"cue chunk says {count} points but holds {(len(body) - 4) // 24}", offset
        )
    points = {}
    for i in range(count):
        cue_id, _, _, _, _, sample = struct.unpack_from("<II4sIII", body, 4 + 24 * i)
        points[cue_id] = sample
    return points


def _labels(path: Path, body: bytes, offset: int) -> dict[int, str]:
    """cue id -> label of a `LIST/adtl` chunk (at `offset`); other sub-chunks are skipped."""
    labels = {}
    sub = 4
    while sub + 8 <= len(body):
        sub_id = body[sub : sub + 4]
        (sub_size,) = struct.unpack_from("<I", body, sub + 4)
        if sub + 8 + sub_size > len(body):
            raise WavError(path, f"LIST sub-chunk {sub_id!r} runs past its chunk", offset + 8 + sub)
        if sub_id == b"labl" and sub_size >= 4:
            (cue_id,) = struct.unpack_from("<I", body, sub + 8)
            text = body[sub + 12 : sub + 8 + sub_size].split(b"\0")[0]
            labels[cue_id] = text.decode("utf-8", "replace")
        sub += 8 + sub_size + (sub_size & 1)
    return labels


def _wide_to_int16(audio: memoryview, tag: int, bits: int, channels: int) -> Samples:
    width = bits // 8
    usable = len(audio) - len(audio) % (width * channels)
    if tag == 3:
        floats = np.frombuffer(audio[:usable], dtype="<f4" if bits == 32 else "<f8")
        # NaN is silence and anything past full scale (inf, 3e38) is full scale, clipped
        # before scaling so no value overflows and none is cast undefined.
        unit = np.clip(np.nan_to_num(floats, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
        scaled: Samples = np.rint(unit * 32767.0).astype(np.int16)
        return scaled
    if bits == 32:
        return (np.frombuffer(audio[:usable], dtype="<i4") >> 16).astype(np.int16)
    raw = np.frombuffer(audio[:usable], dtype=np.uint8).reshape(-1, 3)
    return (raw[:, 1].astype(np.int16) | (raw[:, 2].astype(np.int16) << 8)).astype(np.int16)


class WavWriter:
    """Streams mono audio into a WAV file in the chosen codec."""

    def __init__(self, file: BinaryIO, *, rate: int, codec: Codec) -> None:
        self._file = file
        self._codec = codec
        self._rate = rate
        self._data_bytes = 0
        self._markers: list[Marker] = []
        self._file.write(self._header())

    @property
    def samples_written(self) -> int:
        return self._data_bytes // self._codec.bytes_per_sample

    def write(self, pcm: Samples) -> None:
        payload = encode(self._codec, pcm)
        self._file.write(payload)
        self._data_bytes += len(payload)

    def mark(self, label: str) -> None:
        """Put a labelled marker at the current position."""
        self._markers.append(Marker(sample=self.samples_written, label=label))

    def close(self) -> None:
        """Append markers, patch the sizes; the caller syncs and closes the file."""
        if self._data_bytes & 1:
            self._file.write(b"\0")
        self._file.write(self._marker_chunks())
        end = self._file.tell()
        self._file.seek(0)
        self._file.write(self._header(riff_size=end - 8))
        self._file.seek(end)

    def _header(self, riff_size: int = 0) -> bytes:
        width = self._codec.bytes_per_sample
        fmt = struct.pack(
            "<HHIIHH",
            self._codec.wav_format_tag,
            1,
            self._rate,
            self._rate * width,
            width,
            8 * width,
        )
        if self._codec is not Codec.PCM16:
            fmt += struct.pack("<H", 0)  # cbSize: non-PCM fmt chunks carry it
        return (
            b"RIFF"
            + struct.pack("<I", riff_size)
            + b"WAVE"
            + b"fmt "
            + struct.pack("<I", len(fmt))
            + fmt
            + b"data"
            + struct.pack("<I", self._data_bytes)
        )

    def _marker_chunks(self) -> bytes:
        if not self._markers:
            return b""
        cue = struct.pack("<I", len(self._markers))
        adtl = b"adtl"
        for cue_id, marker in enumerate(self._markers, start=1):
            cue += struct.pack("<II4sIII", cue_id, marker.sample, b"data", 0, 0, marker.sample)
            text = marker.label.encode() + b"\0"
            body = struct.pack("<I", cue_id) + text
            adtl += (
                b"labl" + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b"")
            )
        return (
            b"cue "
            + struct.pack("<I", len(cue))
            + cue
            + b"LIST"
            + struct.pack("<I", len(adtl))
            + adtl
        )


def read_mono_8k(path: Path | str) -> Samples:
    """A WAV file as 8 kHz mono int16, whatever its rate and channels (notices, speech clips)."""
    wav = read_wav(path)
    # The decoded samples are this call's own: a mono file's need no copy.
    samples = wav.samples[:, 0] if wav.samples.shape[1] == 1 else wav.mono
    if wav.rate != RATE:
        samples = to_int16(Resampler(wav.rate, RATE).process(samples))
    return samples


def write_wav(path: Path | str, pcm: Samples, *, rate: int, codec: Codec = Codec.PCM16) -> None:
    """Write a whole mono WAV file at once."""
    with open(path, "wb") as file:
        writer = WavWriter(file, rate=rate, codec=codec)
        writer.write(pcm)
        writer.close()
