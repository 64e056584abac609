"""Keyset paging of the console's search (issue 14): a page deep in a broad search is found
from where the last one ended (the cursor carries that row's sort key, id and device), not
by skipping every row before it. Both engines, with ties and NULLs in every sort key and the
same recording id on two devices, against an order computed here.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

import databases
from linerec.collector import keyset
from linerec.collector.search import KEYS, QueryError, parse_query, search_page
from linerec.collector.store import CollectorStore

STARTS = (None, "2026-03-01T10:00:00.000+00:00", "2026-03-01T11:00:00.000+00:00")
DURATIONS = (None, 5.0, 5.0, 7.5)
LINES = (None, "line1", "line2")
# Each sort: (field, descending) in turn, NULLs lowest; then id and device (a recording is
# (device, id): two devices may use one id).
ORDERS = {
    "-started_at": (("started_at", True),),
    "started_at": (("started_at", False),),
    "-duration": (("duration", True),),
    "duration": (("duration", False),),
    "device": (("device", False), ("line", False), ("started_at", True)),
    "seq": (("device", False), ("seq", False)),
}


@pytest.fixture
def store(tmp_path: Path, engine: str) -> CollectorStore:
    store = CollectorStore(tmp_path / "data", databases.selected.location(tmp_path / "c.db"))
    return store


def fill(store: CollectorStore) -> list[dict[str, Any]]:
    """30 recordings on two devices that share their ids, their sort keys tied and NULL in
    every proportion; every third one's caller begins 555."""
    made = []
    for n in range(30):
        device, rid = f"box{n % 2 + 1}", f"r{n // 2:02d}"
        row = {
            "device": device, "id": rid, "seq": n, "line": LINES[n % 3],
            "started_at": STARTS[n % 3 if n % 5 else 1], "duration": DURATIONS[n % 4],
            "caller_number": "5551234" if n % 3 == 0 else "6661234",
        }  # fmt: skip
        store.db.execute(
            "INSERT INTO recordings (device, id, seq, line, started_at, duration, caller_number, "
            "path, sha256, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'x', 'x', 0)",
            tuple(row[k] for k in ("device", "id", "seq", "line", "started_at", "duration",
                                   "caller_number")),
        )  # fmt: skip
        made.append(row)
    return made


def ordered(made: list[dict[str, Any]], sort: str, **wanted: Any) -> list[tuple[str, str]]:
    found = [r for r in made if all(str(r[k]).startswith(v) for k, v in wanted.items())]
    keys = [*ORDERS[sort], ("id", False), ("device", False)]
    for name, descending in reversed(keys):  # stable sorts, last key first
        found.sort(key=lambda r, k=name: (r[k] is not None, r[k] or 0), reverse=descending)
    return [(r["device"], r["id"]) for r in found]


def walk(
    store: CollectorStore, params: dict[str, str], scope: Any = None
) -> tuple[list[Any], list[Any]]:
    """Every page forwards by `next` from the first, then backwards by `previous` from the
    last; the rows each way, in the search's order (`scope`: what the asker may see)."""
    forwards: list[list[tuple[str, str]]] = []
    page = search_page(store.db, parse_query(params, scope=scope))
    assert page.previous is None
    while True:
        forwards.append([(row["device"], row["id"]) for row in page.rows])
        if page.next is None:
            break
        page = search_page(store.db, parse_query({**params, "after": page.next}, scope=scope))
        assert page.previous is not None
    limit = int(params["limit"])
    assert all(len(rows) == limit for rows in forwards[:-1]), forwards
    backwards = [forwards[-1]]
    while page.previous is not None:
        page = search_page(store.db, parse_query({**params, "before": page.previous}, scope=scope))
        assert len(page.rows) == limit
        backwards.insert(0, [(row["device"], row["id"]) for row in page.rows])
    assert backwards == forwards  # the same pages, back to the first
    return [row for rows in forwards for row in rows], [row for rows in backwards for row in rows]


@pytest.mark.parametrize("sort", list(ORDERS))
def test_next_and_previous_walk_every_match_once_through_ties_and_nulls(
    store: CollectorStore, sort: str
) -> None:
    made = fill(store)
    for filters in ({}, {"device": "box2"}, {"caller": "555"}):
        want = ordered(made, sort, **{k if k != "caller" else "caller_number": v
                                      for k, v in filters.items()})  # fmt: skip
        for limit in (1, 4, 7, 30, 31):
            params = {**filters, "sort": sort, "limit": str(limit)}
            forwards, _ = walk(store, params)
            assert forwards == want, params
            # the pages by number (offset) are the same rows
            numbered = search_page(store.db, parse_query({**params, "page": "2"})).rows
            assert [(r["device"], r["id"]) for r in numbered] == want[limit : 2 * limit]


