"""The collector's metadata on either engine: the schema's versions and `collector migrate`,
refusal of a database of another version, the `database` key, and what two collector
processes (two connections to one database) do to it at once."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import databases
from enrolled import LINEREC
from linerec.collector.config import load_collector_config
from linerec.collector.database import connect
from linerec.collector.review import save_review
from linerec.collector.schema import SCHEMA_VERSION, SchemaVersionError, version_of
from linerec.collector.search import parse_query, run_search
from linerec.collector.store import CollectorStore
from linerec.collector.uploads import Piece
from linerec.errors import ConfigError
from linerec.store.keys import keygen

pytestmark = pytest.mark.usefixtures("engine")
ID = "box1-00000001-20260101T120000Z-line1"


def config(tmp_path: Path, database: Path | str | None = None) -> Path:
    if not (tmp_path / "keys").exists():
        keygen(tmp_path / "keys")
    path = tmp_path / "collector.toml"
    line = f'database = "{database}"\n' if database is not None else ""
    path.write_text(
        '[collector]\nbroker = "mqtt://127.0.0.1:1"\nallow_plaintext = true\n'
        f'data_dir = "{tmp_path / "central"}"\nkey = "keys/collector.key"\n{line}'
    )
    return path


def linerec(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LINEREC, *args], capture_output=True, text=True, timeout=60)


def set_version(location: Path | str, version: int) -> None:
    db = connect(location)
    db.execute("UPDATE schema_version SET version = ?", (version,))
    db.close()


# -- versions -----------------------------------------------------------------------------


def test_an_empty_database_gets_the_schema_from_migrate_or_from_the_collector(
    tmp_path: Path,
) -> None:
    first = databases.selected.empty(tmp_path / "first.db")
    done = linerec("collector", "migrate", "--config", str(config(tmp_path, first)))
    assert done.returncode == 0, done.stderr
    assert f"created at schema version {SCHEMA_VERSION}" in done.stdout
    again = linerec("collector", "migrate", "--config", str(tmp_path / "collector.toml"))
    assert f"schema version {SCHEMA_VERSION}: already current" in again.stdout
    second = databases.selected.empty(tmp_path / "second.db")
    store = CollectorStore(tmp_path / "data", second)  # `collector run` on an empty one
    assert version_of(store.db) == SCHEMA_VERSION
    store.db.close()
    third = databases.selected.empty(tmp_path / "third.db")
    with pytest.raises(SchemaVersionError, match=r"empty.*linerec collector migrate"):
        CollectorStore(tmp_path / "data", third, create=False)


@pytest.mark.parametrize("version", [SCHEMA_VERSION - 1, SCHEMA_VERSION + 1])
def test_a_collector_refuses_a_database_of_another_version_and_says_which(
    tmp_path: Path, version: int
) -> None:
    location = databases.selected.location(tmp_path / "index.db")
    CollectorStore(tmp_path / "data", location).db.close()
    set_version(location, version)
    word = "older" if version < SCHEMA_VERSION else "newer"
    expected = f"schema version {version} is {word} than this linerec's {SCHEMA_VERSION}"
    with pytest.raises(SchemaVersionError, match=re.escape(expected)):
        CollectorStore(tmp_path / "data", location)
    cfg = str(config(tmp_path, location))
    for command in (["run"], ["web"], ["user", "list"], ["list"], ["audit"], ["chain"]):
        out = linerec("collector", *command, "--config", cfg)
        assert out.returncode == 2, out.stdout
        assert expected in out.stderr and "Traceback" not in out.stderr
        assert ("linerec collector migrate" in out.stderr) == (word == "older")
    migrated = linerec("collector", "migrate", "--config", cfg)
    if word == "newer":  # migrate never goes down, nor touches tables it does not know
        assert migrated.returncode == 2 and expected in migrated.stderr
    else:
        assert migrated.returncode == 0, migrated.stderr
        assert f"from schema version {version} to {SCHEMA_VERSION}" in migrated.stdout
        assert linerec("collector", "list", "--config", cfg).returncode == 0


OLD_AUDIT = (
    "CREATE TABLE audit (at REAL NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL, "
    "recording TEXT, reason TEXT NOT NULL);"
    "INSERT INTO audit VALUES (1.0, 'ann', 'export', 'shared', 'dispute');"
    "INSERT INTO audit VALUES (2.0, 'bob', 'listen', 'shared', 'training');"
)
V1_TABLES = """
CREATE TABLE events (device TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL,
    received_at REAL NOT NULL, PRIMARY KEY (device, seq));
