"""The collector's metadata database: one small layer, two engines behind it.

SQLite (the default: a file in `data_dir`) or PostgreSQL through psycopg 3 (`[collector]
database = "postgresql://user@host:5432/linerec"`). The collector's SQL is written once, in
the dialect both accept: `?` placeholders (translated here for psycopg), `INSERT ... ON
CONFLICT`, `RETURNING`, `IS [NOT] DISTINCT FROM`, a quoted `"end"`. What the two cannot share
is named here and nowhere else: reading a field of a JSON column (`json_text`), the larger of
two values (`greatest`), where NULLs sort (`order`), the column types of the schema (`ddl`),
the schema version, the table lock a chained log takes, and what "shred free pages" means.

Every statement runs on its own (autocommit) unless inside `transaction()`, which is one
transaction however deeply it nests; a lock keeps the threads of one process (MQTT, the
console) from running statements inside each other's transaction.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from linerec.errors import LinerecError

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
URI_SCHEMES = ("postgresql", "postgres")


class Cursor(Protocol):
    """What the store reads from a statement (sqlite3's and psycopg's cursors both are this)."""

    @property
    def description(self) -> Any: ...

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class DatabaseError(LinerecError):
    """The database cannot be used as configured (names the setting and what is wrong)."""


class DatabaseUnavailable(DatabaseError):
    """The database is there but cannot be written now: the server is down or unreachable,
    the disk is full, another process holds the lock too long. What was being done is not
    committed; the next statement tries again (reconnecting to a server first)."""


# SQLite's errors that say "not now" (the file, the disk, another writer), not "wrong SQL".
_SQLITE_UNAVAILABLE = ("locked", "busy", "full", "disk i/o", "unable to open", "readonly")
RECONNECT_EVERY = 1.0  # seconds between attempts to reach a server that went away


def is_uri(location: Path | str) -> bool:
    return isinstance(location, str) and urlsplit(location).scheme in URI_SCHEMES


def check_uri(uri: str) -> str:
    """A PostgreSQL URI as the config may give it: libpq's form, with no password in it (it
    comes from a passfile, PGPASSFILE or PGPASSWORD). ValueError says what is wrong."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise ValueError(f"not a PostgreSQL URI: {exc}") from exc
    if parts.scheme not in URI_SCHEMES:
        raise ValueError("a PostgreSQL URI begins postgresql://")
    if parts.password is not None or re.search(r"(^|[?&])password=", parts.query):
        raise ValueError(
            "the URI carries a password: put it in a passfile (~/.pgpass or PGPASSFILE) or "
            "the environment (PGPASSWORD), never in the config"
        )
    return uri


def connect(location: Path | str, *, sleep: Callable[[float], None] = time.sleep) -> Database:
    """The database at `location`: a PostgreSQL URI, or the path of a SQLite file."""
    if is_uri(location):
        return _connect_postgresql(check_uri(str(location)))
    path = Path(location)
    # Other collector processes may hold the write lock: wait for it that long.
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT)
    _switch_to_wal(db, sleep)
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA secure_delete=ON")  # a deleted key is overwritten, not just unlinked
    return Database(db, SQLITE, str(path))


def _switch_to_wal(db: sqlite3.Connection, sleep: Callable[[float], None]) -> None:
    """WAL mode, waiting as long as for any writer. While another process holds the write
    lock (switching a new file to WAL itself, say), SQLite answers "locked" at once rather
    than wait (its busy handler would deadlock there): so the wait is here."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        sleep(0.05)


def _connect_postgresql(uri: str) -> Database:
    try:
        import psycopg
    except ImportError as exc:  # the collector's extra, not on the appliance
        raise DatabaseError(
            "[collector] database names PostgreSQL, which needs psycopg 3: "
            "pip install 'linerec[collector]' (or 'psycopg[binary]')"
        ) from exc
    where = urlsplit(uri)._replace(query="").geturl()

    def reconnect() -> Any:
        try:
            return psycopg.connect(uri, autocommit=True)
        except psycopg.Error as exc:
            raise DatabaseUnavailable(f"{where}: cannot connect: {_first_line(exc)}") from exc

    try:
        connection = psycopg.connect(uri, autocommit=True)
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot connect to {where}: {str(exc).strip()}") from exc
    return Database(connection, POSTGRESQL, where, reconnect=reconnect)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@functools.lru_cache(maxsize=1024)
def _to_format(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (a literal `%` doubled first)."""
    return sql.replace("%", "%%").replace("?", "%s")


