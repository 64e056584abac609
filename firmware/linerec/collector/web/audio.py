"""Audio for the browser: a recording as a WAV streamed from any byte, and the byte ranges a
player asks for.

The WAV is made as it is sent, from the chunks of the recording that the range covers
(linerec.store.chunks), so a play's first byte does not wait for the whole recording and its
memory does not grow with it. Decrypted audio lives only in this process's memory, a piece at
a time; nothing in clear touches the disk.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from linerec.codec import RATE, Samples
from linerec.store.chunks import ChunkedAudio

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


HEADER = 44  # RIFF, fmt (PCM) and data chunk headers
PIECE = 1 << 16  # bytes sent at a time


def wav_header(samples: int, rate: int = RATE) -> bytes:
    """The header of a mono 16-bit PCM WAV of `samples` samples."""
    size = 2 * samples
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + size, b"WAVE", b"fmt ", 16, 1, 1, rate,
        rate * 2, 2, 16, b"data", size,
    )  # fmt: skip


def wav_bytes(samples: Samples, rate: int = RATE) -> bytes:
    """Mono 16-bit PCM WAV, built in one piece."""
    return wav_header(len(samples), rate) + np.asarray(samples, dtype="<i2").tobytes()


@dataclass(frozen=True, slots=True)
class WavStream:
    """A recording as a WAV file that is never whole in memory."""

    audio: ChunkedAudio

    @property
    def size(self) -> int:
        return HEADER + 2 * self.audio.samples

    def pieces(self, first: int, last: int) -> Iterator[bytes]:
        """Bytes first..last (inclusive) of the WAV, about PIECE bytes at a time."""
        last = min(last, self.size - 1)
        if first < HEADER:
            yield wav_header(self.audio.samples)[first : last + 1]
        start = (max(first, HEADER) - HEADER) // 2  # the samples the range covers
        stop = (last - HEADER) // 2 + 1
        at = HEADER + 2 * start  # the WAV byte the next samples begin at
        waiting: list[bytes] = []
        pending = 0
        for samples in self.audio.read(start, stop):
            data = np.asarray(samples, dtype="<i2").tobytes()
            waiting.append(data[max(first - at, 0) : last + 1 - at])
            pending += len(waiting[-1])
            at += len(data)
            if pending >= PIECE:
                yield b"".join(waiting)
                waiting.clear()
                pending = 0
        if waiting:
            yield b"".join(waiting)


class RangeNotSatisfiable(ValueError):
    """A Range header that asks for bytes the file does not have (answered 416)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive of a single `bytes=` range; None for the whole file.

    Several ranges in one request are answered with the whole file (RFC 9110 allows it)."""
    if not header or "," in header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None  # not a range we understand: the whole file
    first_text, last_text = match.groups()
    if first_text == "":  # the last N bytes
        length = int(last_text)
        if length == 0:
            raise RangeNotSatisfiable(header)
        return max(size - length, 0), size - 1
    first = int(first_text)
    last = min(int(last_text), size - 1) if last_text else size - 1
    if first >= size or last < first:
        raise RangeNotSatisfiable(header)
    return first, last
