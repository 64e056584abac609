"""The collector's database schema, one for both engines, and the steps that bring an older
database up to it (`linerec collector migrate`).

Versions: 0 is the first (recordings, keys and holds keyed by recording id alone, received
ranges of an upload as one JSON list); 1 keys all three by (device, id), keeps received ranges
one row each and adds the quarantine and the event marks; 2 keeps whether each recording's
start time came from a synchronised clock (retention); 3 is one schema for every table, the
console's included (before, each console module made its own when first used), with the audit
log chained, the streams a device discarded (opted out) kept so that a piece coming late is
not, and the version kept in the table `schema_version` on both engines; 4 orders the
console's indexes on PostgreSQL as its searches sort (NULLs lowest, as SQLite: without it,
"newest first" sorted every row) and indexes the catalog's label and direction; 5 keeps each
recording's label and direction (from the catalog) and whether it was reviewed on its own row,
with indexes that serve each filter in the console's order and stop at its page (before, a
search by label, direction or review state looked up another table for every row it walked,
and sorting by device sorted every row on PostgreSQL).

SQLite databases of versions 0-2 kept their version in `PRAGMA user_version` (still written,
for the tools of those releases). A PostgreSQL database starts at the current version.

A collector opens only a database of exactly its version: an empty one is created, an older
one must be migrated first, a newer one needs a newer linerec (`SchemaVersionError` says which).
"""

from __future__ import annotations

import json
import time

from linerec.collector.audit import AUDIT_FIELDS, entry_hash
from linerec.collector.database import SQLITE, Database, DatabaseError
from linerec.ids import device_of

SCHEMA_VERSION = 5

