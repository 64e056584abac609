"""Search over many recordings on SQLite and PostgreSQL, side by side (`bench/collector.py
--search N`): prints figures, asserts nothing.

The index is filled with N recordings (40 devices of 4 lines over a year, numbers, labels,
holds, reviews) in bulk: SQLite in one transaction, PostgreSQL by COPY, then ANALYZE. Each of
the console's query shapes (collector/search.py's run_search: a page and its capped count) is
timed `--repeat` times on each engine; median and p95 per shape, and p95 over all of them
and over the console's (its next and previous links page by cursor: a shape "next after
10,000" is the link from page 200, found untimed; "page 201" is the same page by number).
Target (issue 14): p95 <= 100 ms over 1,000,000 recordings in PostgreSQL.

PostgreSQL is a server of its own started in a temporary directory (tests/postgres.py, with
shared_buffers = 1GB), unless `--database postgresql://...` names a database: an empty one is
filled, one this bench filled with N recordings before is used as it is (filling a million
takes minutes on a busy machine). With `--keep DIR` the SQLite file is kept in DIR
(search-N.db) and used again the same way. The load average is printed with the figures.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from linerec.collector.database import Database, connect
from linerec.collector.schema import migrate
from linerec.collector.search import RecordingQuery, parse_query, run_search, search_page

START = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK = 50_000
HELD_EVERY, REVIEWED_EVERY = 500, 50  # one recording in so many (CHUNK is a multiple of both)

RECORDING_COLUMNS = (
    "device, id, seq, line, started_at, duration, state, caller_number, called_number, path, "
    "sha256, received_at, clock_synchronized, label, direction, reviewed"
)
CATALOG_COLUMNS = "device, id, label, direction, consent, clock_synchronized"

# The console's query shapes: what its filters, paging and sorts send to run_search.
SHAPES: list[tuple[str, dict[str, str]]] = [
    ("newest first, page 1", {}),
    ("newest first, page 200", {"page": "200"}),
    # The console's next link from page 200 (its 10,000th match): a cursor, not an offset.
    ("newest first, next after 10,000", {"after": "@200"}),
    ("date range (a week)", {"since": "2026-03-01T00:00", "until": "2026-03-08T00:00"}),
    (
        "date range (a day), oldest first",
        {"since": "2026-05-05", "until": "2026-05-06", "sort": "started_at"},
    ),
    ("device", {"device": "box7"}),
    ("device and line", {"device": "box7", "line": "line2"}),
    ("device and line, page 50", {"device": "box7", "line": "line2", "page": "50"}),
    (
        "device, since, oldest first",
        {"device": "box3", "since": "2026-06-01", "sort": "started_at"},
    ),
    ("number prefix (4 digits)", {"number": "5551"}),
    ("number prefix (7 digits)", {"number": "5551234"}),
    ("number prefix (6 digits, both sides)", {"number": "555123"}),
    ("number prefix (1 digit, called side)", {"number": "1"}),
    ("caller prefix", {"caller": "555123"}),
    ("caller prefix (4 digits)", {"caller": "5551"}),
    # Deep past a broad prefix's 10,000th match: by page number (OFFSET, the JSON API's
    # `page`) and from the console's next link (a cursor, keyset paging).
    ("number prefix (4 digits), page 201", {"number": "5551", "page": "201"}),
    ("number prefix (4 digits), next after 10,000", {"number": "5551", "after": "@200"}),
    ("caller prefix (4 digits), page 201", {"caller": "5551", "page": "201"}),
    ("caller prefix (4 digits), next after 10,000", {"caller": "5551", "after": "@200"}),
    ("called prefix", {"called": "12345"}),
    ("called prefix (1 digit)", {"called": "1"}),
    ("label", {"label": "sales"}),
    ("direction, longest first", {"direction": "outbound", "sort": "-duration"}),
    ("duration between", {"min_duration": "600", "max_duration": "700"}),
    ("held", {"held": "yes"}),
    ("unreviewed, page 20", {"review": "unreviewed", "page": "20"}),
    ("reviewed", {"review": "reviewed"}),
    ("by device (sort)", {"sort": "device"}),
    ("scoped to two lines", {}),  # with a scope: an auditor's grants
]
# What the console asks: all but the pages past the 10,000th match by number, which its
# links no longer make (they page by cursor; the JSON API's `page` still numbers pages).
CONSOLE = [name for name, params in SHAPES if params.get("page") != "201"]
SCOPE = (("line", "box1/line1"), ("line", "box2/*"))
NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def rows(count: int) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """(recordings, catalog) rows in chunks: 40 devices of 4 lines over a year."""
    rng = random.Random(1)
    recordings: list[tuple[Any, ...]] = []
    catalog: list[tuple[Any, ...]] = []
    for n in range(count):
        device = f"box{n % 40}"
        line = f"line{n % 4 + 1}"
        started = START + timedelta(seconds=rng.randrange(365 * 86400))
        rid = f"{device}-{n + 1:08d}-{started.strftime('%Y%m%dT%H%M%SZ')}-{line}"
        label, direction = ("sales", "support", "")[n % 3] or None, ("inbound", "outbound")[n % 2]
        recordings.append((
            device, rid, n + 1, line, started.isoformat(timespec="milliseconds"),
            rng.uniform(5, 900), "complete", f"555{rng.randrange(10**7):07d}",
            f"{rng.randrange(10**9):09d}", f"/nonexistent/{rid}", "0" * 64, 0.0, 1,
            label, direction, int(n % REVIEWED_EVERY == 0),
        ))  # fmt: skip
        catalog.append((device, rid, label, direction, "notice", 1))
        if len(recordings) == CHUNK:
            yield recordings, catalog
            recordings, catalog = [], []
    if recordings:
        yield recordings, catalog


def fill(db: Database, count: int) -> float:
    """Bulk-load `count` recordings (with holds and reviews); seconds taken."""
    began = time.perf_counter()
    holds: list[tuple[str, str]] = []
    reviews: list[tuple[Any, ...]] = []
    for recordings, catalog in rows(count):
        for row in recordings[::HELD_EVERY]:
            holds.append((row[0], row[1]))
        for row in recordings[::REVIEWED_EVERY]:
            reviews.append((row[0], row[1], "bench", 0.0, "{}", ""))
        if db.engine == "postgresql":
            with db.connection.cursor() as cursor:
                with cursor.copy(f"COPY recordings ({RECORDING_COLUMNS}) FROM STDIN") as copy:
                    for row in recordings:
                        copy.write_row(row)
                with cursor.copy(f"COPY console_catalog ({CATALOG_COLUMNS}) FROM STDIN") as copy:
                    for row in catalog:
                        copy.write_row(row)
        else:
            with db.transaction():
                marks = ", ".join("?" * len(RECORDING_COLUMNS.split(",")))
                db.executemany(
                    f"INSERT INTO recordings ({RECORDING_COLUMNS}) VALUES ({marks})", recordings
                )
                db.executemany(
                    f"INSERT INTO console_catalog ({CATALOG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    catalog,
                )
    with db.transaction():
        db.executemany("INSERT INTO holds (device, id) VALUES (?, ?)", holds)
        db.executemany(
            "INSERT INTO console_reviews (device, id, reviewer, at, scores, comment) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            reviews,
        )
    # As autovacuum leaves a table: statistics, and the visibility map index-only scans need.
    db.execute("VACUUM ANALYZE" if db.engine == "postgresql" else "ANALYZE")
    return time.perf_counter() - began


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def shape_query(db: Database, name: str, params: dict[str, str]) -> RecordingQuery:
    """The shape's query; `after: @N` is the next link of the same search's page N (found
    here, untimed)."""
    scope = SCOPE if name.startswith("scoped") else None
    if params.get("after", "").startswith("@"):
        rest = {k: v for k, v in params.items() if k != "after"}
        page = search_page(db, parse_query({**rest, "page": params["after"][1:]}, scope=scope))
        params = {**rest, "after": page.next or ""}
    return parse_query(params, scope=scope)


def time_shapes(db: Database, repeat: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    for name, params in SHAPES:
        query = shape_query(db, name, params)
        run_search(db, query)  # warm: the first of a shape pays for its pages being read
        for _ in range(repeat):
            start = time.perf_counter()
            run_search(db, query)
            times.setdefault(name, []).append(time.perf_counter() - start)
    return times


def filled(db: Database, count: int) -> bool:
    """Whether the database already holds this bench's `count` recordings (else it is empty)."""
    if "recordings" not in db.tables():
        return False
    (held,) = db.execute("SELECT count(*) FROM recordings").fetchone()
    if held not in (0, count):
        raise SystemExit(f"{db.name}: holds {held} recordings, not {count}: give an empty one")
    return bool(held)