CREATE TABLE event_marks (device TEXT PRIMARY KEY, upto INTEGER NOT NULL);
CREATE TABLE recordings (device TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER, line TEXT,
    started_at TEXT, duration REAL, state TEXT, caller_number TEXT, called_number TEXT,
    path TEXT NOT NULL, sha256 TEXT NOT NULL, received_at REAL NOT NULL, {clock}
    PRIMARY KEY (device, id));
CREATE TABLE vault_keys (device TEXT NOT NULL, id TEXT NOT NULL, key BLOB NOT NULL,
    PRIMARY KEY (device, id));
CREATE TABLE holds (device TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (device, id));
CREATE TABLE console_catalog (device TEXT NOT NULL, id TEXT NOT NULL, label TEXT,
    direction TEXT, consent TEXT, clock_synchronized INTEGER, PRIMARY KEY (device, id));
INSERT INTO recordings (device, id, seq, line, started_at, duration, state, path, sha256,
    received_at) VALUES ('box1', 'shared', 1, 'line1', '2026-01-01T12:00:00+00:00', 1.0,
    'complete', '/nowhere', 'aa', 0);
INSERT INTO vault_keys VALUES ('box1', 'shared', x'00');
INSERT INTO holds VALUES ('box1', 'shared');
INSERT INTO console_catalog VALUES ('box1', 'shared', 'sales', 'inbound', 'notice', 1);
INSERT INTO events VALUES ('box1', 1, '{{"seq": 1, "event": "off_hook"}}', 0);
PRAGMA user_version = {version};
"""


@pytest.mark.engines("sqlite")
@pytest.mark.parametrize("version", [1, 2])
def test_an_sqlite_database_of_an_earlier_release_is_migrated(tmp_path: Path, version: int) -> None:
    """Versions 1 and 2 (the console's tables made lazily, an audit log not yet chained)
    are refused until `collector migrate`, which keeps everything and chains the audit."""
    central = tmp_path / "central"
    central.mkdir()
    old = sqlite3.connect(central / "collector.db")
    clock = "clock_synchronized INTEGER," if version == 2 else ""
    old.executescript(V1_TABLES.format(clock=clock, version=version) + OLD_AUDIT)
    old.close()
    cfg = str(config(tmp_path))
    refused = linerec("collector", "list", "--config", cfg)
    assert refused.returncode == 2
    assert f"schema version {version} is older" in refused.stderr
    assert "run `linerec collector migrate`" in refused.stderr
    done = linerec("collector", "migrate", "--config", cfg)
    assert done.returncode == 0, done.stderr
    assert f"migrated from schema version {version} to {SCHEMA_VERSION}" in done.stdout
    store = CollectorStore(central, central / "collector.db")
    assert store.find("shared")["device"] == "box1"
    assert store.is_held("box1", "shared")
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.db.execute("SELECT count(*) FROM stream_discards").fetchone()[0] == 0
    from linerec.collector.audit import AuditLog

    audit = AuditLog(store.db)
    assert [e["who"] for e in audit.entries()] == ["ann", "bob"]
    assert audit.verify() == []  # the entries from before the chain are chained now
    store.audit("export", "shared", "a new one", who="cat")
    assert audit.verify() == [] and len(audit.entries()) == 3
    rows, total = store.search(parse_query({"label": "sales"}))
    assert total == 1 and rows[0]["direction"] == "inbound"
    store.db.close()


# -- the `database` key -------------------------------------------------------------------


@pytest.mark.engines("sqlite")
@pytest.mark.parametrize(
    "uri",
    [
        "postgresql://linerec:s3cret@db.example:5432/linerec",
        "postgresql://linerec@db.example/linerec?password=s3cret",
        "postgres://linerec:@db.example/linerec",
    ],
)
def test_a_password_in_the_database_uri_is_refused(tmp_path: Path, uri: str) -> None:
    path = config(tmp_path, uri)
    with pytest.raises(ConfigError) as refused:
        load_collector_config(path)
    message = str(refused.value)
    assert str(path) in message and "collector.database" in message
    assert "password" in message and "passfile" in message
    out = linerec("collector", "list", "--config", str(path))
    assert out.returncode == 2 and "collector.database" in out.stderr
    assert "s3cret" not in out.stderr


@pytest.mark.engines("sqlite")
def test_the_database_key_takes_a_uri_or_a_file(tmp_path: Path) -> None:
    uri = "postgresql://linerec@db.example:5432/linerec?sslmode=verify-full"
    assert load_collector_config(config(tmp_path, uri)).database == uri
    assert load_collector_config(config(tmp_path, "meta.db")).database == tmp_path / "meta.db"
    with pytest.raises(ConfigError, match=r"collector\.database: a PostgreSQL URI begins"):
        load_collector_config(config(tmp_path, "mysql://db.example/linerec"))


# -- two processes on one database ----------------------------------------------------------


def at_once(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run work(0..count-1) on as many threads, released together; their results."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait(10)
            results[index] = work(index)
        except BaseException as exc:  # reported below, with the test's failure
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def two_stores(tmp_path: Path) -> tuple[CollectorStore, CollectorStore]:
    """Two collectors' stores on one database (each its own connection) and one data_dir
    (the shared filesystem)."""
    location = databases.selected.location(tmp_path / "index.db")
    return CollectorStore(tmp_path / "data", location), CollectorStore(tmp_path / "data", location)


@pytest.mark.engines("sqlite")
def test_a_collector_opening_a_new_sqlite_file_while_another_sets_it_up_waits_its_turn(
    tmp_path: Path,
) -> None:
    """Two collector processes started together on a new data directory: while one is
    switching the file to WAL, the other's switch fails at once with "database is locked"
    (SQLite returns BUSY without waiting, so that neither deadlocks): it tries again until
    the first is done, as long as it would wait for any writer, instead of dying at start."""
    path = tmp_path / "collector.db"
    first = sqlite3.connect(path, isolation_level=None)
    first.execute("CREATE TABLE setting_up (x)")
    first.execute("BEGIN IMMEDIATE")  # the first process's write lock, held mid-switch
    first.execute("INSERT INTO setting_up VALUES (1)")
    waits: list[float] = []

    def the_first_finishes(seconds: float) -> None:
        waits.append(seconds)
        first.execute("COMMIT")

    second = connect(path, sleep=the_first_finishes)
    try:
        assert second.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert len(waits) == 1
    finally:
        second.close()
        first.close()


def test_the_same_event_stored_by_two_processes_at_once_is_kept_once(tmp_path: Path) -> None:
    stores = two_stores(tmp_path)
    for seq in range(1, 41):
        body = {"seq": seq, "event": "off_hook", "line": "line1"}
        added = at_once(2, lambda i, body=body: stores[i].add_event("box1", body, 0.0))  # type: ignore[misc]
        assert sorted(added) == [False, True], (seq, added)
    (count,) = stores[0].db.execute("SELECT count(*) FROM events").fetchone()
    assert count == 40
    assert stores[0].contiguous_seq("box1") == stores[1].contiguous_seq("box1") == 40


def test_neighbouring_events_stored_by_two_processes_leave_no_false_gap(tmp_path: Path) -> None:
    stores = two_stores(tmp_path)
    for seq in range(1, 61, 2):  # seq and seq + 1 land at once, one on each
        at_once(
            2,
            lambda i, seq=seq: stores[i].add_event(  # type: ignore[misc]
                "box1", {"seq": seq + i, "event": "off_hook"}, 0.0
            ),
        )
    assert stores[0].contiguous_seq("box1") == 60
    assert stores[1].gaps("box1") == []


def test_the_same_piece_and_recording_from_two_processes_are_kept_once(tmp_path: Path) -> None:
    stores = two_stores(tmp_path)
    data = bytes(range(256)) * 64
    digest = hashlib.sha256(data).hexdigest()
    half = len(data) // 2
    pieces = [
        Piece(device="box1", recording_id=ID, offset=0, size=len(data), sha256=digest,
              data=data[:half]),
        Piece(device="box1", recording_id=ID, offset=half, size=len(data), sha256=digest,
              data=data[half:]),
    ]  # fmt: skip
    at_once(2, lambda i: stores[i].uploads.add(pieces[0], 1.0))  # the same piece twice
    assert stores[0].uploads.received("box1", ID) == half
    done = at_once(2, lambda i: stores[i].uploads.add(pieces[1], 2.0))
    assert any(done) and stores[1].uploads.received("box1", ID) == len(data)
    (ranges,) = stores[0].db.execute("SELECT count(*) FROM upload_ranges").fetchone()
    assert ranges == 1
    part = next(p for p in done if p is not None)
    assert part.read_bytes() == data
    finals = at_once(2, lambda i: stores[i].keep("box1", ID, part))  # both finish it
    assert finals[0] == finals[1] and not part.exists()
    for store in stores:  # one file, and the key that opens it
        assert store.read_recording(ID, finals[0], "box1") == data
    facts = {"seq": 1, "line": "line1", "started_at": "2026-01-01T12:00:00+00:00"}
    at_once(2, lambda i: stores[i].index("box1", ID, finals[i], digest, facts, 3.0))
    assert [r["id"] for r in stores[0].recordings()] == [ID]
    at_once(2, lambda i: stores[i].follow_chain("box1", 1, "", "h1"))
    assert [(c["seq"], c["state"]) for c in stores[1].chain("box1")] == [(1, "stored")]


def test_command_counters_never_repeat_across_two_processes(tmp_path: Path) -> None:
    stores = two_stores(tmp_path)
    stores[0].add_event("box1", {"seq": 1, "event": "command_done", "counter": 7}, 0.0)
    taken = at_once(2, lambda i: [stores[i].next_command_counter("box1") for _ in range(60)])
    numbers = sorted(taken[0] + taken[1])
    assert numbers == list(range(8, 128))  # above what the device told of, none twice
    stores[1].learn_command_counter("box1", 500)
    assert stores[0].next_command_counter("box1") == 501


def test_the_audit_and_deletion_logs_stay_one_chain_with_two_writers(tmp_path: Path) -> None:
    stores = two_stores(tmp_path)
    at_once(2, lambda i: [stores[i].audit("list", None, f"r{n}", who=f"p{i}") for n in range(30)])
    from linerec.collector.audit import AuditLog

    log = AuditLog(stores[0].db)
    assert len(log.entries()) == 60
    assert log.verify() == []
    entries = [json.dumps(e, sort_keys=True) for e in log.entries()]
    assert len(set(entries)) == 60


def test_two_processes_sweeping_retention_at_once_delete_each_recording_once(
    tmp_path: Path,
) -> None:
    stores = two_stores(tmp_path)
    for n in range(12):
        facts = {"seq": n + 1, "line": "line1", "started_at": "2020-01-01T00:00:00+00:00",
                 "clock_synchronized": True}  # fmt: skip
        stores[0].index("box1", f"r{n}", tmp_path / f"r{n}", "x", facts, 0.0)
    swept = at_once(2, lambda i: stores[i].enforce_retention(30, now=2_000_000_000.0))
    assert sorted(swept[0] + swept[1]) == sorted(f"r{n}" for n in range(12))
    assert stores[1].recordings() == []
    assert len(stores[0].deletions()) == 12
    from linerec.collector.audit import AuditLog

    assert AuditLog(stores[1].db).verify() == []  # one deletion chain, whoever deleted


@pytest.mark.engines("postgresql")
def test_a_migrated_postgresql_database_walks_an_index_for_newest_first(tmp_path: Path) -> None:
    """The console's default page (newest first, NULLs last as on SQLite) must come from an
    index, not from sorting every recording: the index keeps NULLs where the sort wants them.
    A version 3 database gets it from `collector migrate`."""
    location = databases.selected.location(tmp_path / "collector.db")
    store = CollectorStore(tmp_path / "data", location)
    for n in range(200):
        store.db.execute(
            "INSERT INTO recordings (device, id, seq, line, started_at, path, sha256, "
            "received_at) VALUES ('box1', ?, ?, 'line1', ?, 'x', 'x', 0)",
            (f"box1-{n:08d}-x", n, f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}"),
        )
    store.db.close()
    set_version(location, 3)  # as version 3 made it
    db = connect(location)
    db.execute("DROP INDEX console_by_started")
    db.execute("CREATE INDEX console_by_started ON recordings (started_at)")
    db.close()
    done = linerec("collector", "migrate", "--config", str(config(tmp_path, location)))
    assert done.returncode == 0, done.stderr
    db = connect(location)
    seen: list[str] = []
    execute = db.execute

    def capture(sql: str, parameters: Any = ()) -> Any:
        seen.append(sql)
        return execute(sql, parameters)

    db.execute = capture  # type: ignore[method-assign]
    from linerec.collector.search import run_search

    rows, _ = run_search(db, parse_query({"limit": "5"}))
    assert [row["id"] for row in rows] == [f"box1-{n:08d}-x" for n in range(199, 194, -1)]
    execute("SET enable_seqscan = off")  # a table this small would be read whole otherwise
    plan = "\n".join(row[0] for row in execute("EXPLAIN " + seen[-1], (5, 0)).fetchall())
    db.close()
    assert "Index Scan Backward using console_by_started" in plan, plan


@pytest.mark.engines("postgresql")
def test_migrate_from_copies_an_sqlite_collector_database_into_postgresql(tmp_path: Path) -> None:
    """`collector migrate --from FILE`: an SQLite collector database (here of an earlier
    release: brought to the current schema on a copy, the file itself untouched) copied into
    the configured PostgreSQL database, every row kept; a database with data is refused."""
    source = tmp_path / "old.db"
    old = sqlite3.connect(source)
    old.executescript(V1_TABLES.format(clock="", version=1) + OLD_AUDIT)
    old.close()
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    store = CollectorStore(tmp_path / "data", tmp_path / "current.db")  # one of this release
    store.add_event("box1", {"seq": 1, "event": "ringing"}, 1.0)
    store.db.close()
    target = databases.selected.empty(tmp_path / "target")
    cfg = str(config(tmp_path, target))
    done = linerec("collector", "migrate", "--config", cfg, "--from", str(source))
    assert done.returncode == 0, done.stderr
    assert "copied" in done.stdout and "recordings" in done.stdout
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before
    moved = CollectorStore(tmp_path / "data", target, create=False)
    assert moved.find("shared")["device"] == "box1"
    assert moved.is_held("box1", "shared")
    from linerec.collector.audit import AuditLog

    audit = AuditLog(moved.db)
    assert [e["who"] for e in audit.entries()] == ["ann", "bob"]
    assert audit.verify() == []
    moved.audit("export", "shared", "after the move", who="cat")  # the chain goes on
    assert audit.verify() == [] and len(audit.entries()) == 3
    rows, total = moved.search(parse_query({"label": "sales"}))
    assert total == 1 and rows[0]["direction"] == "inbound"
    moved.db.close()
    again = linerec("collector", "migrate", "--config", cfg, "--from", str(tmp_path / "current.db"))
    assert again.returncode == 2
    assert "already holds recordings" in again.stderr
    missing = linerec("collector", "migrate", "--config", cfg, "--from", str(tmp_path / "no.db"))
    assert missing.returncode == 2 and "no.db" in missing.stderr


# -- search over label, direction and review state (schema version 5) ----------------------

LABELS, DIRECTIONS = ("sales", "support", None), ("inbound", "outbound", None)


def fill_recordings(db: Any, count: int) -> list[dict[str, Any]]:
    """`count` recordings over 3 devices of 2 lines, as a version 4 collector kept them: the
    catalog (label, direction) for all but every seventh, a review of every fifth."""
    made = []
    for n in range(count):
        device, line = f"box{n % 3}", f"line{n % 2 + 1}"
        rid = f"{device}-{n:08d}-x-{line}"
        started = f"2026-01-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00.000+00:00"
        db.execute(
            "INSERT INTO recordings (device, id, seq, line, started_at, duration, path, sha256, "
            "received_at) VALUES (?, ?, ?, ?, ?, ?, 'x', 'x', 0)",
            (device, rid, n, line, started, float(n % 11)),
        )
        label, direction = LABELS[n % 3], DIRECTIONS[n % 3 if n % 2 else 0]
        if n % 7:
            db.execute(
                "INSERT INTO console_catalog (device, id, label, direction, consent, "
                "clock_synchronized) VALUES (?, ?, ?, ?, 'notice', 1)",
                (device, rid, label, direction),
            )
        else:
            label = direction = None
        if n % 5 == 0:
            db.execute(
                "INSERT INTO console_reviews (device, id, reviewer, at, scores, comment) "
                "VALUES (?, ?, 'ann', 0, '{}', '')",
                (device, rid),
            )
        made.append({"id": rid, "device": device, "line": line, "started_at": started,
                     "duration": float(n % 11), "label": label, "direction": direction,
                     "reviewed": n % 5 == 0})  # fmt: skip
    return made


def as_version_4(location: Path | str) -> None:
    """The schema as version 4 left it: no label, direction or reviewed on recordings (the
    catalog and the reviews are where they were), the catalog's own indexes."""
    db = connect(location)
    for index in ("console_by_device", "console_by_label", "console_by_direction",
                  "console_by_review"):  # fmt: skip
        db.execute(f"DROP INDEX {index}")
    for column in ("label", "direction", "reviewed"):
        db.execute(f"ALTER TABLE recordings DROP COLUMN {column}")
    db.execute("CREATE INDEX console_catalog_by_label ON console_catalog (label)")
    db.execute("CREATE INDEX console_catalog_by_direction ON console_catalog (direction)")
    db.execute("UPDATE schema_version SET version = 4")
    if db.engine == "sqlite":
        db.execute("PRAGMA user_version = 4")
    db.close()


def expected_ids(made: list[dict[str, Any]], **wanted: Any) -> list[str]:
    """The ids a search for `wanted` finds, in the console's default order."""
    found = [r for r in made if all(r[k] == v for k, v in wanted.items())]
    found.sort(key=lambda r: r["id"])
    found.sort(key=lambda r: r["started_at"], reverse=True)
    return [r["id"] for r in found]


def check_searches(db: Any, made: list[dict[str, Any]]) -> None:
    def ids(**params: str) -> tuple[list[str], int]:
        rows, total = run_search(db, parse_query({"limit": "500", **params}))
        return [row["id"] for row in rows], total

    for label in ("sales", "support"):
        want = expected_ids(made, label=label)
        assert ids(label=label) == (want, len(want))
    for direction in ("inbound", "outbound"):
        want = expected_ids(made, direction=direction)
        assert ids(direction=direction) == (want, len(want))
    for state, flag in (("reviewed", True), ("unreviewed", False)):
        want = expected_ids(made, reviewed=flag)
        assert ids(review=state) == (want, len(want))
    both = expected_ids(made, label="sales", reviewed=True, device="box1")
    assert ids(label="sales", review="reviewed", device="box1") == (both, len(both))
    by_device = sorted(made, key=lambda r: r["id"])
    by_device.sort(key=lambda r: r["started_at"], reverse=True)
    by_device.sort(key=lambda r: (r["device"], r["line"]))
    assert ids(sort="device")[0] == [r["id"] for r in by_device]
    rows, _ = run_search(db, parse_query({"limit": "500"}))
    shown = {row["id"]: row for row in rows}
    for r in made:
        row = shown[r["id"]]
        assert (row["label"], row["direction"], row["reviewed"]) == (
            r["label"], r["direction"], r["reviewed"],
        )  # fmt: skip


def test_a_version_4_database_with_data_is_refused_then_migrated_and_searched_right(
    tmp_path: Path,
) -> None:
    location = databases.selected.location(tmp_path / "collector.db")
    CollectorStore(tmp_path / "data", location).db.close()
    as_version_4(location)
    db = connect(location)
    made = fill_recordings(db, 120)
    db.close()
    with pytest.raises(SchemaVersionError, match=r"schema version 4 is older.*collector migrate"):
        CollectorStore(tmp_path / "data", location)
    done = linerec("collector", "migrate", "--config", str(config(tmp_path, location)))
    assert done.returncode == 0, done.stderr
    assert f"from schema version 4 to {SCHEMA_VERSION}" in done.stdout
    store = CollectorStore(tmp_path / "data", location)
    check_searches(store.db, made)
    # What the console learns afterwards is searched too: a review, a recording catalogued.
    late = next(r for r in made if r["label"] is None and not r["reviewed"])
    save_review(store.db, late["device"], late["id"], "bob", 1.0, {}, "")
    store.catalog(late["device"], late["id"], {"label": "support", "direction": "outbound"})
    late.update(label="support", direction="outbound", reviewed=True)
    check_searches(store.db, made)
    store.db.close()


def test_what_the_console_learns_of_a_recording_is_searched_at_once(tmp_path: Path) -> None:
    """The catalog and a review write the recording's row in their own transaction: the
    filters find it at once, and a deleted recording takes its catalog entry with it."""
    store = CollectorStore(tmp_path / "data", databases.selected.location(tmp_path / "c.db"))
    for n, line in enumerate(("line1", "line2")):
        store.db.execute(
            "INSERT INTO recordings (device, id, seq, line, started_at, path, sha256, "
            "received_at) VALUES ('box1', ?, ?, ?, ?, 'x', 'x', 0)",
            (f"box1-{n}-{line}", n, line, f"2026-01-01T00:00:0{n}.000+00:00"),
        )
    assert [r["id"] for r in store.uncatalogued()] == ["box1-0-line1", "box1-1-line2"]
    store.catalog("box1", "box1-0-line1", {"label": "sales", "direction": "inbound"})
    rows, total = store.search(parse_query({"label": "sales"}))
    assert total == 1 and rows[0]["direction"] == "inbound" and not rows[0]["reviewed"]
    save_review(store.db, "box1", "box1-1-line2", "ann", 1.0, {}, "")
    rows, total = store.search(parse_query({"review": "reviewed"}))
    assert total == 1 and rows[0]["id"] == "box1-1-line2" and rows[0]["reviewed"]
    assert store.search(parse_query({"review": "unreviewed"}))[1] == 1
    store.delete("box1-0-line1", "test", device="box1", who="ann")
    assert store.db.execute("SELECT count(*) FROM console_catalog").fetchone()[0] == 0
    assert store.search(parse_query({"label": "sales"}))[1] == 0
    store.db.close()


def test_a_version_4_catalog_entry_of_a_deleted_recording_goes_in_the_migration(
    tmp_path: Path,
) -> None:
    """Version 4 kept a recording's catalog entry (label, direction, consent) after the
    recording was deleted; migrated, the database holds none of it, as a deletion now does."""
    location = databases.selected.location(tmp_path / "collector.db")
    CollectorStore(tmp_path / "data", location).db.close()
    as_version_4(location)
    db = connect(location)
    kept = fill_recordings(db, 2)[1]  # n = 1: catalogued
    db.execute(
        "INSERT INTO console_catalog (device, id, label, direction, consent, clock_synchronized) "
        "VALUES ('box1', 'box1-gone-line1', 'private', 'inbound', 'notice', 1)"
    )
    db.close()
    done = linerec("collector", "migrate", "--config", str(config(tmp_path, location)))
    assert done.returncode == 0, done.stderr
    db = connect(location)
    rows = db.execute("SELECT device, id, label FROM console_catalog").fetchall()
    assert [tuple(row) for row in rows] == [(kept["device"], kept["id"], kept["label"])]
    db.close()


def test_a_recording_deleted_before_it_is_catalogued_gets_no_catalog_entry(
    tmp_path: Path,
) -> None:
    """The catalog reads a recording's metadata outside the transaction: deleted meanwhile,
    the recording leaves no catalog entry behind (nor a row for it)."""
    store = CollectorStore(tmp_path / "data", databases.selected.location(tmp_path / "c.db"))
    store.catalog("box1", "box1-gone-line1", {"label": "private", "direction": "inbound"})
    assert store.db.execute("SELECT count(*) FROM console_catalog").fetchone()[0] == 0
    assert store.db.execute("SELECT count(*) FROM recordings").fetchone()[0] == 0
    store.db.close()


@pytest.mark.engines("postgresql")
def test_the_console_filters_and_sorts_walk_an_index_to_the_page_on_postgresql(
    tmp_path: Path,
) -> None:
    """A filter by label, direction or review state, and the sort by device, read the page
    from one index in the console's order (no row looked up in another table, no sort of
    every match), as version 5 indexes them."""
    location = databases.selected.location(tmp_path / "collector.db")
    CollectorStore(tmp_path / "data", location).db.close()
    as_version_4(location)
    db = connect(location)
    made = fill_recordings(db, 600)
    db.close()
    done = linerec("collector", "migrate", "--config", str(config(tmp_path, location)))
    assert done.returncode == 0, done.stderr
    db = connect(location)
    db.execute("ANALYZE")
    seen: list[tuple[str, Any]] = []
    execute = db.execute

    def capture(sql: str, parameters: Any = ()) -> Any:
        seen.append((sql, parameters))
        return execute(sql, parameters)

    db.execute = capture  # type: ignore[method-assign]
    execute("SET enable_seqscan = off")  # tables this small would be read whole otherwise
    for params, index in (
        ({"label": "sales"}, "console_by_label"),
        ({"direction": "outbound", "sort": "-duration"}, "console_by_direction"),
        ({"review": "reviewed"}, "console_by_review"),
        ({"sort": "device"}, "console_by_device"),
    ):
        seen.clear()
        run_search(db, parse_query({"limit": "5", **params}))
        (count_sql, count_args), (page_sql, page_args) = seen
        counting = execute("EXPLAIN " + count_sql, count_args).fetchall()
        assert not [row for row in counting if "console_" in row[0] and "console_by" not in row[0]]
        plan = "\n".join(row[0] for row in execute("EXPLAIN " + page_sql, page_args).fetchall())
        assert f"using {index} on recordings" in plan, plan
        assert "console_catalog c_1" not in plan and "console_reviews" not in plan, plan
        # between the page's Limit and the index: at most an incremental sort of equal keys
        page = plan.split("Limit", 1)[1].split("Index Scan", 1)[0]
        assert not re.search(r"(?<!Incremental )Sort  \(", page), plan
    assert made
    db.close()


# -- number prefixes: caller, called, or either, and the capped count ----------------------


def fill_numbers(db: Any) -> list[dict[str, Any]]:
    """48 recordings whose caller and called numbers share prefixes often (digits 1 and 2,
    some unknown), so that "caller or called" matches overlap in every proportion."""
    made = []
    for n in range(48):
        device = f"box{n % 2}"
        rid = f"{device}-{n:08d}-x-line1"
        started = f"2026-02-{1 + n % 9:02d}T{n % 24:02d}:00:00.000+00:00"
        caller = None if n % 11 == 3 else f"{1 + n % 2}{1 + n // 2 % 2}{1 + n // 4 % 2}"
        called = None if n % 13 == 5 else f"{1 + n // 3 % 2}{1 + n // 6 % 2}{1 + n % 5 % 2}"
        if n in (40, 41):  # a prefix only callers have, one only called numbers have
            caller, called = ("91", called) if n == 40 else (caller, "81")
        db.execute(
            "INSERT INTO recordings (device, id, seq, line, started_at, caller_number, "
            "called_number, path, sha256, received_at) VALUES (?, ?, ?, 'line1', ?, ?, ?, 'x', "
            "'x', 0)",
            (device, rid, n, started, caller, called),
        )
        made.append({"id": rid, "device": device, "started_at": started, "caller": caller,
                     "called": called})  # fmt: skip
    return made


@pytest.mark.parametrize("cap", [4, 9, 10_000])
def test_number_prefixes_find_the_same_rows_and_capped_count_on_each_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cap: int
) -> None:
    """`number` matches the caller's or the called number by prefix, each recording once even
    when both match; the count is exact up to the cap and the cap beyond it, however the
    matches split between caller and called, with another filter beside it; paging goes on
    past the cap."""
    monkeypatch.setattr("linerec.collector.search.COUNT_LIMIT", cap)
    store = CollectorStore(tmp_path / "data", databases.selected.location(tmp_path / "c.db"))
    made = fill_numbers(store.db)

    def begins(value: str | None, prefix: str) -> bool:
        return value is not None and value.startswith(prefix)

    prefixes = ["1", "2", "11", "12", "21", "22", "111", "122", "212", "221", "3", "9", "8"]
    checked = 0
    for prefix in prefixes:
        for device in (None, "box1"):
            for name, wanted in (
                ("number", lambda r, p=prefix: begins(r["caller"], p) or begins(r["called"], p)),
                ("caller", lambda r, p=prefix: begins(r["caller"], p)),
                ("called", lambda r, p=prefix: begins(r["called"], p)),
            ):
                found = [r for r in made if wanted(r) and device in (None, r["device"])]
                found.sort(key=lambda r: r["id"])
                found.sort(key=lambda r: r["started_at"], reverse=True)
                want = [r["id"] for r in found]
                params = {name: prefix, "limit": "3", **({"device": device} if device else {})}
                pages = []
                for page in range(1, len(want) // 3 + 3):
                    rows, total = store.search(parse_query({**params, "page": str(page)}))
                    assert total == min(len(want), cap), (params, len(want))
                    pages.extend(row["id"] for row in rows)
                assert pages == want, params
                checked += len(want) > cap
    assert checked or cap == 10_000  # the cap was reached by some, not all
    store.db.close()
