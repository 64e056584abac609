"""Audio for the browser: a WAV built in memory, and the byte ranges a player asks for.

The decrypted audio lives only in this process's memory; nothing in clear touches the disk.
"""

from __future__ import annotations

import re
import struct

import numpy as np

from linerec.codec import RATE, Samples

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


HEADER = 44  # RIFF, fmt (PCM) and data chunk headers


def wav_bytes(samples: Samples, rate: int = RATE) -> bytes:
    """Mono 16-bit PCM WAV, built in one piece (an hour is 57.6 MB: no second copy)."""
    data = np.asarray(samples, dtype="<i2")
    size = data.nbytes
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + size, b"WAVE", b"fmt ", 16, 1, 1, rate,
        rate * 2, 2, 16, b"data", size,
    )  # fmt: skip
    return header + data.tobytes()


def wav_samples(wav: bytes) -> Samples:
    """The samples of a WAV from `wav_bytes`, as a view (no copy)."""
    return np.frombuffer(wav, dtype="<i2", offset=HEADER)


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