def test_a_recording_added_or_deleted_between_pages_neither_repeats_nor_skips_a_row(
    store: CollectorStore,
) -> None:
    made = fill(store)
    want = ordered(made, "-started_at")
    first = search_page(store.db, parse_query({"limit": "5"}))
    assert [(r["device"], r["id"]) for r in first.rows] == want[:5]
    # the newest recording arrives, and the first row of the next page is deleted
    store.db.execute(
        "INSERT INTO recordings (device, id, seq, started_at, path, sha256, received_at) "
        "VALUES ('box3', 'new', 1, '2027-01-01T00:00:00.000+00:00', 'x', 'x', 0)"
    )
    gone = want[5]
    store.db.execute("DELETE FROM recordings WHERE device = ? AND id = ?", gone)
    assert first.next is not None
    second = search_page(store.db, parse_query({"limit": "5", "after": first.next}))
    assert [(r["device"], r["id"]) for r in second.rows] == want[6:11]
    # back from there: the first page as it is now (the new recording at its top)
    assert second.previous is not None
    back = search_page(store.db, parse_query({"limit": "5", "before": second.previous}))
    assert [(r["device"], r["id"]) for r in back.rows] == want[:5]
    assert back.previous is not None  # the new one is before them
    top = search_page(store.db, parse_query({"limit": "5", "before": back.previous}))
    assert [(r["device"], r["id"]) for r in top.rows] == [("box3", "new"), *want[:4]]
    assert top.previous is None  # fewer than a page before: the first page, whole


def test_a_cursor_is_checked_like_any_search_field(store: CollectorStore) -> None:
    fill(store)
    page = search_page(store.db, parse_query({"limit": "2", "sort": "duration"}))
    assert page.next is not None
    cursor = page.next
    refused = ["x", "' OR 1=1 --", cursor[:-3], "W10", "eyJhIjogMX0"]  # [] and {"a": 1}
    for text in (
        "[" * 1500,
        '["duration",[NaN,"r01","box1"]]',
        '["duration",[1e999,"a","b"]]',
        '["duration",[5.0,"r01",null]]',
        '["duration",[5.0,"r01","box1",1]]',
        '["duration",[true,"r01","box1"]]',
        '["duration",["5","r01","box1"]]',
        '[["duration"],[5.0,"r01","box1"]]',
        '["duration",[1' + "0" * 400 + ',"r01","box1"]]',
        '["seq",["box1",' + "9" * 20 + ',"r01"]]',
        '["duration",[5.0,"r\\u0000","box1"]]',
        '["duration",[5.0,"\\ud800","box1"]]',
    ):
        refused.append(base64.urlsafe_b64encode(text.encode()).decode()[:2048])
    for value in refused:
        with pytest.raises(QueryError, match="search field 'after': a page cursor"):
            parse_query({"after": value, "sort": "duration"})
    with pytest.raises(QueryError, match=r"search field 'after': .*sort 'duration'"):
        parse_query({"after": cursor})  # another sort than the cursor's
    with pytest.raises(QueryError, match="search field 'before': not with after"):
        parse_query({"after": cursor, "before": cursor, "sort": "duration"})
    with pytest.raises(QueryError, match="search field 'offset': not with a page cursor"):
        parse_query({"after": cursor, "offset": "5", "sort": "duration"})
    ok = base64.urlsafe_b64encode(b'["duration",[5,"r01","box1"]]').decode()
    assert parse_query({"after": ok, "sort": "duration"}).after == (5.0, "r01", "box1")
    # the page number beside a cursor is only the one shown
    assert parse_query({"after": cursor, "page": "7", "sort": "duration"}).offset == 0


SCOPES = (
    (("line", "box1/line1"), ("line", "box2/line2"), ("label", "support")),
    (("line", "box2/*"),),
    (),
)


def in_scope(row: dict[str, Any], scope: tuple[tuple[str, str], ...]) -> bool:
    for kind, value in scope:
        device, _, line = value.partition("/")
        if kind == "label" and row["label"] == value:
            return True
        if kind == "line" and row["device"] == device and line in ("*", row["line"]):
            return True
    return False


@pytest.mark.parametrize("sort", list(ORDERS))
def test_a_scoped_search_pages_only_through_what_its_asker_may_see(
    store: CollectorStore, sort: str
) -> None:
    """A listener granted some lines (DEVICE/LINE, DEVICE/*) and a label pages by next and
    previous through exactly the recordings granted; a cursor made up to name a recording
    outside the grants (its key is no secret: any link shows its form) pages on from that
    place in the order, still only through what is granted."""
    made = fill(store)
    for row in made[::7]:
        row["label"] = "support"
        store.db.execute(
            "UPDATE recordings SET label = 'support' WHERE device = ? AND id = ?",
            (row["device"], row["id"]),
        )
    for row in made:
        row.setdefault("label", None)
    by_key = {(r["device"], r["id"]): r for r in made}
    everything = ordered(made, sort)
    for scope in SCOPES:
        want = [k for k in everything if in_scope(by_key[k], scope)]
        assert 0 < len(want) < len(made) or scope == ()
        for limit in (1, 4, 30):
            params = {"sort": sort, "limit": str(limit)}
            if want:
                forwards, _ = walk(store, params, scope)
                assert forwards == want, (scope, limit)
            first = search_page(store.db, parse_query(params, scope=scope))
            assert first.total == len(want)
            outside = [k for k in everything if not in_scope(by_key[k], scope)]
            for key in outside:
                row = by_key[key]
                cursor = keyset.encode(sort, tuple(row[c[2:]] for c, _ in KEYS[sort]))
                place = everything.index(key)
                later = [k for k in everything[place + 1 :] if k in want]
                page = search_page(store.db, parse_query({**params, "after": cursor}, scope=scope))
                assert [(r["device"], r["id"]) for r in page.rows] == later[:limit]
                earlier = [k for k in everything[:place] if k in want]
                back = earlier[-limit:] if len(earlier) >= limit else want[:limit]
                page = search_page(store.db, parse_query({**params, "before": cursor}, scope=scope))
                assert [(r["device"], r["id"]) for r in page.rows] == back
