"""Release versions as numbers, for anti-rollback: 0.10.0 is newer than 0.9.3."""

from __future__ import annotations

import re

_VERSION = re.compile(r"(\d{1,9})(?:\.(\d{1,9})){0,3}")


def parse_version(text: str) -> tuple[int, ...] | None:
    """(major, minor, ...) of a dotted release version, or None if `text` is not one."""
    if _VERSION.fullmatch(text) is None:
        return None
    return tuple(int(part) for part in text.split("."))


def older(candidate: tuple[int, ...], running: tuple[int, ...]) -> bool:
    width = max(len(candidate), len(running))
    pad = (0,) * width
    return (candidate + pad)[:width] < (running + pad)[:width]
