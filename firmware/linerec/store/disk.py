"""The few file-system operations the store makes, behind one small interface.

Every durable step of the store goes through here, so a test can stand in a disk that records
each write and sync and replay a power cut at any point between them. `OsDisk` is the real one.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

from linerec.store.private import create_private, sync_dir


class Disk(ABC):
    @abstractmethod
    def create(self, path: Path) -> int:
        """Create a new file (it must not exist) for writing; returns a handle."""

    @abstractmethod
    def open(self, path: Path) -> int:
        """Open an existing file for reading and writing."""

    @abstractmethod
    def pwrite(self, handle: int, data: bytes, offset: int) -> None: ...

    @abstractmethod
    def allocate(self, handle: int, size: int) -> None:
        """Reserve room up to `size` bytes, so later writes do not change the file's size."""

    @abstractmethod
    def truncate(self, handle: int, size: int) -> None: ...

    @abstractmethod
    def datasync(self, handle: int) -> None:
        """fdatasync: the data written so far survives a power cut."""

    @abstractmethod
    def close(self, handle: int) -> None: ...

    @abstractmethod
    def sync_dir(self, path: Path) -> None:
        """fsync a directory: entries created or removed in it survive a power cut."""

    @abstractmethod
    def read(self, path: Path) -> bytes: ...

    @abstractmethod
    def unlink(self, path: Path) -> None: ...

    @abstractmethod
    def replace(self, source: Path, target: Path) -> None: ...

    @abstractmethod
    def listdir(self, path: Path) -> list[str]: ...

    @abstractmethod
    def size(self, path: Path) -> int: ...


class OsDisk(Disk):
    """The real file system. An error from fsync is raised, never retried (fsyncgate)."""

    def create(self, path: Path) -> int:
        return create_private(path)  # 0600: personal data, sealed or not

    def open(self, path: Path) -> int:
        return os.open(path, os.O_RDWR)

    def pwrite(self, handle: int, data: bytes, offset: int) -> None:
        written = os.pwrite(handle, data, offset)
        if written != len(data):
            raise OSError(f"short write: {written} of {len(data)} bytes at {offset}")

    def allocate(self, handle: int, size: int) -> None:
        os.posix_fallocate(handle, 0, size)

    def truncate(self, handle: int, size: int) -> None:
        os.ftruncate(handle, size)

    def datasync(self, handle: int) -> None:
        os.fdatasync(handle)

    def close(self, handle: int) -> None:
        os.close(handle)

    def sync_dir(self, path: Path) -> None:
        sync_dir(path)

    def read(self, path: Path) -> bytes:
        return path.read_bytes()

    def unlink(self, path: Path) -> None:
        os.unlink(path)

    def replace(self, source: Path, target: Path) -> None:
        os.replace(source, target)

    def listdir(self, path: Path) -> list[str]:
        return os.listdir(path)

    def size(self, path: Path) -> int:
        return os.stat(path).st_size
