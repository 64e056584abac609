"""linerec.jsonlimit: what json.loads gives, unless the nesting goes deeper than the limit;
then TooDeep, naming the byte where it does. Brackets inside strings are text, not nesting."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linerec.jsonlimit import MAX_DEPTH, TooDeep, loads

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\u00e9\n', max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=30,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=200)
@given(values, st.integers(min_value=0, max_value=6), st.sampled_from(["utf-8", "utf-16-le"]))
def test_as_json_loads_within_the_limit_and_too_deep_beyond_it(
    value: Any, limit: int, encoding: str
) -> None:
    data = json.dumps(value, ensure_ascii=False).encode(encoding)
    if depth(value) <= limit:
        assert loads(data, limit) == json.loads(data)
    else:
        with pytest.raises(TooDeep) as refused:
            loads(data, limit)
        # the byte named is the bracket that opens level limit + 1
        assert data[refused.value.offset :].decode(encoding)[:1] in ("[", "{")
        assert loads(data, depth(value)) == json.loads(data)  # the limit is exact


def test_brackets_in_strings_are_not_nesting() -> None:
    text = json.dumps({"name": "[" * 100 + '\\"{' * 50, "n": [[1]]})
    assert loads(text) == json.loads(text)


def test_the_offset_is_in_bytes_of_the_payload() -> None:
    payload = '{"é": "ü", "x": '.encode() + b"[" * 40 + b"]" * 40 + b"}"
    with pytest.raises(TooDeep, match=f"deeper than {MAX_DEPTH} levels at byte") as refused:
        loads(payload)
    assert refused.value.offset == payload.index(b"[") + MAX_DEPTH - 1
    assert isinstance(refused.value, ValueError)  # caught where bad JSON is


@pytest.mark.parametrize(
    "payload",
    [
        b'"' + b'\\"' * 30_000,  # a string that never ends: each quote looked at once
        b'["' + b"[" * 30_000,
        b"[" * 30_000 + b'"',
        b"\\" * 60_000,
    ],
)
def test_malformed_is_not_json_and_not_too_deep_inside_a_string(payload: bytes) -> None:
    with pytest.raises(ValueError) as refused:
        loads(payload)
    assert isinstance(refused.value, TooDeep) == payload.startswith(b"[" * 40)
