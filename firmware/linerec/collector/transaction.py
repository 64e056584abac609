"""One write transaction on the collector's database, shared by everything inside it.

Several collector processes write one database (docs/scale.md): a read followed by a write
(the mark of events in order, the ranges of an upload, the head of a chain, a command counter)
is right only if no other process writes in between. `BEGIN IMMEDIATE` takes the write lock
before the read; a process that finds it taken waits (the connection's busy timeout). A
transaction begun inside another joins it, so the collector can make each message one
transaction, and the store's own steps still hold when they are called alone.

Files a transaction makes unneeded (the part file of an upload now stored) are removed only
after it commits (`after_commit`): a crash before the commit leaves the database as it was
and the files it names still there.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager

BUSY_TIMEOUT = 60.0  # seconds a process waits for another's write lock before it gives up
_after: dict[int, list[Callable[[], None]]] = {}  # id(connection) -> what waits for the commit


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """Everything in the block is written together, or (on an exception) not at all."""
    if db.in_transaction:
        yield
        return
    db.execute("BEGIN IMMEDIATE")
    pending = _after.setdefault(id(db), [])
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        pending.clear()
        raise
    finally:
        _after.pop(id(db), None)
    db.execute("COMMIT")
    for action in pending:
        action()


def after_commit(db: sqlite3.Connection, action: Callable[[], None]) -> None:
    """Run `action` once the transaction under way commits (at once if there is none)."""
    pending = _after.get(id(db)) if db.in_transaction else None
    if pending is None:
        action()
    else:
        pending.append(action)
