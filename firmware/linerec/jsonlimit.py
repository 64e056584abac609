"""JSON from outside, parsed only if it nests no deeper than our own formats ever do.

json's parser recurses once per level of nesting, on the calling thread's stack, until the
interpreter's recursion limit: a payload of 30,000 `[` uses up the whole budget of the
thread that parses it, and whatever else runs there at that moment (a garbage collection's
finalizers, weakref callbacks, logging) fails with RecursionError. So the nesting is
measured first, by a flat scan, and what goes deeper than MAX_DEPTH is refused, naming the
byte where it does.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Deeper than any message, record or file we define (an event's clear envelope and sealed
# fields, status, health, a recording's header and trailer nest 3 or 4 levels at most).
MAX_DEPTH = 32

# A string (to its closing quote, or to the end if it has none: each byte is looked at once),
# or an opening or closing bracket.
_TOKEN = re.compile(r'"(?:[^"\\]++|\\.)*+"?|[\[{]|[\]}]', re.DOTALL)


class TooDeep(ValueError):
    """JSON nested deeper than the limit; `offset` is the byte where it goes too deep."""

    def __init__(self, offset: int, limit: int) -> None:
        self.offset, self.limit = offset, limit
        super().__init__(f"nested deeper than {limit} levels at byte {offset}")


def loads(data: bytes | str, max_depth: int = MAX_DEPTH, **hooks: Any) -> Any:
    """json.loads (given `hooks`: parse_float and the like), after TooDeep if `data` nests
    deeper than `max_depth`. Errors as json.loads's otherwise: ValueError
    (UnicodeDecodeError, JSONDecodeError, a number of over 4300 digits)."""
    if isinstance(data, bytes | bytearray):
        encoding = json.detect_encoding(data)
        text = data.decode(encoding, "surrogatepass")
    else:
        encoding, text = "utf-8", data
    if text.count("[") + text.count("{") > max_depth:  # else it cannot be too deep
        depth = 0
        for token in _TOKEN.finditer(text):
            kind = token.group()
            if kind in ("[", "{"):
                depth += 1
                if depth > max_depth:
                    at = token.start()
                    raise TooDeep(len(text[:at].encode(encoding, "surrogatepass")), max_depth)
            elif kind in ("]", "}"):
                depth -= 1
    return json.loads(text, **hooks)
