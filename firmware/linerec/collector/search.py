"""Finding recordings: the filters of the console, its JSON API and `collector list`.

`parse_query` turns untrusted text (a URL's query, command-line flags) into a RecordingQuery,
refusing anything that is not the shape a field takes, with the field named; `run_search` is
the one SQL query behind them (values always bound, never pasted). Label, direction and
consent live in each recording's encrypted metadata, so the catalog keeps them once the
collector's key has read them (`catalog`); label and direction are copied onto the recording's
row in the same transaction, as is whether it was reviewed (collector/review.py), so that each
filter and the console's order are one index (schema version 5).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from linerec.collector.database import upsert

if TYPE_CHECKING:
    from linerec.collector.database import Database

TOP = "\U0010ffff"  # above any character: `p <= x < p + TOP` is "x begins with p", indexed

# Each sort: (column, descending) in turn; Database.order places NULLs as SQLite does.
SORTS = {
    "started_at": (("r.started_at", False),),
    "-started_at": (("r.started_at", True),),
    "duration": (("r.duration", False),),
    "-duration": (("r.duration", True),),
    "device": (("r.device", False), ("r.line", False), ("r.started_at", True)),
    "seq": (("r.device", False), ("r.seq", False)),  # as each device numbered them (`list`)
}
DIRECTIONS = ("inbound", "outbound", "unknown")
MAX_LIMIT = 500
COUNT_LIMIT = 10_000  # a search's total says "at least this many" beyond it
ALL = 2**62  # the LIMIT of a query with a negative limit (`collector list`: every row)

CALLER = "r.caller_number >= ? AND r.caller_number < ?"  # a prefix, as two bounds
CALLED = "r.called_number >= ? AND r.called_number < ?"

WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
NUMBER = re.compile(r"[0-9*#+]{1,32}")


class QueryError(ValueError):
    """A search field that is not of its shape: names the field and the value."""

    def __init__(self, field_name: str, value: object, expected: str) -> None:
        self.field = field_name
        super().__init__(f"search field {field_name!r}: {expected} (got {value!r})")


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingQuery:
    device: str | None = None
    line: str | None = None
    label: str | None = None
    direction: str | None = None
    since: str | None = None  # ISO 8601, UTC
    until: str | None = None
    number: str | None = None  # prefix of the caller's or the called number
    caller: str | None = None  # prefixes
    called: str | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    review: str | None = None  # "reviewed" | "unreviewed"
    held: bool | None = None
    id: str | None = None
    sort: str = "-started_at"
    limit: int = 50
    offset: int = 0
    # What the asker may see: None for everything, else (kind, value) grants ("line",
    # "DEVICE/LINE" or "DEVICE/*"; "label", LABEL); an empty tuple sees nothing.
    scope: tuple[tuple[str, str], ...] | None = field(default=None)


FIELDS = (
    "device", "line", "label", "direction", "since", "until", "number", "caller", "called",
    "min_duration", "max_duration", "review", "held", "sort", "limit", "offset", "page",
)  # fmt: skip


def parse_query(params: Mapping[str, str | None], *, scope: Any = None) -> RecordingQuery:
    """A query from untrusted text; QueryError names the first field that is wrong."""
    values: dict[str, Any] = {}
    for name, raw in params.items():
        if raw is None or raw == "":
            continue
        if name not in FIELDS:
            raise QueryError(name, raw, f"not a search field (fields: {', '.join(FIELDS)})")
        text = str(raw)
        if name in ("device", "line", "label"):
            values[name] = _match(name, text, WORD, "letters, digits and . _ : - (1-64)")
        elif name in ("number", "caller", "called"):
            values[name] = _match(name, text, NUMBER, "digits, *, # or + (1-32)")
        elif name == "direction":
            if text not in DIRECTIONS:
                raise QueryError(name, text, f"one of {', '.join(DIRECTIONS)}")
            values[name] = text
        elif name in ("since", "until"):
            values[name] = _time(name, text)
        elif name in ("min_duration", "max_duration"):
            values[name] = _number(name, text, 0, 10**7)
        elif name == "review":
            if text not in ("reviewed", "unreviewed"):
                raise QueryError(name, text, "reviewed or unreviewed")
            values[name] = text
        elif name == "held":
            if text not in ("yes", "no", "true", "false"):
                raise QueryError(name, text, "yes or no")
            values[name] = text in ("yes", "true")
        elif name == "sort":
            if text not in SORTS:
                raise QueryError(name, text, f"one of {', '.join(SORTS)}")
            values[name] = text
        elif name == "limit":
            values[name] = int(_number(name, text, 1, MAX_LIMIT, whole=True))
        elif name == "offset":
            values[name] = int(_number(name, text, 0, 10**9, whole=True))
        elif name == "page":
            values["page"] = int(_number(name, text, 1, 10**7, whole=True))
    page = values.pop("page", None)
    query = RecordingQuery(**values, scope=scope)
    if page is not None:
        query = RecordingQuery(**{**_fields(query), "offset": (page - 1) * query.limit})
    return query


def _fields(query: RecordingQuery) -> dict[str, Any]:
    return {name: getattr(query, name) for name in RecordingQuery.__dataclass_fields__}


def _match(name: str, text: str, pattern: re.Pattern[str], expected: str) -> str:
    if not pattern.fullmatch(text):
        raise QueryError(name, text, expected)
    return text


def _time(name: str, text: str) -> str:
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise QueryError(name, text, "a date or time, ISO 8601 (2026-11-30T09:00)") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # the index keeps UTC; so does a time without a zone
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


def _number(name: str, text: str, low: float, high: float, *, whole: bool = False) -> float:
    try:
        value = int(text) if whole else float(text)
    except ValueError as exc:
        raise QueryError(name, text, "a whole number" if whole else "a number") from exc
    if not low <= value <= high or value != value:
        raise QueryError(name, text, f"between {low:g} and {high:g}")
    return value


def run_search(db: Database, query: RecordingQuery) -> tuple[list[dict[str, Any]], int]:
    """One page of matching recordings (newest first by default) and the count of all."""
    where: list[str] = []
    args: list[Any] = []

    def add(clause: str, *values: Any) -> None:
        where.append(clause)
        args.extend(values)

    if query.id:
        add("r.id = ?", query.id)
    if query.device:
        add("r.device = ?", query.device)
    if query.line:
        add("r.line = ?", query.line)
    if query.label:
        add("r.label = ?", query.label)
    if query.direction:
        add("r.direction = ?", query.direction)
    if query.since:
        add("r.started_at >= ?", query.since)
    if query.until:
        add("r.started_at < ?", query.until)
    if query.caller:
        add(CALLER, query.caller, query.caller + TOP)
    if query.called:
        add(CALLED, query.called, query.called + TOP)
    if query.min_duration is not None:
        add("r.duration >= ?", query.min_duration)
    if query.max_duration is not None:
        add("r.duration <= ?", query.max_duration)
    if query.review == "reviewed":
        add("r.reviewed = 1")
    elif query.review == "unreviewed":
        add("r.reviewed = 0")
    if query.held is not None:
        if query.held:  # few are held: find them from the holds, not by walking every row
            add("(r.device, r.id) IN (SELECT device, id FROM holds)")
        else:
            add("h.id IS NULL")
    if query.scope is not None:
        allowed: list[str] = []
        for kind, value in query.scope:
            if kind == "label":
                allowed.append("r.label = ?")
                args.append(value)
            elif kind == "line":
                device, _, line = value.partition("/")
                if line == "*":
                    allowed.append("r.device = ?")
                    args.append(device)
                else:
                    allowed.append("(r.device = ? AND r.line = ?)")
                    args.extend((device, line))
        where.append(f"({' OR '.join(allowed)})" if allowed else "1 = 0")
    # Only "not held" needs the holds joined to find the rows: without the join, a count is
    # read from an index alone (PostgreSQL keeps the join's columns needed even when it
    # removes the join).
    holds = "LEFT JOIN holds h ON h.device = r.device AND h.id = r.id "
    source = f"FROM recordings r {holds if query.held is False else ''}"
    if query.number:
        bounds = (query.number, query.number + TOP)
        total = _count_either(db, source, where, args, bounds)
        where = [*where, f"(({CALLER}) OR ({CALLED}))"]
        args = [*args, *bounds, *bounds]
    else:
        total = _count(db, source, where, args)
    base = f"{source}{_where(where)}"
    order = f"ORDER BY {', '.join(db.order(c, d) for c, d in SORTS[query.sort])}, r.id"
    # The page's rows first, then what is shown of those rows only (not of every match).
    cursor = db.execute(
        "SELECT r.id, r.device, r.line, r.started_at, r.duration, r.state, r.caller_number, "
        "r.called_number, r.path, r.label, r.direction, c.consent, c.clock_synchronized, "
        "h.id IS NOT NULL AS held, r.reviewed, "
        "EXISTS (SELECT 1 FROM redactions x WHERE x.device = r.device AND x.id = r.id) "
        "AS redacted "
        f"FROM (SELECT r.rowid AS k {base} {order} LIMIT ? OFFSET ?) AS page "
        "JOIN recordings r ON r.rowid = page.k "
        "LEFT JOIN console_catalog c ON c.device = r.device AND c.id = r.id "
        f"{holds}{order}",
        [*args, query.limit if query.limit >= 0 else ALL, query.offset],
    )
    names = [c[0] for c in cursor.description]
    rows = []
    for row in cursor:
        record = dict(zip(names, row, strict=True))
        record["held"] = bool(record["held"])
        record["reviewed"] = bool(record["reviewed"])
        record["redacted"] = bool(record["redacted"])
        if record["clock_synchronized"] is not None:
            record["clock_synchronized"] = bool(record["clock_synchronized"])
        rows.append(record)
    return rows, total


def _where(where: list[str]) -> str:
    return f"WHERE {' AND '.join(where)}" if where else ""


def _capped(source: str, where: list[str]) -> str:
    """SQL counting the rows that match, stopping at COUNT_LIMIT: a broad search need not
    visit every row to say "many"."""
    return f"SELECT count(*) FROM (SELECT 1 AS one {source}{_where(where)} LIMIT {COUNT_LIMIT}) s"


def _count(db: Database, source: str, where: list[str], args: list[Any]) -> int:
    return int(db.execute(_capped(source, where), args).fetchone()[0])


def _count_either(
    db: Database, source: str, where: list[str], args: list[Any], bounds: tuple[str, str]
) -> int:
    """The capped count of rows whose caller or called number is in `bounds`, from one range
    at a time. Counting the OR at once reads both ranges whole (PostgreSQL ORs two bitmaps, or
    walks the table) before its LIMIT applies; each range alone stops at the cap. Either side
    reaching the cap is the answer; else both counts are exact and so is caller + called -
    both, whose rows are counted only then (none when a side has none: the planner of SQLite
    cannot tell which range is the narrower). One statement: one snapshot, as one count had."""
    # LIMIT 1 keeps PostgreSQL from pasting each side's count into the CASE (counting twice).
    sql = (
        f"WITH sides AS (SELECT ({_capped(source, [*where, CALLER])}) AS callers, "
        f"({_capped(source, [*where, CALLED])}) AS called LIMIT 1) "
        f"SELECT callers, called, CASE WHEN callers >= {COUNT_LIMIT} OR called >= {COUNT_LIMIT} "
        "THEN NULL WHEN callers = 0 OR called = 0 THEN 0 "
        f"ELSE ({_capped(source, [*where, CALLER, CALLED])}) END FROM sides"
    )
    callers, called, both = db.execute(
        sql, [*args, *bounds, *args, *bounds, *args, *bounds, *bounds]
    ).fetchone()
    if both is None:
        return COUNT_LIMIT
    return min(int(callers) + int(called) - int(both), COUNT_LIMIT)


def uncatalogued(db: Database, limit: int) -> list[dict[str, Any]]:
    """Recordings whose label and direction the catalog does not hold yet."""
    cursor = db.execute(
        "SELECT r.id, r.device, r.path FROM recordings r LEFT JOIN console_catalog c "
        "ON c.device = r.device AND c.id = r.id WHERE c.id IS NULL LIMIT ?",
        (limit,),
    )
    return [{"id": row[0], "device": row[1], "path": row[2]} for row in cursor]


def catalog(db: Database, device: str, recording_id: str, metadata: dict[str, Any]) -> None:
    """Keep what a recording's metadata says for search (label, direction, consent, clock):
    in the catalog, and label and direction on the recording's row too, in one transaction."""
    synced = metadata.get("clock_synchronized")
    label = metadata.get("label") or None
    direction = metadata.get("direction")
    with db.transaction():
        # The recording's row first: deleted since its metadata was read, it gets no entry.
        found = db.execute(
            "UPDATE recordings SET label = ?, direction = ? WHERE device = ? AND id = ?",
            (label, direction, device, recording_id),
        ).rowcount
        if not found:
            return
        db.execute(
            upsert(
                "console_catalog",
                ("device", "id", "label", "direction", "consent", "clock_synchronized"),
                ("device", "id"),
            ),
            (
                device,
                recording_id,
                label,
                direction,
                metadata.get("consent"),
                None if synced is None else int(bool(synced)),
            ),
        )
