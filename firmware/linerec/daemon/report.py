"""Events as a person or a program reads them: one line of text, or one JSON object."""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any

from linerec.call.events import CallEvent


def event_record(event: CallEvent, t0: float = 0.0) -> dict[str, Any]:
    """`{"t": seconds since start, "event": name, "line": ..., ...fields}`."""
    record: dict[str, Any] = {"t": round(event.t - t0, 3), "event": event.name}
    for field in dataclasses.fields(event):
        if field.name == "t":
            continue
        value = getattr(event, field.name)
        record[field.name] = value.value if isinstance(value, Enum) else value
    return record


def event_text(event: CallEvent, t0: float = 0.0) -> str:
    record = event_record(event, t0)
    t, name, line = record.pop("t"), record.pop("event"), record.pop("line")
    details = " ".join(f"{key}={value}" for key, value in record.items())
    return f"{t:9.3f}  {line or '-':8} {name:18} {details}".rstrip()
