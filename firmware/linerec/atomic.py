"""Replacing a file so that a power cut leaves the old one or the new one, never a torn one.

A fresh temporary file beside the target (created exclusively: a link planted at any name is
never followed), written, synced, given its mode, renamed over the target, and with
`sync_dir` the directory synced too, so the new name itself survives a power cut. The one way
linerec writes a small file durably; the ring writes its recordings through `store.disk.Disk`
instead, so that its power-cut tests can cut there.

A process killed while writing leaves its temporary file, `.<name>.<8 random characters>`;
`temp_target` tells such a name, for the sweeps that remove them (the collector's
housekeeping).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

# What tempfile.mkstemp puts after the prefix: 8 of these characters (CPython's choice).
_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\Z", re.DOTALL)


@contextmanager
def atomic_file(path: Path, *, mode: int = 0o600, sync_dir: bool = False) -> Iterator[BinaryIO]:
    """A file to write `path`'s new content into; it replaces `path` when the block ends
    without an exception (and is removed if one is raised)."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # O_EXCL, 0600
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        sync_directory(path.parent)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, sync_dir: bool = False) -> None:
    """Replace `path` with `data` (see the module's docstring)."""
    with atomic_file(path, mode=mode, sync_dir=sync_dir) as out:
        out.write(data)


def temp_target(name: str) -> str | None:
    """The name of the file whose replacement `name` was, if it is exactly the name of an
    `atomic_file` temporary (left behind by a process killed while writing), else None."""
    found = _TEMP_NAME.match(name)
    return found["target"] if found else None


def sync_directory(path: Path) -> None:
    """fsync a directory: what was renamed or created in it is then on the card."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
