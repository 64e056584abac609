"""Which engine holds the collector's metadata in a test: SQLite (a file, as by default) or
PostgreSQL (a database of its own on the session's server, tests/postgres.py).

A test that takes the `engine` fixture (conftest.py: run once per engine) has `selected` set
for it; the helpers that make a collector's configuration or open a store ask it where the
database is. The same path always names the same database within a test, so a collector
restarted on the same data directory finds what it kept.
"""

from __future__ import annotations

from pathlib import Path

from linerec.collector.database import connect
from postgres import PostgresServer


class Databases:
    def __init__(self, engine: str = "sqlite", server: PostgresServer | None = None) -> None:
        self.engine = engine
        self.server = server
        self._uris: dict[Path, str] = {}

    def location(self, path: Path) -> Path | str:
        """Where the database a test would keep at `path` (a SQLite file) is on this engine."""
        if self.server is None:
            return path
        if path not in self._uris:
            self._uris[path] = self.server.create()
        return self._uris[path]

    def config_line(self, data_dir: Path) -> str:
        """The `[collector] database` line for a collector on `data_dir` ('' for SQLite: the
        default, collector.db in data_dir)."""
        if self.server is None:
            return ""
        return f'database = "{self.location(data_dir / "collector.db")}"\n'

    def empty(self, path: Path) -> Path | str:
        """An empty database (no schema): a file not yet made, or a new PostgreSQL database."""
        if self.server is None:
            return path
        self._uris[path] = self.server.create(schema=False)
        return self._uris[path]

    def drop_all(self) -> None:
        if self.server is not None:
            for uri in self._uris.values():
                self.server.drop(uri)
        self._uris.clear()


def copy_rows(source: Path | str, target: Path | str) -> None:
    """Every row of one collector database into another of the same schema, in the order
    they were added (a test's private copy of a site delivered once, on its engine)."""
    src, dst = connect(source), connect(target)
    try:
        with dst.transaction():
            for table in sorted(src.tables() - {"schema_version"}):
                columns = ", ".join(f'"{c}"' for c in sorted(src.columns(table) - {"rowid"}))
                rows = src.execute(f"SELECT {columns} FROM {table} ORDER BY rowid").fetchall()
                marks = ", ".join("?" for _ in columns.split(", "))
                if rows:
                    dst.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
    finally:
        src.close()
        dst.close()


selected = Databases()
