"""What the ring reports as it works: one frozen dataclass per event."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingDeleted:
    """A recording left the card: evicted to make room, past its retention, deleted on
    request, or opted out (discarded while it was being written, or a part of an opted-out
    call sealed before the opt-out: its number is deliberately absent from the chain).

    `header_hash` and `prev` let the collector link the absent number into the device's chain,
    so the recording after it still verifies ("" where not known)."""

    id: str
    seq: int
    reason: str  # "evicted", "retention", "command", "opted-out" or "discarded"
    acknowledged: bool
    header_hash: str = ""
    prev: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreFilling:
    """The ring passed its warning level."""

    fill: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingQuarantined:
    """A file in the ring is not a recording we can use: moved aside, never read again."""

    path: Path  # where it is now: <ring>/quarantine/<name>
    reason: str


StoreEvent = RecordingDeleted | StoreFilling | RecordingQuarantined
