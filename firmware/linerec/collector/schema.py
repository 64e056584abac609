"""The collector's database schema, and the steps that bring an older database up to it.

`PRAGMA user_version` is the schema version: 0 is the first one (recordings, keys and holds
keyed by recording id alone, received ranges of an upload as one JSON list); 1 keys all three
by (device, id), keeps received ranges one row each and adds the quarantine and the event marks;
2 keeps whether each recording's start time came from a synchronised clock (retention); 3 keeps
the streams a device discarded (opted out), so a piece that comes late is not kept.
"""

from __future__ import annotations

import json
import sqlite3
import time

from linerec.ids import device_of

SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    device TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL, received_at REAL NOT NULL,
    PRIMARY KEY (device, seq)
);
CREATE TABLE IF NOT EXISTS event_marks (device TEXT PRIMARY KEY, upto INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS recordings (
    device TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER, line TEXT, started_at TEXT,
    duration REAL, state TEXT, caller_number TEXT, called_number TEXT, path TEXT NOT NULL,
    sha256 TEXT NOT NULL, received_at REAL NOT NULL, clock_synchronized INTEGER,
    PRIMARY KEY (device, id)
);
CREATE TABLE IF NOT EXISTS audit (
    at REAL NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL, recording TEXT, reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS command_counters (device TEXT PRIMARY KEY, counter INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS vault_keys (
    device TEXT NOT NULL, id TEXT NOT NULL, key BLOB NOT NULL, PRIMARY KEY (device, id)
);
CREATE TABLE IF NOT EXISTS holds (device TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (device, id));
CREATE TABLE IF NOT EXISTS deletions (
    id TEXT NOT NULL, device TEXT NOT NULL, at REAL NOT NULL, reason TEXT NOT NULL,
    prev TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chains (
    device TEXT PRIMARY KEY, seq INTEGER NOT NULL, head TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chain_links (
    device TEXT NOT NULL, seq INTEGER NOT NULL, prev TEXT NOT NULL, head TEXT NOT NULL,
    PRIMARY KEY (device, seq)
);
CREATE TABLE IF NOT EXISTS uploads (
    device TEXT NOT NULL, id TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
    ranges INTEGER NOT NULL, touched_at REAL NOT NULL, PRIMARY KEY (device, id)
);
CREATE TABLE IF NOT EXISTS upload_ranges (
    device TEXT NOT NULL, id TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL,
    PRIMARY KEY (device, id, start)
);
CREATE TABLE IF NOT EXISTS chain_absences (
    device TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (device, seq)
);
CREATE TABLE IF NOT EXISTS quarantine (
    device TEXT NOT NULL, id TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
    reason TEXT NOT NULL, path TEXT NOT NULL, received_at REAL NOT NULL,
    PRIMARY KEY (device, id, sha256)
);
CREATE TABLE IF NOT EXISTS stream_discards (
    device TEXT NOT NULL, id TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (device, id)
);
"""


def open_schema(db: sqlite3.Connection) -> None:
    """Create the tables, or migrate an older database to SCHEMA_VERSION (in one transaction)."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    existing = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'recordings'"
    ).fetchone()
    db.execute("BEGIN IMMEDIATE")
    try:
        if existing:
            for step in range(version, SCHEMA_VERSION):
                STEPS[step](db)
        _create(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _create(db: sqlite3.Connection) -> None:
    # executescript() would COMMIT first; one statement at a time keeps them in the transaction.
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


def _from_0(db: sqlite3.Connection) -> None:
    """Version 0 -> 1: (device, id) keys; the device of a key or hold with no recording row is
    read from its id (ids begin with their device)."""
    devices = dict(db.execute("SELECT id, device FROM recordings").fetchall())

    def device(recording_id: str) -> str:
        return str(devices.get(recording_id) or device_of(recording_id) or "")

    db.execute("ALTER TABLE recordings RENAME TO recordings_v0")
    db.execute("ALTER TABLE vault_keys RENAME TO vault_keys_v0")
    db.execute("ALTER TABLE holds RENAME TO holds_v0")
    db.execute("ALTER TABLE uploads RENAME TO uploads_v0")
    _create(db)
    columns = "device, id, seq, line, started_at, duration, state, caller_number, called_number, "
    columns += "path, sha256, received_at"
    old = {row[1] for row in db.execute("PRAGMA table_info(recordings_v0)")}
    if "clock_synchronized" in old:  # a version 0 that had grown the column
        columns += ", clock_synchronized"
    db.execute(f"INSERT INTO recordings ({columns}) SELECT {columns} FROM recordings_v0")
    for recording_id, key in db.execute("SELECT id, key FROM vault_keys_v0").fetchall():
        db.execute(
            "INSERT OR REPLACE INTO vault_keys (device, id, key) VALUES (?, ?, ?)",
            (device(recording_id), recording_id, key),
        )
    for (recording_id,) in db.execute("SELECT id FROM holds_v0").fetchall():
        db.execute(
            "INSERT OR IGNORE INTO holds (device, id) VALUES (?, ?)",
            (device(recording_id), recording_id),
        )
    now = time.time()
    rows = db.execute("SELECT device, id, size, sha256, received FROM uploads_v0").fetchall()
    for upload_device, recording_id, size, sha256, received in rows:
        ranges = json.loads(received)
        db.execute(
            "INSERT INTO uploads (device, id, size, sha256, ranges, touched_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (upload_device, recording_id, size, sha256, len(ranges), now),
        )
        db.executemany(
            "INSERT INTO upload_ranges (device, id, start, end) VALUES (?, ?, ?, ?)",
            [(upload_device, recording_id, int(a), int(b)) for a, b in ranges],
        )
    for table in ("recordings_v0", "vault_keys_v0", "holds_v0", "uploads_v0"):
        db.execute(f"DROP TABLE {table}")


def _from_1(db: sqlite3.Connection) -> None:
    """Version 1 -> 2: recordings keep clock_synchronized (unknown, NULL, for those before)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(recordings)")}
    if "clock_synchronized" not in columns:
        db.execute("ALTER TABLE recordings ADD COLUMN clock_synchronized INTEGER")


def _from_2(db: sqlite3.Connection) -> None:
    """Version 2 -> 3: the discarded streams are kept (none were, before: an empty table)."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS stream_discards (device TEXT NOT NULL, id TEXT NOT NULL, "
        "at REAL NOT NULL, PRIMARY KEY (device, id))"
    )


STEPS = {0: _from_0, 1: _from_1, 2: _from_2}
