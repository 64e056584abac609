"""Replacing a file so that a power cut leaves the old one or the new one, never a torn one.

A fresh temporary file beside the target (created exclusively: a link planted at any name is
never followed), written, synced, given its mode, renamed over the target, and with
`sync_dir` the directory synced too, so the new name itself survives a power cut
(`replace_file` skips the syncs, for a file that need not outlive one). The one way linerec
writes a small file; the ring writes its recordings through `store.disk.Disk` instead, so that
its power-cut tests can cut there.

A process killed while writing (or a power cut) leaves its temporary file,
`.<name>.<8 random characters>`; `temp_target` tells such a name, and `remove_temps` removes
those left in a directory (the appliance's start, the collector's housekeeping). The writer
holds an exclusive flock on its temporary file until it is renamed, so a sweep in another
process (a one-off `uplink flush` beside the daemon) passes over one still being written.
"""

from __future__ import annotations

import fcntl
import os
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

# A temporary file's name: `.<name>.` and 8 of these characters (tempfile.mkstemp's choice,
# whose names earlier versions left behind). Not tempfile itself: it brings shutil (with bz2
# and lzma) into the recorder for this one exclusive create (issue 19).
_TEMP_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\Z", re.DOTALL)


@contextmanager
def atomic_file(
    path: Path, *, mode: int = 0o600, sync_dir: bool = False, sync: bool = True
) -> Iterator[BinaryIO]:
    """A file to write `path`'s new content into; it replaces `path` when the block ends
    without an exception (and is removed if one is raised). `sync=False`: whole, but not
    synced (see `replace_file`)."""
    fd, tmp = _locked_temp(path)
    try:
        with os.fdopen(fd, "wb") as out:  # open, so locked, until renamed
            yield out
            out.flush()
            os.fchmod(out.fileno(), mode)  # synced with the data
            if sync:
                os.fsync(out.fileno())
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        sync_directory(path.parent)


def _locked_temp(path: Path) -> tuple[int, Path]:
    """A new temporary file for `path`, flocked: a sweep that found it unlocked in the instant
    before the lock was taken has removed it, so then another is made."""
    while True:
        fd, name = _new_temp(path)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(name).st_ino == os.fstat(fd).st_ino:
                return fd, name
        except FileNotFoundError:
            pass
        os.close(fd)


def _new_temp(path: Path) -> tuple[int, Path]:
    """A file of a fresh name beside `path`, created exclusively (an existing name, or a
    link planted at it, is never opened), mode 0600, as tempfile.mkstemp makes it."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        suffix = "".join(_TEMP_CHARS[byte % len(_TEMP_CHARS)] for byte in os.urandom(8))
        name = path.parent / f".{path.name}.{suffix}"
        try:
            return os.open(name, flags, 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free name for a temporary file of {path.name}")


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, sync_dir: bool = False) -> None:
    """Replace `path` with `data` (see the module's docstring)."""
    with atomic_file(path, mode=mode, sync_dir=sync_dir) as out:
        out.write(data)


def replace_file(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace `path` with `data` whole, as `write_atomic` does, but without an fsync: for a
    file that need not outlive a power cut (a reader finds the old content or the new, never
    part of it, while the system runs), written where a stall on a slow card would hurt. A
    kill mid-write leaves the same temporary name, which `remove_temps` recognises."""
    with atomic_file(path, mode=mode, sync=False) as out:
        out.write(data)


def create_atomic(path: Path, data: bytes, *, mode: int = 0o600, sync_dir: bool = False) -> None:
    """Make `path` with `data` as `write_atomic` would, but never in place of a file already
    there (FileExistsError, nothing changed): a key made once is not replaced by another
    process making it at the same moment, and a cut leaves no file rather than a torn one."""
    fd, tmp = _locked_temp(path)
    try:
        with os.fdopen(fd, "wb") as out:  # open, so locked, until linked
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
            os.link(tmp, path)  # the new name, whole, or none if one is there
    finally:
        tmp.unlink(missing_ok=True)
    if sync_dir:
        sync_directory(path.parent)


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


def remove_temps(
    directory: Path, wanted: Callable[[str], bool] = lambda target: True
) -> list[Path]:
    """Remove the `atomic_file` temporaries in `directory` whose target name is `wanted`, left
    by a process killed while writing (or a power cut); returns those removed. Only exact
    temporary names go, never a symbolic link or a directory, nor one a live writer holds."""
    removed = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    for name in names:
        target = temp_target(name)
        if target is None or not wanted(target):
            continue
        path = directory / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:  # a link, gone meanwhile, or unreadable: not ours to judge
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # being written now
                continue
            if os.lstat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:
            continue
        finally:
            os.close(fd)
    return removed
