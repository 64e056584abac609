"""Finding recordings: the filters of the console, its JSON API and `collector list`.

`parse_query` turns untrusted text (a URL's query, command-line flags) into a RecordingQuery,
refusing anything that is not the shape a field takes, with the field named; `search_page` is
the one SQL query behind them (values always bound, never pasted). A page is either numbered
(`page`, `offset`: the rows before it are skipped one by one) or found from a cursor (`after`,
`before`: the key of the row the page next to it ended at, collector/keyset.py), which is
how the console's next and previous links page: one index walk from there however deep.

Label, direction and consent live in each recording's encrypted metadata, so the catalog keeps
them once the collector's key has read them (`catalog`); label and direction are copied onto
the recording's row in the same transaction, as is whether it was reviewed
(collector/review.py), so that each filter and the console's order are one index (schema
version 5).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from linerec.collector import keyset
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
# Each sort's whole key, which orders every row: its columns, then the recording's id and
# device (two devices may use one id).
KEYS = {
    name: (
        *columns,
        ("r.id", False),
        *([] if columns[0][0] == "r.device" else [("r.device", False)]),
    )
    for name, columns in SORTS.items()
}
_NULL = type(None)
_KINDS: dict[str, tuple[type, ...]] = {
    "r.started_at": (str, _NULL), "r.duration": (float, int, _NULL), "r.line": (str, _NULL),
    "r.seq": (int, _NULL), "r.device": (str,), "r.id": (str,),
}  # fmt: skip
CURSOR_KINDS = {name: tuple(_KINDS[column] for column, _ in key) for name, key in KEYS.items()}
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
    # A page cursor's key (the sort's KEYS): the page begins after that row, or ends before it
    after: tuple[Any, ...] | None = None
    before: tuple[Any, ...] | None = None
    # What the asker may see: None for everything, else (kind, value) grants ("line",
    # "DEVICE/LINE" or "DEVICE/*"; "label", LABEL); an empty tuple sees nothing.
    scope: tuple[tuple[str, str], ...] | None = field(default=None)


FIELDS = (
    "device", "line", "label", "direction", "since", "until", "number", "caller", "called",
    "min_duration", "max_duration", "review", "held", "sort", "limit", "offset", "page",
    "after", "before",
)  # fmt: skip
PAGE_FIELDS = ("page", "after", "before")  # where a page is, not which recordings


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    rows: list[dict[str, Any]]
    total: int  # every match, counted up to COUNT_LIMIT
    next: str | None  # the cursor (`after`) of the page after this one, if there are rows
    previous: str | None  # the cursor (`before`) of the page before it; None on the first


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
        elif name in ("after", "before"):
            values[name] = text  # read below, once the sort is known
    page = values.pop("page", None)
    cursors: dict[str, str] = {n: values.pop(n) for n in ("after", "before") if n in values}
    query = RecordingQuery(**values, scope=scope)
    if cursors:  # beside a cursor, a page number is only the one shown
        return _with_cursor(query, cursors)
    if page is not None:
        query = RecordingQuery(**{**_fields(query), "offset": (page - 1) * query.limit})
    return query


def _with_cursor(query: RecordingQuery, cursors: dict[str, str]) -> RecordingQuery:
    if len(cursors) > 1:
        raise QueryError("before", cursors["before"], "not with after")
    if query.offset:
        raise QueryError("offset", query.offset, "not with a page cursor (after, before)")
    ((name, text),) = cursors.items()
    expected = "a page cursor (the next or previous link of this search)"
    try:
        sort, key = keyset.decode(text, CURSOR_KINDS)
    except keyset.CursorError as exc:
        raise QueryError(name, text, f"{expected}: {exc}") from exc
    if sort != query.sort:
        raise QueryError(name, text, f"{expected} of sort {query.sort!r}, not sort {sort!r}")
    return replace(query, after=key) if name == "after" else replace(query, before=key)


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
    page = search_page(db, query)
    return page.rows, page.total


def search_page(db: Database, query: RecordingQuery) -> Page:
    """One page of matching recordings, the count of all, and the cursors of the pages
    beside it. A page before a cursor with fewer rows than a page is the first page, whole."""
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
    columns = KEYS[query.sort]
    if query.limit < 0:  # every row (`collector list`): no pages
        rows, _ = _rows(db, source, where, args, columns, None, ALL, query.offset, False)
        for row in rows:
            del row["key"]
        return Page(rows=rows, total=total, next=None, previous=None)
    backwards = query.before is not None
    walk = keyset.reverse(columns) if backwards else columns
    key = query.before if backwards else query.after
    branches = None if key is None else keyset.after(walk, key)
    rows, more = _rows(
        db, source, where, args, walk, branches, query.limit, query.offset, backwards
    )
    if backwards and len(rows) < query.limit:
        return search_page(db, replace(query, before=None))  # at the start: the first page
    keys = [row.pop("key") for row in rows]
    first = keyset.encode(query.sort, keys[0]) if keys else None
    last = keyset.encode(query.sort, keys[-1]) if keys else None
    if backwards:
        return Page(rows=rows, total=total, next=last, previous=first if more else None)
    began = query.after is not None or query.offset > 0
    return Page(
        rows=rows, total=total, next=last if more else None, previous=first if began else None
    )


def _rows(
    db: Database,
    source: str,
    where: list[str],
    args: list[Any],
    walk: tuple[keyset.Column, ...],
    branches: list[keyset.Condition] | None,
    limit: int,
    offset: int,
    backwards: bool,
) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit` rows in the order `walk` gives them from the start (skipping `offset`)
    or from a cursor (`branches`, keyset.after), returned in the search's own order (walked
    backwards for a page before a cursor), each with its key; and whether there are more."""
    keys = ", ".join(f"{column} AS s{n}" for n, (column, _) in enumerate(walk))
    order = ", ".join(db.order(column, descending) for column, descending in walk)
    pick = f"SELECT r.rowid AS k, {keys} {source}"
    take = limit + 1 if limit < ALL else ALL  # one more says whether there are more
    if branches is None:
        chosen = f"{pick}{_where(where)} ORDER BY {order} LIMIT ? OFFSET ?"
        chosen_args = [*args, take, offset]
    elif not branches:
        return [], False  # nothing can come after the cursor
    else:
        # Each branch walks an index from the cursor and stops at the page's end.
        parts, chosen_args = [], []
        for n, (clause, values) in enumerate(branches):
            parts.append(
                f"SELECT * FROM ({pick}{_where([*where, clause])} ORDER BY {order} LIMIT ?) b{n}"
            )
            chosen_args += [*args, *values, take]
        walked = ", ".join(db.order(f"u.s{n}", d) for n, (_, d) in enumerate(walk))
        chosen = f"SELECT * FROM ({' UNION ALL '.join(parts)}) u ORDER BY {walked} LIMIT ?"
        chosen_args.append(take)
    forwards = ", ".join(db.order(f"page.s{n}", d != backwards) for n, (_, d) in enumerate(walk))
    holds = "LEFT JOIN holds h ON h.device = r.device AND h.id = r.id "
    # The page's rows first, then what is shown of those rows only (not of every match).
    cursor = db.execute(
        "SELECT r.id, r.device, r.line, r.started_at, r.duration, r.state, r.caller_number, "
        "r.called_number, r.path, r.label, r.direction, c.consent, c.clock_synchronized, "
        "h.id IS NOT NULL AS held, r.reviewed, "
        "EXISTS (SELECT 1 FROM redactions x WHERE x.device = r.device AND x.id = r.id) "
        f"AS redacted, {', '.join(f'page.s{n}' for n in range(len(walk)))} "
        f"FROM ({chosen}) AS page "
        "JOIN recordings r ON r.rowid = page.k "
        "LEFT JOIN console_catalog c ON c.device = r.device AND c.id = r.id "
        f"{holds}ORDER BY {forwards}",
        chosen_args,
    )
    names = [c[0] for c in cursor.description]
    rows = []
    for row in cursor:
        record = dict(zip(names, row, strict=True))
        record["key"] = tuple(record.pop(f"s{n}") for n in range(len(walk)))
        record["held"] = bool(record["held"])
        record["reviewed"] = bool(record["reviewed"])
        record["redacted"] = bool(record["redacted"])
        if record["clock_synchronized"] is not None:
            record["clock_synchronized"] = bool(record["clock_synchronized"])
        rows.append(record)
    if len(rows) <= limit:
        return rows, False
    return (rows[1:] if backwards else rows[:-1]), True  # the one beyond the page


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
