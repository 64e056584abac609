"""Page cursors for the console's search: a page is found from the row the last one ended
at, not by skipping every row before it (OFFSET reads and throws away each row it skips, so
the 201st page of a broad search read 10,000 rows).

A cursor is the sort's name and one row's key under that sort: its sort columns, then its id
and device (one recording is (device, id): the key orders every row, ties and all). It is
base64url of a JSON list, so a link carries it as it is; it is untrusted text like any search
field, checked whole when read.

"After a row" in an order whose columns may hold NULL (lowest, as SQLite has them: first when
ascending, last when descending) is not one comparison both engines can walk an index with,
so it is written as disjoint conditions, each a run of equal columns and one column beyond:
`a > ?`, `a = ? AND b > ?`, ...; a descending column beyond a value is `c < ?` and, apart,
`c IS NULL`. Each condition is its own query with its own ORDER BY and LIMIT (one index walk
from the cursor), and the page is the first rows of them together.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from linerec import jsonlimit

Column = tuple[str, bool]  # (SQL column, descending)
Condition = tuple[str, list[Any]]  # SQL with ? marks, and its values

MAX_CURSOR = 2048  # characters: a key is a few short values


class CursorError(ValueError):
    pass


def encode(sort: str, values: tuple[Any, ...]) -> str:
    text = json.dumps([sort, list(values)], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(
    text: str, kinds: dict[str, tuple[tuple[type, ...], ...]]
) -> tuple[str, tuple[Any, ...]]:
    """(sort, key) of a cursor; `kinds` gives each sort's key: the types each of its values
    may have, in turn (type(None) where the column may be NULL). CursorError says what is
    wrong."""
    if len(text) > MAX_CURSOR:
        raise CursorError(f"longer than {MAX_CURSOR} characters")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        sort, values = jsonlimit.loads(
            raw.decode(), parse_constant=_no_constant, parse_float=_finite, parse_int=_bigint
        )
    except (binascii.Error, ValueError, TypeError) as exc:  # TooDeep and UnicodeDecodeError too
        raise CursorError("not one of this search's next or previous links") from exc
    if not isinstance(sort, str) or sort not in kinds or not isinstance(values, list):
        raise CursorError("not one of this search's next or previous links")
    types = kinds[sort]
    if len(values) != len(types) or not all(
        isinstance(value, kind) and not isinstance(value, bool) and _storable(value)
        for value, kind in zip(values, types, strict=True)
    ):
        raise CursorError(f"not a key of sort {sort!r}")
    return sort, tuple(float(v) if isinstance(v, int) and float in kind else v
                       for v, kind in zip(values, types, strict=True))  # fmt: skip


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a value of a key")  # NaN, Infinity: no row has them


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999
        raise ValueError(f"{text} is not a value of a key")
    return value


def _bigint(text: str) -> int:
    value = int(text)
    if not -(2**63) <= value < 2**63:  # what a database column holds
        raise ValueError(f"{text} is not a value of a key")
    return value


def _storable(value: object) -> bool:
    """Text a database column can hold (no NUL, no lone surrogate), or anything else."""
    if not isinstance(value, str):
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def reverse(columns: tuple[Column, ...]) -> tuple[Column, ...]:
    """The same order backwards (NULLs lowest still: ASC NULLS FIRST <-> DESC NULLS LAST)."""
    return tuple((column, not descending) for column, descending in columns)


def after(columns: tuple[Column, ...], key: tuple[Any, ...]) -> list[Condition]:
    """Disjoint conditions that together hold for exactly the rows after `key` in the order
    `columns` (NULLs lowest)."""
    found: list[Condition] = []
    same: list[str] = []
    args: list[Any] = []
    for (column, descending), value in zip(columns, key, strict=True):
        beyond: list[Condition]
        if value is None:
            beyond = [] if descending else [(f"{column} IS NOT NULL", [])]
        elif descending:
            beyond = [(f"{column} < ?", [value]), (f"{column} IS NULL", [])]
        else:
            beyond = [(f"{column} > ?", [value])]
        for clause, values in beyond:
            found.append((" AND ".join([*same, clause]), [*args, *values]))
        same.append(f"{column} IS NULL" if value is None else f"{column} = ?")
        args.extend([] if value is None else [value])
    return found
