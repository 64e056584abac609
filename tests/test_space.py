"""The ring's rules of room and retention (store/space.py), as pure functions over entries."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from linerec.store.entry import STATE_CUT, STATE_OPEN, STATE_SEALED, Entry
from linerec.store.space import past_retention, used, victim

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def entry(seq: int, **fields: object) -> Entry:
    recording_id = f"box1-{seq:08d}-20261101T000000Z-line1"
    base = Entry(
        id=recording_id,
        seq=seq,
        path=Path(f"/ring/{recording_id}.lrec"),
        line="line1",
        started_at="2026-11-01T00:00:00.000+00:00",
        clock_synchronized=True,
        duration=10.0,
        state=STATE_SEALED,
        acknowledged=False,
        held=False,
        size=1000 * seq,
        header_hash=f"{seq:064x}",
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def test_the_victim_is_the_oldest_acknowledged_else_the_oldest_never_held_or_open() -> None:
    a, b, c = entry(1), entry(2, acknowledged=True), entry(3, acknowledged=True)
    assert victim([c, b, a], {}) == b
    assert victim([a, entry(2, state=STATE_CUT)], {}) == a
    assert victim([entry(1, held=True), entry(2, state=STATE_OPEN)], {}) is None
    assert victim([b], {b.id: 4096}) is None  # a writer still holds it
    assert victim([], {}) is None


def test_used_counts_a_writer_in_progress_by_what_it_reserved() -> None:
    a, b = entry(1), entry(2, state=STATE_OPEN)
    entries = {a.id: a, b.id: b}
    assert used(entries, {}) == 3000
    assert used(entries, {b.id: 65536}) == 1000 + 65536


def test_retention_is_the_lines_else_the_stores_and_spares_what_it_must() -> None:
    old = entry(1)  # 29.5 days before NOW
    assert not past_retention(old, NOW, 0.0, {})  # keep until evicted
    assert past_retention(old, NOW, 14.0, {})
    assert not past_retention(replace(old, retention_days=60.0), NOW, 14.0, {})
    assert past_retention(replace(old, retention_days=7.0), NOW, 0.0, {})
    assert not past_retention(replace(old, held=True), NOW, 14.0, {})
    assert not past_retention(replace(old, state=STATE_OPEN), NOW, 14.0, {})
    assert not past_retention(old, NOW, 14.0, {old.id: 4096})
    unsynced = replace(old, clock_synchronized=False)
    assert not past_retention(unsynced, NOW, 14.0, {})  # its date may be wrong: never unsent
    assert past_retention(replace(unsynced, acknowledged=True), NOW, 14.0, {})
