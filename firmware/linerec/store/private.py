"""Files and directories on the card that only the recorder's own user may read.

Personal data lives under the store directory (sealed, but still nobody else's business), so
every file the appliance makes there is 0600 and every directory 0700, set explicitly after
creating them: whatever umask the process was started with.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from linerec.atomic import sync_directory, write_atomic

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Make `path` (and any missing parent) with mode 0700; an existing one is set to 0700."""
    missing = []
    walk = path
    while not walk.exists():
        missing.append(walk)
        walk = walk.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            os.mkdir(directory, DIR_MODE)
        os.chmod(directory, DIR_MODE)
    if path not in missing and os.stat(path).st_mode & 0o777 != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return path


def tighten(directory: Path) -> None:
    """Make what an earlier version left under `directory` private: files 0600, dirs 0700."""
    private_dir(directory)
    for path in directory.rglob("*"):
        if path.is_symlink():
            continue
        mode = DIR_MODE if path.is_dir() else FILE_MODE
        if path.stat().st_mode & 0o777 != mode:
            os.chmod(path, mode)


def create_private(path: Path, flags: int = os.O_RDWR | os.O_CREAT | os.O_EXCL) -> int:
    """Open a new file with mode 0600 (not only as the umask allows); returns its descriptor."""
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` with `data` durably, mode 0600 (linerec.atomic). The caller syncs the
    directory when the new name itself must survive a power cut."""
    write_atomic(path, data, mode=FILE_MODE)


def sync_dir(path: Path) -> None:
    sync_directory(path)
