"""Replacing a file so that a power cut leaves the old one or the new one, never a torn one.

A fresh temporary file beside the target (created exclusively: a link planted at any name is
never followed), written, synced, given its mode, renamed over the target, and with
`sync_dir` the directory synced too, so the new name itself survives a power cut. The one way
linerec writes a small file durably; the ring writes its recordings through `store.disk.Disk`
instead, so that its power-cut tests can cut there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_file(path: Path, *, mode: int = 0o600, sync_dir: bool = False) -> Iterator[BinaryIO]:
    """A file to write `path`'s new content into; it replaces `path` when the block ends
    without an exception (and is removed if one is raised)."""
    fd, tmp = _create_beside(path)
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


def _create_beside(path: Path) -> tuple[int, Path]:
    # As tempfile.mkstemp does it (O_EXCL, O_NOFOLLOW, 0600, a random name, another on a
    # clash), without the module: tempfile brings shutil, random and the bz2 and lzma
    # libraries into the recorder, 0.9 MB, for this one call.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}")
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free name for a temporary file beside {path.name}")


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, sync_dir: bool = False) -> None:
    """Replace `path` with `data` (see the module's docstring)."""
    with atomic_file(path, mode=mode, sync_dir=sync_dir) as out:
        out.write(data)


def sync_directory(path: Path) -> None:
    """fsync a directory: what was renamed or created in it is then on the card."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
