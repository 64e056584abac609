"""The ring's room on the card: what it uses, what goes first when it is full, what is past
its retention. Pure rules over the entries; the ring carries out what they pick."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from linerec.store.entry import STATE_OPEN, Entry


class StoreFull(OSError):
    """No room: every recording left is held or open, or `when_full = "stop"`."""


def used(entries: Mapping[str, Entry], reserved: Mapping[str, int]) -> int:
    """Bytes taken: finished recordings' sizes, and what writers in progress reserved."""
    return sum(e.size for e in entries.values() if e.id not in reserved) + sum(reserved.values())


def victim(entries: Iterable[Entry], in_progress: Mapping[str, int]) -> Entry | None:
    """The recording to evict next: the oldest acknowledged one, else the oldest; never one
    held or still being written. None: nothing may go."""
    candidates = [
        e for e in entries if e.state != STATE_OPEN and not e.held and e.id not in in_progress
    ]
    acknowledged = [e for e in candidates if e.acknowledged]
    pool = acknowledged or candidates
    return min(pool, key=lambda e: e.seq) if pool else None


def full(used: int, capacity: int, when_full: str) -> StoreFull:
    """Why the ring cannot make room."""
    return StoreFull(
        f"ring full: {used} of {capacity} bytes and "
        + ("when_full = 'stop'" if when_full == "stop" else "nothing may be evicted")
    )


def past_retention(
    entry: Entry, now: datetime, max_age_days: float, in_progress: Mapping[str, int]
) -> bool:
    """Whether `entry` is past its retention (its line's, else `max_age_days`) and may go."""
    days = entry.retention_days or max_age_days
    if not days or entry.state == STATE_OPEN or entry.held or entry.id in in_progress:
        return False
    if not entry.clock_synchronized and not entry.acknowledged:
        return False  # its date may be wrong (no NTP yet): never delete it unsent
    return datetime.fromisoformat(entry.started_at) < now - timedelta(days=days)