# Written in SQLite's type names; Database.ddl gives PostgreSQL's. {ROWID} is the order rows
# were added in (SQLite's implicit rowid; a generated column on PostgreSQL); {C} keeps a
# column in code-point order on PostgreSQL too, so `p <= x < p || U+10FFFF` is "begins with p";
# {NF} puts NULLs first in an index on PostgreSQL (where SQLite has them), so one index serves
# both directions of a sort (Database.order); {NL} puts them last in a descending column.
#
# A recording's label and direction (read from its encrypted metadata by the console: the
# catalog) and whether it has a review are kept on its row as well, written in the same
# transaction as the catalog row or the review, so that one index serves a filter on them
# and the console's order at once.
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    device TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL, received_at REAL NOT NULL,
    PRIMARY KEY (device, seq)
);
CREATE TABLE IF NOT EXISTS event_marks (device TEXT PRIMARY KEY, upto INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS recordings ({ROWID}
    device TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER, line TEXT, started_at TEXT{C},
    duration REAL, state TEXT, caller_number TEXT{C}, called_number TEXT{C}, path TEXT NOT NULL,
    sha256 TEXT NOT NULL, received_at REAL NOT NULL, clock_synchronized INTEGER,
    label TEXT, direction TEXT, reviewed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device, id)
);
CREATE TABLE IF NOT EXISTS audit ({ROWID}
    at REAL NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL, recording TEXT, reason TEXT NOT NULL,
    prev TEXT NOT NULL DEFAULT '', hash TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS command_counters (device TEXT PRIMARY KEY, counter INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS vault_keys (
    device TEXT NOT NULL, id TEXT NOT NULL, key BLOB NOT NULL, PRIMARY KEY (device, id)
);
CREATE TABLE IF NOT EXISTS holds (device TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (device, id));
CREATE TABLE IF NOT EXISTS deletions ({ROWID}
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
    device TEXT NOT NULL, id TEXT NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
    PRIMARY KEY (device, id, start)
);
CREATE TABLE IF NOT EXISTS chain_absences (
    device TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (device, seq)
);
CREATE TABLE IF NOT EXISTS quarantine ({ROWID}
    device TEXT NOT NULL, id TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
    reason TEXT NOT NULL, path TEXT NOT NULL, received_at REAL NOT NULL,
    PRIMARY KEY (device, id, sha256)
);
CREATE TABLE IF NOT EXISTS console_catalog (
    device TEXT NOT NULL, id TEXT NOT NULL, label TEXT, direction TEXT, consent TEXT,
    clock_synchronized INTEGER, PRIMARY KEY (device, id)
);
CREATE TABLE IF NOT EXISTS console_reviews ({ROWID}
    device TEXT NOT NULL, id TEXT NOT NULL, reviewer TEXT NOT NULL, at REAL NOT NULL,
    scores TEXT NOT NULL, comment TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS console_reviews_recording ON console_reviews (device, id);
CREATE TABLE IF NOT EXISTS console_review_edits ({ROWID}
    review INTEGER NOT NULL, who TEXT NOT NULL, at REAL NOT NULL, scores TEXT NOT NULL,
    comment TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS console_review_edits_review ON console_review_edits (review);
CREATE INDEX IF NOT EXISTS console_by_started ON recordings (started_at{NF});
CREATE INDEX IF NOT EXISTS console_by_id ON recordings (id);
CREATE INDEX IF NOT EXISTS console_by_line ON recordings (device, line{NF}, started_at{NF});
CREATE INDEX IF NOT EXISTS console_by_caller ON recordings (caller_number);
CREATE INDEX IF NOT EXISTS console_by_called ON recordings (called_number);
CREATE INDEX IF NOT EXISTS console_by_duration ON recordings (duration{NF});
CREATE INDEX IF NOT EXISTS console_by_device ON recordings
    (device{NF}, line{NF}, started_at DESC{NL}, id);
CREATE INDEX IF NOT EXISTS console_by_label ON recordings (label, started_at{NF});
CREATE INDEX IF NOT EXISTS console_by_direction ON recordings (direction, duration{NF});
CREATE INDEX IF NOT EXISTS console_by_review ON recordings (reviewed, started_at{NF});
CREATE TABLE IF NOT EXISTS redactions (
    device TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, start REAL NOT NULL,
    "end" REAL NOT NULL, reason TEXT NOT NULL, who TEXT NOT NULL, at REAL NOT NULL,
    original_kept INTEGER NOT NULL, PRIMARY KEY (device, id, version)
);
CREATE TABLE IF NOT EXISTS kept_originals (
    device TEXT NOT NULL, id TEXT NOT NULL, key BLOB NOT NULL, path TEXT NOT NULL,
    PRIMARY KEY (device, id)
);
CREATE TABLE IF NOT EXISTS fleet_status (
    device TEXT PRIMARY KEY, state TEXT NOT NULL, since REAL NOT NULL, body TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS fleet_health (
    device TEXT PRIMARY KEY, body TEXT NOT NULL, received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS console_users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, password TEXT NOT NULL, totp_secret TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
    locked_until REAL NOT NULL DEFAULT 0, last_step INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS console_grants (
    name TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (name, kind, value)
);
CREATE TABLE IF NOT EXISTS console_sessions (
    token_hash TEXT PRIMARY KEY, name TEXT NOT NULL, csrf TEXT NOT NULL,
    created_at REAL NOT NULL, last_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS console_tokens (
    token_hash TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS stream_discards (
    device TEXT NOT NULL, id TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (device, id)
);
CREATE TABLE IF NOT EXISTS schema_version (
    one INTEGER PRIMARY KEY CHECK (one = 1), version INTEGER NOT NULL
)
"""


class SchemaVersionError(DatabaseError):
    """The database's schema is not the one this linerec reads (says which, and what to do)."""


def version_of(db: Database) -> int | None:
    """The database's schema version; None for an empty database (no linerec tables)."""
    tables = db.tables()
    if "schema_version" in tables:
        row = db.execute("SELECT version FROM schema_version").fetchone()
        if row is not None:
            return int(row[0])
    if "recordings" not in tables:
        return None
    if db.engine == SQLITE:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    raise SchemaVersionError(
        f"{db.name}: has linerec tables but no schema version: not a database this linerec made"
    )


def prepare(db: Database, *, create: bool = True) -> None:
    """Check that the database is at SCHEMA_VERSION; an empty one is created if `create`."""
    version = version_of(db)
    if version is None and create:
        with db.transaction():
            db.lock_schema()  # two collectors starting on one empty database: one creates it
            if version_of(db) is None:
                _create(db)
                _set_version(db)
            version = version_of(db)
    if version == SCHEMA_VERSION:
        return
    if version is None:
        raise SchemaVersionError(
            f"{db.name}: empty (no schema): run `linerec collector migrate` to create it"
        )
    if version < SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{db.name}: schema version {version} is older than this linerec's "
            f"{SCHEMA_VERSION}: run `linerec collector migrate` (back the database up first)"
        )
    raise SchemaVersionError(
        f"{db.name}: schema version {version} is newer than this linerec's {SCHEMA_VERSION} "
        "(a newer linerec migrated it): run that linerec, or upgrade this one"
    )


def migrate(db: Database) -> tuple[int | None, int]:
    """Bring the database to SCHEMA_VERSION in one transaction; (from, to). A newer one is
    refused (SchemaVersionError): its tables are not known here."""
    with db.transaction():
        db.lock_schema()
        before = version_of(db)
        if before is not None and before > SCHEMA_VERSION:
            prepare(db, create=False)  # raises, saying so
        if before is not None:
            for step in range(before, SCHEMA_VERSION):
                STEPS[step](db)
        _create(db)
        _set_version(db)
    if before is not None and before < 5 and db.engine != SQLITE and not db.in_transaction:
        # 4 -> 5 updated every recording, leaving a dead version of each: the table and its
        # indexes twice their size, and a plain VACUUM keeps the space. Written anew, compact
        # (only once the update has committed: inside its transaction the old versions are
        # still kept); then the statistics for the new indexes and the visibility map that
        # lets a count be read from an index alone.
        db.execute("VACUUM (FULL) recordings")
        db.execute("VACUUM (ANALYZE) recordings")
    return before, SCHEMA_VERSION


def _set_version(db: Database) -> None:
    db.execute(
        "INSERT INTO schema_version (one, version) VALUES (1, ?) "
        "ON CONFLICT (one) DO UPDATE SET version = excluded.version",
        (SCHEMA_VERSION,),
    )
    if db.engine == SQLITE:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _create(db: Database) -> None:
    # executescript() would COMMIT first; one statement at a time keeps them in the transaction.
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(db.ddl(statement))


def _from_0(db: Database) -> None:
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
    old = db.columns("recordings_v0")
    if "clock_synchronized" in old:  # a version 0 that had grown the column
        columns += ", clock_synchronized"
    db.execute(f"INSERT INTO recordings ({columns}) SELECT {columns} FROM recordings_v0")
    for recording_id, key in db.execute("SELECT id, key FROM vault_keys_v0").fetchall():
        db.execute(
            "INSERT INTO vault_keys (device, id, key) VALUES (?, ?, ?) "
            "ON CONFLICT (device, id) DO UPDATE SET key = excluded.key",
            (device(recording_id), recording_id, key),
        )
    for (recording_id,) in db.execute("SELECT id FROM holds_v0").fetchall():
        db.execute(
            "INSERT INTO holds (device, id) VALUES (?, ?) ON CONFLICT DO NOTHING",
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
            'INSERT INTO upload_ranges (device, id, start, "end") VALUES (?, ?, ?, ?)',
            [(upload_device, recording_id, int(a), int(b)) for a, b in ranges],
        )
    for table in ("recordings_v0", "vault_keys_v0", "holds_v0", "uploads_v0"):
        db.execute(f"DROP TABLE {table}")


def _from_1(db: Database) -> None:
    """Version 1 -> 2: recordings keep clock_synchronized (unknown, NULL, for those before)."""
    columns = db.columns("recordings")
    if "clock_synchronized" not in columns:
        db.execute("ALTER TABLE recordings ADD COLUMN clock_synchronized INTEGER")


def _from_2(db: Database) -> None:
    """Version 2 -> 3: the audit log gains its chain (an audit table from before it had one
    is chained as it stands); the console's tables join the schema (made by `_create`)."""
    if "audit" not in db.tables():
        return
    columns = db.columns("audit")
    if {"prev", "hash"} <= columns:
        return
    for column in ("prev", "hash"):
        if column not in columns:
            db.execute(f"ALTER TABLE audit ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
    prev = ""
    rows = db.execute(f"SELECT rowid, {', '.join(AUDIT_FIELDS)} FROM audit ORDER BY rowid")
    for rowid, *values in rows.fetchall():
        entry = {**dict(zip(AUDIT_FIELDS, values, strict=True)), "prev": prev}
        prev = entry_hash(entry)
        db.execute(
            "UPDATE audit SET prev = ?, hash = ? WHERE rowid = ?", (entry["prev"], prev, rowid)
        )


def _from_3(db: Database) -> None:
    """Version 3 -> 4: PostgreSQL's sort indexes made again with NULLs first (`_create` makes
    them, and the catalog's new ones on both engines)."""
    if db.engine != SQLITE:
        db.execute("DROP INDEX IF EXISTS console_by_started, console_by_line, console_by_duration")


def _from_4(db: Database) -> None:
    """Version 4 -> 5: recordings keep their label, direction (from the catalog) and whether
    they were reviewed; the catalog's own indexes give way to the recordings' (`_create`);
    the catalog entries of recordings deleted before go."""
    columns = db.columns("recordings")
    for column, kind in (
        ("label", "TEXT"),
        ("direction", "TEXT"),
        ("reviewed", "INTEGER NOT NULL DEFAULT 0"),
    ):
        if column not in columns:
            db.execute(db.ddl(f"ALTER TABLE recordings ADD COLUMN {column} {kind}"))
    tables = db.tables()
    if "console_catalog" in tables:  # a database from before version 3 may not have them
        # Version 4 kept the entry of a deleted recording; a deletion takes it now.
        db.execute(
            "DELETE FROM console_catalog WHERE NOT EXISTS (SELECT 1 FROM recordings r "
            "WHERE r.device = console_catalog.device AND r.id = console_catalog.id)"
        )
        db.execute(
            "UPDATE recordings SET label = c.label, direction = c.direction "
            "FROM console_catalog c WHERE c.device = recordings.device AND c.id = recordings.id"
        )
    if "console_reviews" in tables:
        db.execute(
            "UPDATE recordings SET reviewed = 1 WHERE EXISTS (SELECT 1 FROM console_reviews v "
            "WHERE v.device = recordings.device AND v.id = recordings.id)"
        )
    db.execute("DROP INDEX IF EXISTS console_catalog_by_label")
    db.execute("DROP INDEX IF EXISTS console_catalog_by_direction")


STEPS = {0: _from_0, 1: _from_1, 2: _from_2, 3: _from_3, 4: _from_4}
