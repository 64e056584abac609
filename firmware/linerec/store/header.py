"""A recording's header and end record, checked once, where the file is read.

A signature proves who wrote a file, not that what they wrote is sane: a stolen or buggy box
signs whatever it likes. So every reader (`inspect`, the ring's start-up scan, `store list`)
takes the header through `check_header` and the trailer or cut marker through `check_end`
before using a field: each field of the type and in the range docs/format.md gives, or a
`HeaderError` that names the field (`header.codec: ...`) and the byte offset.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from datetime import datetime
from typing import Any

from linerec.codec import RATE, Codec
from linerec.ids import DEVICE_ID_RULE, device_id_problem, recording_id_problem, shown

VERSION = 2  # what the ring writes: recording keys wrapped with RFC 9180 HPKE
VERSIONS = (1, 2)  # what readers accept: v1 wrapped them by hand (docs/format.md, "Keys")
MAX_SEQ = (1 << 63) - 1
MAX_RECIPIENTS = 64
MAX_RETENTION_DAYS = 36500
# Anchored with \Z, never `$`: `$` also matches before a final newline ("line1\n").
_LINE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}\Z")
_HASH = re.compile(r"[0-9a-f]{64}\Z")
_KID = re.compile(r"[0-9a-f]{16}\Z")


class HeaderError(ValueError):
    """A header or end record field is missing, of the wrong type or out of range."""

    def __init__(self, offset: int, field: str, message: str) -> None:
        self.offset = offset
        self.field = field
        super().__init__(f"byte {offset}: {field}: {message}")


def check_header(header: object, offset: int = 0) -> dict[str, Any]:
    """The header, every field checked; HeaderError names the first that is wrong."""
    fields = _Fields(header, "header", offset)
    version = fields.integer("v", min(VERSIONS), max(VERSIONS))
    # The device id and recording id rules of linerec.ids, as at the collector: the id names
    # files (no '/', no '..') and belongs to the device the header names.
    device = fields.value("device", str)
    if device_id_problem(device):
        raise fields.error("device", f"must be a device id ({DEVICE_ID_RULE}); got {shown(device)}")
    problem = recording_id_problem(device, fields.value("id", str))
    if problem:
        raise fields.error("id", problem)
    fields.integer("seq", 1, MAX_SEQ)
    prev = fields.value("prev", str)
    if prev and not _HASH.match(prev):
        raise fields.error("prev", 'must be "" or a hex SHA-256')
    fields.text("line", _LINE, "a line name: 1-32 letters, digits, '_' or '-'")
    fields.timestamp("started_at")
    fields.value("clock_synchronized", bool)
    fields.number("retention_days", 0, MAX_RETENTION_DAYS, default=0)
    codecs = tuple(codec.value for codec in Codec)
    if fields.value("codec", str) not in codecs:
        raise fields.error("codec", f"must be one of {', '.join(codecs)}")
    fields.integer("rate", RATE, RATE)
    fields.key("device_key", 32)
    recipients = fields.value("recipients", list)
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise fields.error("recipients", f"must list 1-{MAX_RECIPIENTS} recipients")
    for index, entry in enumerate(recipients):
        recipient = _Fields(entry, f"header.recipients[{index}]", offset)
        recipient.text("kid", _KID, "16 hex digits")
        if version == 1:
            recipient.key("epk", 32)
            recipient.key("wrapped", 48)
        else:
            recipient.key("enc", 32)  # HPKE's encapsulated key: an X25519 public key
            recipient.key("ct", 48)  # the 32-byte recording key and its 16-byte tag
    return fields.data


def check_end(end: object, offset: int, kind: str) -> dict[str, Any]:
    """A trailer or cut marker (`kind`), its fields checked (not yet its signature)."""
    fields = _Fields(end, kind, offset)
    fields.integer("chunks", 0, 1 << 32)
    fields.integer("samples", 0, MAX_SEQ)
    digest = fields.value("digest", str)
    if not _HASH.match(digest):
        raise fields.error("digest", "must be a hex SHA-256")
    fields.value("sig", str)
    return fields.data


class _Fields:
    def __init__(self, data: object, name: str, offset: int) -> None:
        if not isinstance(data, dict):
            raise HeaderError(offset, name, f"must be a JSON object (got {type(data).__name__})")
        self.data: dict[str, Any] = data
        self.name = name
        self.offset = offset

    def error(self, key: str, message: str) -> HeaderError:
        return HeaderError(self.offset, f"{self.name}.{key}", message)

    def value(self, key: str, kind: type) -> Any:
        if key not in self.data:
            raise self.error(key, "is missing")
        value = self.data[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.error(key, f"must be a {kind.__name__} (got {_short(value)})")
        return value

    def integer(self, key: str, low: int, high: int) -> int:
        value: int = self.value(key, int)
        if not low <= value <= high:
            raise self.error(key, f"must be {low}-{high} (got {_short(value)})")
        return value

    def number(self, key: str, low: float, high: float, *, default: float) -> float:
        if key not in self.data:
            self.data[key] = default
        value = self.data[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        # an int too large for a float is compared as it is, never converted
        finite = ok and not (isinstance(value, float) and not math.isfinite(value))
        if not finite or not low <= value <= high:
            raise self.error(key, f"must be a number {low:g}-{high:g} (got {_short(value)})")
        return float(value)

    def text(self, key: str, pattern: re.Pattern[str], expected: str) -> str:
        value: str = self.value(key, str)
        if not pattern.match(value):
            raise self.error(key, f"must be {expected} (got {_short(value)})")
        return value

    def timestamp(self, key: str) -> datetime:
        value: str = self.value(key, str)
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            stamp = None
        if stamp is None or stamp.tzinfo is None or len(value) > 40:
            raise self.error(key, f"must be an ISO 8601 time with its offset (got {_short(value)})")
        return stamp

    def key(self, key: str, size: int) -> bytes:
        value: str = self.value(key, str)
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != size:
            raise self.error(key, f"must be {size} bytes in base64 (got {_short(value)})")
        return raw


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"
