"""What an exchange sends as caller ID: message bytes, and FSK at 1200 baud.

The simulated line's side of caller ID (the receiver is `linerec.dsp.callerid`): build SDMF or
MDMF messages with a correct (or, for tests, a wrong) checksum, and modulate them as Bell 202
or V.23 with channel seizure and a mark period, continuous in phase as a modem sends them.
"""

from __future__ import annotations

import numpy as np

from linerec.codec import RATE, Samples
from linerec.tones import amplitude

BAUD = 1200
FREQUENCIES = {"bell202": (1200.0, 2200.0), "v23": (1300.0, 2100.0)}  # (mark, space)
ABSENT = {"private": "P", "out of area": "O"}


def checksummed(kind: int, payload: bytes, *, corrupt: bool = False) -> bytes:
    body = bytes([kind, len(payload)]) + payload
    checksum = (-sum(body)) & 0xFF
    return body + bytes([checksum ^ (0x01 if corrupt else 0)])


def sdmf(*, datetime: str, number: str = "", number_absent: str = "") -> bytes:
    value = ABSENT[number_absent] if number_absent else number
    return checksummed(0x04, (datetime + value).encode("latin-1"))


def mdmf(
    *,
    datetime: str = "",
    number: str = "",
    name: str = "",
    number_absent: str = "",
    name_absent: str = "",
    corrupt: bool = False,
) -> bytes:
    payload = b""
    for code, value in (
        (0x01, datetime),
        (0x02, number),
        (0x04, ABSENT.get(number_absent, "")),
        (0x07, name),
        (0x08, ABSENT.get(name_absent, "")),
    ):
        if value:
            data = value.encode("latin-1")
            payload += bytes([code, len(data)]) + data
    return checksummed(0x80, payload, corrupt=corrupt)


def _bits(message: bytes, seizure_bits: int, mark_bits: int) -> list[int]:
    bits = [i % 2 for i in range(seizure_bits)]  # 0101...: channel seizure
    bits += [1] * mark_bits
    for byte in message:
        bits += [0] + [(byte >> k) & 1 for k in range(8)] + [1]
    return bits + [1] * 4


def modulate(
    message: bytes,
    *,
    standard: str = "bell202",
    level_dbfs: float = -13.0,
    seizure_bits: int = 300,
    mark_bits: int = 180,
) -> Samples:
    """Continuous-phase FSK of `message`, with channel seizure and mark before it."""
    mark, space = FREQUENCIES[standard]
    bits = np.array(_bits(message, seizure_bits, mark_bits))
    count = int(np.ceil(len(bits) * RATE / BAUD))
    index = np.minimum((np.arange(count) * BAUD // RATE).astype(int), len(bits) - 1)
    frequency = np.where(bits[index] == 1, mark, space)
    phase = 2 * np.pi * np.cumsum(frequency) / RATE
    wave = amplitude(level_dbfs) * np.sin(phase)
    return np.clip(np.rint(wave), -32768, 32767).astype(np.int16)