BUSY_TIMEOUT = 60.0  # seconds a SQLite writer waits for another process's write lock
_DDL_TYPES = {"INTEGER": "BIGINT", "REAL": "DOUBLE PRECISION", "BLOB": "BYTEA"}


class Database:
    """One connection to the collector's metadata, whichever engine holds it."""

    def __init__(
        self,
        connection: Any,
        engine: str,
        name: str,
        *,
        reconnect: Callable[[], Any] | None = None,
    ) -> None:
        self.connection = connection
        self.engine = engine
        self.name = name  # the file, or the URI without its options (for messages)
        self._reconnect = reconnect
        self._next_attempt = 0.0
        self._lock = threading.RLock()
        self._depth = 0
        self._after_commit: list[Callable[[], None]] = []
        self._after_rollback: list[Callable[[], None]] = []
        self._held: set[str] = set()  # lock_key's keys held by the transaction under way

    # -- running statements -----------------------------------------------------------------

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        with self._lock, self._unavailable():
            self._ensure_connected()
            if self.engine == SQLITE:
                return self.connection.execute(sql, tuple(parameters))  # type: ignore[no-any-return]
            return self.connection.execute(_to_format(sql), tuple(parameters))  # type: ignore[no-any-return]

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._lock, self._unavailable():
            self._ensure_connected()
            if self.engine == SQLITE:
                self.connection.executemany(sql, rows)
            else:
                with self.connection.cursor() as cursor:
                    cursor.executemany(_to_format(sql), rows)

    def execute_all(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Statements whose results are not read, sent together: on PostgreSQL in one round
        trip (psycopg's pipeline mode; the first that fails raises, as it would alone), on
        SQLite one after another."""
        with self._lock, self._unavailable():
            self._ensure_connected()
            if self.engine == SQLITE:
                for sql, parameters in statements:
                    self.connection.execute(sql, tuple(parameters))
                return
            with self.connection.pipeline():
                for sql, parameters in statements:
                    self.connection.execute(_to_format(sql), tuple(parameters))

    @contextmanager
    def _unavailable(self) -> Iterator[None]:
        """The engine's "cannot now" errors as DatabaseUnavailable, naming the database;
        other errors (a constraint, wrong SQL) pass unchanged."""
        try:
            yield
        except DatabaseUnavailable:
            raise
        except sqlite3.OperationalError as exc:
            if not any(word in str(exc).lower() for word in _SQLITE_UNAVAILABLE):
                raise
            raise DatabaseUnavailable(f"{self.name}: {_first_line(exc)}") from exc
        except Exception as exc:
            if self.engine != POSTGRESQL or not _is_connection_error(exc, self.connection):
                raise
            raise DatabaseUnavailable(f"{self.name}: {_first_line(exc)}") from exc

    def _ensure_connected(self) -> None:
        """A server connection that broke is opened again (outside a transaction, at most
        every RECONNECT_EVERY seconds; between attempts it fails at once)."""
        if self._reconnect is None or not self.connection.closed:
            return
        if self._depth:
            raise DatabaseUnavailable(f"{self.name}: the connection broke mid-transaction")
        now = time.monotonic()
        if now < self._next_attempt:
            raise DatabaseUnavailable(f"{self.name}: the connection is closed (reconnecting)")
        self._next_attempt = now + RECONNECT_EVERY
        self.connection = self._reconnect()

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @contextmanager
    def transaction(self, *, lock: str | None = None) -> Iterator[None]:
        """One transaction (a nested one joins the outer). `lock` names a table whose rows are
        chained (each names the hash of the one before): no other writer appends to it until
        this commits. SQLite's BEGIN IMMEDIATE already keeps every other writer out."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    if lock and self.engine == POSTGRESQL:
                        self.execute(f"LOCK TABLE {lock} IN SHARE ROW EXCLUSIVE MODE")
                    yield
                finally:
                    self._depth -= 1
                return
            with self._unavailable():
                self._ensure_connected()
                self.connection.execute("BEGIN IMMEDIATE" if self.engine == SQLITE else "BEGIN")
            self._depth = 1
            try:
                if lock and self.engine == POSTGRESQL:
                    self.execute(f"LOCK TABLE {lock} IN SHARE ROW EXCLUSIVE MODE")
                yield
            except BaseException:
                self._depth = 0
                self._after_commit.clear()
                undo, self._after_rollback = self._after_rollback, []
                self._held.clear()
                try:
                    if not getattr(self.connection, "closed", False):  # a broken one rolled back
                        with self._unavailable():
                            self.connection.execute("ROLLBACK")
                finally:
                    for action in reversed(undo):
                        action()
                raise
            self._depth = 0
            self._held.clear()
            # A COMMIT that fails may still have committed (the connection lost on the way):
            # the files it would undo are kept (an extra file, never a row without its file).
            self._after_rollback.clear()
            try:
                with self._unavailable():  # a COMMIT that fails is not acknowledged: sent again
                    self.connection.execute("COMMIT")
            except BaseException:
                self._after_commit.clear()
                raise
            actions, self._after_commit = self._after_commit, []
            for action in actions:
                action()

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run `action` once the transaction under way commits (at once if none is): a file
        the transaction makes unneeded goes only when a crash can no longer undo it."""
        with self._lock:
            if self._depth:
                self._after_commit.append(action)
                return
        action()

    def after_rollback(self, action: Callable[[], None]) -> None:
        """Run `action` if the transaction under way is rolled back (not if none is): a file
        made for rows that are undone goes with them."""
        with self._lock:
            if self._depth:
                self._after_rollback.append(action)

    def close(self) -> None:
        with self._lock:
            self.connection.close()

    # -- what the two dialects cannot share --------------------------------------------------

    def json_text(self, column: str, field: str) -> str:
        """SQL for a top-level field of a JSON text column, as text (NULL if absent)."""
        if not re.fullmatch(r"[a-z_]+", field):
            raise ValueError(f"not a JSON field name: {field!r}")
        if self.engine == SQLITE:
            return f"CAST(json_extract({column}, '$.{field}') AS TEXT)"
        return f"({column}::jsonb ->> '{field}')"

    def greatest(self, a: str, b: str) -> str:
        return f"max({a}, {b})" if self.engine == SQLITE else f"GREATEST({a}, {b})"

    def order(self, column: str, descending: bool = False) -> str:
        """An ORDER BY term with NULLs where SQLite puts them (lowest) on both engines."""
        if self.engine == SQLITE:
            return f"{column} DESC" if descending else f"{column} ASC"
        return f"{column} DESC NULLS LAST" if descending else f"{column} ASC NULLS FIRST"

    def ddl(self, statement: str) -> str:
        """A schema statement in this engine's types (written with SQLite's names)."""
        if self.engine == SQLITE:
            for mark in ("{ROWID}", "{C}", "{NF}", "{NL}"):
                statement = statement.replace(mark, "")
            return statement
        statement = (
            statement.replace("{NF}", " NULLS FIRST")
            .replace("{NL}", " NULLS LAST")
            .replace("{ROWID}", "rowid BIGINT GENERATED BY DEFAULT AS IDENTITY UNIQUE, ")
            .replace("{C}", ' COLLATE "C"')
        )
        return re.sub(r"\b(INTEGER|REAL|BLOB)\b", lambda m: _DDL_TYPES[m.group(1)], statement)

    def tables(self) -> set[str]:
        if self.engine == SQLITE:
            rows = self.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            rows = self.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        return {str(row[0]) for row in rows}

    def columns(self, table: str) -> set[str]:
        if self.engine == SQLITE:
            return {str(row[1]) for row in self.execute(f"PRAGMA table_info({table})")}
        rows = self.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ?",
            (table,),
        )
        return {str(row[0]) for row in rows}

    def lock_schema(self) -> None:
        """Inside a transaction: no other process changes the schema until it ends (two
        collectors starting on one empty database create it once)."""
        if self.engine == POSTGRESQL:
            self.execute("SELECT pg_advisory_xact_lock(7431)")  # any fixed number: ours

    def lock_key(self, key: str, *, wait: bool = True) -> bool:
        """Inside a transaction: no other process holds `key` until it ends (SQLite's BEGIN
        IMMEDIATE already keeps out every other writer). Not `wait`: False at once, and
        nothing held, if another process holds it now."""
        if self.engine != POSTGRESQL or key in self._held:
            return True
        if wait:
            self.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (key,))
        else:
            (got,) = self.execute(
                "SELECT pg_try_advisory_xact_lock(hashtext(?))", (key,)
            ).fetchone()
            if not got:
                return False
        if self._depth:  # held to the end of the transaction: not asked for again
            self._held.add(key)
        return True

    def lock_keys(self, keys: Sequence[str], *, wait: bool = True) -> set[str]:
        """`lock_key` for each of `keys`, in one statement: the keys held now. `wait`: each
        in the order given (every process gives them in one order, so none waits for another
        in a circle), waiting for it: all are held after. Not `wait`: those no other process
        holds now."""
        if self.engine != POSTGRESQL:
            return set(keys)
        wanted = [key for key in dict.fromkeys(keys) if key not in self._held]
        got = set(keys) - set(wanted)
        if wanted and wait:
            # The locks are taken row by row, in the order of the array.
            self.execute(
                "SELECT pg_advisory_xact_lock(hashtext(key)) FROM "
                "unnest(?::text[]) WITH ORDINALITY AS t (key, n) ORDER BY n",
                (wanted,),
            ).fetchall()
            got.update(wanted)
        elif wanted:
            rows = self.execute(
                "SELECT key FROM unnest(?::text[]) AS key "
                "WHERE pg_try_advisory_xact_lock(hashtext(key))",
                (wanted,),
            ).fetchall()
            got.update(str(row[0]) for row in rows)
        if self._depth:  # held to the end of the transaction: not asked for again
            self._held.update(got)
        return got

    def shred_free_pages(self) -> None:
        """Deleted rows must not linger in the files: SQLite writes its log back and empties
        it (secure_delete has zeroed the pages). PostgreSQL has no such step: a deleted key
        stays in dead row versions until VACUUM reuses them and in its WAL until recycled;
        vacuuming the key tables now is what can be done (see docs/database.md)."""
        if self.engine == SQLITE:
            busy, _, _ = self.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                raise sqlite3.OperationalError(
                    "the write-ahead log could not be emptied (another process is reading): "
                    "deleted data may remain in it until the next deletion or restart"
                )
        elif not self._depth:
            self.execute("VACUUM vault_keys, kept_originals")


def _is_connection_error(exc: BaseException, connection: Any) -> bool:
    """psycopg's word that the server is gone or unreachable (not that a statement is wrong)."""
    import psycopg

    if not isinstance(exc, psycopg.Error):
        return False
    state = getattr(exc, "sqlstate", None) or ""
    # 08: connection exception; 57P0x: the server shutting down or starting; 53: out of
    # resources (disk full, too many connections).
    gone = state.startswith(("08", "57P0", "53"))
    return gone or bool(getattr(connection, "closed", False))


def upsert(table: str, columns: Sequence[str], key: Sequence[str], *, rows: int = 1) -> str:
    """`INSERT` a row (or `rows`, no two with the same `key`), or overwrite the one with the
    same `key` (SQLite's INSERT OR REPLACE, written so both engines read it; a replaced row
    keeps its place in rowid order)."""
    names = ", ".join(_quoted(c) for c in columns)
    marks = rows_of(rows, len(columns))
    rest = [c for c in columns if c not in key]
    sets = ", ".join(f"{_quoted(c)} = excluded.{_quoted(c)}" for c in rest)
    action = f"DO UPDATE SET {sets}" if rest else "DO NOTHING"
    return (
        f"INSERT INTO {table} ({names}) VALUES {marks} "
        f"ON CONFLICT ({', '.join(_quoted(c) for c in key)}) {action}"
    )


def rows_of(count: int, width: int) -> str:
    """The `VALUES` list of `count` rows of `width` placeholders each: `(?, ?), (?, ?)`."""
    row = "(" + ", ".join("?" * width) + ")"
    return ", ".join([row] * count)


def _quoted(column: str) -> str:
    return f'"{column}"' if column == "end" else column