def load() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def run(
    count: int,
    repeat: int,
    database: str | None,
    root: Path,
    engines: tuple[str, ...] = ("sqlite", "postgresql"),
) -> None:
    server = None
    if database is None and "postgresql" in engines:
        from postgres import PostgresServer

        # Memory for the index of a million recordings, as a server holding them would have.
        server = PostgresServer("-c shared_buffers=1GB").start()
        database = server.create(schema=False)
    locations: dict[str, Path | str | None] = {
        "sqlite": root / f"search-{count}.db",
        "postgresql": database,
    }
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for engine in engines:
            location = locations[engine]
            assert location is not None
            db = connect(location)
            try:
                if filled(db, count):
                    migrate(db)  # a database filled by an older linerec is brought up to date
                    print(f"{engine}: {count} recordings already there ({db.name})", flush=True)
                else:
                    migrate(db)
                    took = fill(db, count)
                    print(f"{engine}: {count} recordings loaded in {took:.0f} s", flush=True)
                print(f"{engine}: timing, {load()}", flush=True)
                results[engine] = time_shapes(db, repeat)
            finally:
                db.close()
    finally:
        if server is not None:
            server.stop()
    print(f"\nsearch over {count} recordings, {repeat} runs a shape (ms: median / p95), {load()}")
    print("  " + f"{'shape':44}" + "".join(f" {NAMES[engine]:>17}" for engine in engines))
    for name, _ in SHAPES:
        cells = []
        for engine in engines:
            ts = results[engine][name]
            cells.append(f"{statistics.median(ts) * 1000:7.1f} /{percentile(ts, 0.95) * 1000:7.1f}")
        print(f"  {name:44}" + "".join(f" {cell:>17}" for cell in cells))
    for engine in engines:
        for which, names in (("all shapes", [n for n, _ in SHAPES]), ("console", CONSOLE)):
            timed = {name: results[engine][name] for name in names}
            every = [t for ts in timed.values() for t in ts]
            print(
                f"{engine}: {which} p50 {percentile(every, 0.5) * 1000:.1f} ms, "
                f"p95 {percentile(every, 0.95) * 1000:.1f} ms, worst shape p95 "
                f"{max(percentile(ts, 0.95) for ts in timed.values()) * 1000:.1f} ms "
                "(target p95 <= 100 ms on PostgreSQL)"
            )
