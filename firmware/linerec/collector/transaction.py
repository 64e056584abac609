"""One write transaction on the collector's database, shared by everything inside it.

Several collector processes write one database (docs/scale.md): a read followed by a write
(the mark of events in order, the ranges of an upload, the head of a chain, a command counter)
is right only if no other process writes in between. `BEGIN IMMEDIATE` takes the write lock
before the read; a process that finds it taken waits (the connection's busy timeout). A
transaction begun inside another joins it, so the collector can make each message one
transaction, and the store's own steps still hold when they are called alone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

BUSY_TIMEOUT = 60.0  # seconds a process waits for another's write lock before it gives up


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """Everything in the block is written together, or (on an exception) not at all."""
    if db.in_transaction:
        yield
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
