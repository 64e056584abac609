"""The collector's two hash chains: the audit log (every access) and the deletion log.

Each audit entry commits to the one before: its `hash` is the SHA-256 of its own fields and
the previous entry's hash (`prev`), so an entry altered, removed or slipped in between shows
at the first place the chain no longer follows on. The deletion log (written by the store)
is chained the same way; `verify` checks both.

"Who" on the command line is the account of the real uid: `$USER` and `$LOGNAME` are whatever
the caller set. In the console it is the signed-in user.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from linerec.collector.database import Database

# Columns a chained entry commits to, in the order they are stored.
AUDIT_FIELDS = ("at", "who", "action", "recording", "reason")
DELETION_FIELDS = ("id", "device", "at", "reason")


def cli_user() -> str:
    """The account name of the real uid (not $USER or $LOGNAME, which a caller sets)."""
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def entry_hash(entry: dict[str, Any]) -> str:
    """The hash an entry (its fields plus `prev`) is chained by."""
    return hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()


class AuditLog:
    """Appends to and reads the chained audit table (shared with the store's `audit`)."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    def record(
        self, *, who: str, action: str, recording: str | None = None, reason: str = ""
    ) -> dict[str, Any]:
        """Append one entry, chained to the last (read and appended as one step; inside the
        caller's transaction if there is one); returns it with its hash."""
        with self.db.transaction(lock="audit"):
            last = self.db.execute("SELECT hash FROM audit ORDER BY rowid DESC LIMIT 1").fetchone()
            entry = {
                "at": self.clock(),
                "who": who,
                "action": action,
                "recording": recording,
                "reason": reason,
                "prev": str(last[0]) if last else "",
            }
            digest = entry_hash(entry)
            self.db.execute(
                "INSERT INTO audit (at, who, action, recording, reason, prev, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*(entry[f] for f in AUDIT_FIELDS), entry["prev"], digest),
            )
        return {**entry, "hash": digest}

    def entries(
        self, *, limit: int | None = None, recording: str | None = None
    ) -> list[dict[str, Any]]:
        """Entries oldest first (with `limit`, the newest `limit` of them)."""
        where = "WHERE recording = ?" if recording else ""
        args: list[object] = [recording] if recording else []
        sql = f"SELECT rowid, {', '.join(AUDIT_FIELDS)}, prev, hash FROM audit {where}"
        if limit is not None:
            sql = f"SELECT * FROM ({sql} ORDER BY rowid DESC LIMIT ?) AS newest ORDER BY rowid"
            args.append(limit)
        else:
            sql += " ORDER BY rowid"
        cursor = self.db.execute(sql, args)
        names = ["entry", *AUDIT_FIELDS, "prev", "hash"]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def verify(self) -> list[str]:
        """What is wrong with either chain, first break of each; empty if both hold."""
        problems = []
        audit = self.db.execute(
            f"SELECT rowid, {', '.join(AUDIT_FIELDS)}, prev, hash FROM audit ORDER BY rowid"
        ).fetchall()
        problem = check_chain("audit log", AUDIT_FIELDS, audit)
        if problem:
            problems.append(problem)
        deletions = self.db.execute(
            f"SELECT rowid, {', '.join(DELETION_FIELDS)}, prev, hash FROM deletions ORDER BY rowid"
        ).fetchall()
        problem = check_chain("deletion log", DELETION_FIELDS, deletions)
        if problem:
            problems.append(problem)
        return problems


def check_chain(name: str, fields: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    """'' if every row follows on from the one before and hashes to its `hash`; else the
    first row that does not, named by its entry number (rowid)."""
    prev = ""
    for rowid, *values in rows:
        *data, row_prev, row_hash = values
        entry = {**dict(zip(fields, data, strict=True)), "prev": row_prev}
        if row_prev != prev:
            return (
                f"{name}: entry {rowid} does not follow on from the entry before it "
                "(an entry was removed, inserted or altered there)"
            )
        if entry_hash(entry) != row_hash:
            return f"{name}: entry {rowid} was altered (its contents no longer match its hash)"
        prev = row_hash
    return ""
