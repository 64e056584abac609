"""Reading a file the outside world names, at a bounded cost.

A path in a configuration or on the command line may name a device (`/dev/zero` never ends),
a FIFO (opening it waits for a writer), a directory, a sparse file of terabytes, or be no
path at all (a NUL byte, `~nosuchuser`, a name too long). `read_file` reads only regular files
up to a size limit and turns every one of these into `UnreadableFile`, whose message says why
in a few words; the caller adds the file and the key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB


class UnreadableFile(ValueError):
    """A file cannot be read as asked; the message is the reason (the caller names the file)."""


def expand(value: str) -> Path:
    """A path as written in a file or on the command line: `~` expanded, a NUL refused."""
    if "\0" in value:
        raise UnreadableFile("not a path (it holds a NUL character)")
    try:
        return Path(value).expanduser()
    except RuntimeError as exc:  # ~nosuchuser
        raise UnreadableFile(f"cannot expand {value.split('/')[0]!r}: no such user") from exc


def read_file(path: Path, *, limit: int) -> bytes:
    """The whole of a regular file of at most `limit` bytes."""
    if "\0" in str(path):
        raise UnreadableFile("not a path (it holds a NUL character)")
    try:
        # O_NONBLOCK: a FIFO opens at once instead of waiting for a writer; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise UnreadableFile("no such file") from exc
    except OSError as exc:
        raise UnreadableFile(str(exc.strerror or exc)) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile(f"not a regular file (a {_kind(info.st_mode)})")
        if info.st_size > limit:
            raise UnreadableFile(f"larger than {_size(limit)} ({info.st_size} bytes)")
        chunks = []
        total = 0
        while total <= limit:  # the file may grow while we read it
            chunk = os.read(fd, min(limit + 1 - total, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise UnreadableFile(f"larger than {_size(limit)}")
        return b"".join(chunks)
    except OSError as exc:
        raise UnreadableFile(str(exc.strerror or exc)) from exc
    finally:
        os.close(fd)


def check_regular(path: Path, *, limit: int) -> int:
    """The size of `path`, a regular file of at most `limit` bytes (UnreadableFile if not)."""
    if "\0" in str(path):
        raise UnreadableFile("not a path (it holds a NUL character)")
    try:
        info = os.stat(path)
    except FileNotFoundError as exc:
        raise UnreadableFile("no such file") from exc
    except OSError as exc:
        raise UnreadableFile(str(exc.strerror or exc)) from exc
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableFile(f"not a regular file (a {_kind(info.st_mode)})")
    if info.st_size > limit:
        raise UnreadableFile(f"larger than {_size(limit)} ({info.st_size} bytes)")
    return info.st_size


def read_text(path: Path, *, limit: int) -> str:
    """A regular file of at most `limit` bytes, as UTF-8 text."""
    data = read_file(path, limit=limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"not UTF-8 text (byte {exc.start})") from exc


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def _size(limit: int) -> str:
    if limit >= MIB and limit % MIB == 0:
        return f"{limit // MIB} MiB"
    if limit >= KIB and limit % KIB == 0:
        return f"{limit // KIB} KiB"
    return f"{limit} bytes"
