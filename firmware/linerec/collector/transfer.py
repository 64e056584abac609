"""Moving a collector from SQLite to PostgreSQL: `linerec collector migrate --from FILE` copies
an SQLite collector database into the configured one.

The file is not changed: it is read through a copy (SQLite's backup, consistent even while a
collector writes it), which is brought to this linerec's schema first if it is of an earlier
release. The target gets the schema and must hold no data yet; every table is copied in the
order its rows were added (the chained logs stay one chain), in one transaction.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from linerec.collector.database import Database, DatabaseError, connect
from linerec.collector.schema import migrate, version_of

BATCH = 10_000  # rows read and written at a time


def copy_sqlite(source: Path, target: Database) -> dict[str, int]:
    """Every row of the SQLite collector database `source` into `target`; rows per table."""
    if not source.is_file():
        raise DatabaseError(f"--from {source}: no such file (the SQLite collector database)")
    with tempfile.TemporaryDirectory(prefix="linerec-copy-") as tmp:
        snapshot = Path(tmp) / "source.db"
        try:
            reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
            writer = sqlite3.connect(snapshot)
            reader.backup(writer)
            reader.close()
            writer.close()
        except sqlite3.DatabaseError as exc:
            raise DatabaseError(f"--from {source}: not an SQLite database: {exc}") from exc
        db = connect(snapshot)
        try:
            if version_of(db) is None:
                raise DatabaseError(f"--from {source}: not a linerec collector database")
            migrate(db)  # the snapshot only; one of a newer linerec is refused, saying so
            migrate(target)
            return _copy(db, target)
        finally:
            db.close()


def _copy(source: Database, target: Database) -> dict[str, int]:
    tables = sorted(source.tables() - {"schema_version"})
    for table in ["recordings", *tables]:
        if target.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone():
            raise DatabaseError(
                f"{target.name}: already holds {table}: --from copies only into a database "
                "with no data"
            )
    counts: dict[str, int] = {}
    with target.transaction():
        for table in tables:
            info = source.connection.execute(f"PRAGMA table_info({table})").fetchall()
            columns = [str(row[1]) for row in info]
            text = [str(row[2]).upper() == "TEXT" for row in info]
            names = ", ".join(f'"{c}"' for c in columns)
            marks = ", ".join("?" for _ in columns)
            rows = source.connection.execute(f"SELECT {names} FROM {table} ORDER BY rowid")
            counts[table] = 0
            while batch := rows.fetchmany(BATCH):
                # SQLite keeps what it was given; a TEXT column may hold a number.
                fixed = [
                    tuple(
                        str(v) if t and v is not None and not isinstance(v, str) else v
                        for v, t in zip(row, text, strict=True)
                    )
                    for row in batch
                ]
                target.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", fixed)
                counts[table] += len(batch)
    return counts
