"""ring.log: the append-only record of every recording that left the card, and why.

One JSON line a deletion, synced before the files go: a power cut in between leaves a logged
deletion of a file still there (recovery finishes it), never a gap the log cannot explain.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from linerec.store.disk import Disk

LOG = "ring.log"


class DeletionLog:
    def __init__(
        self, directory: Path, disk: Callable[[], Disk], wall: Callable[[], datetime]
    ) -> None:
        self.path = directory / LOG
        self._dir = directory
        self._card = disk
        self._wall = wall
        self._size: int | None = None  # ring.log's length up to its last whole line

    def append(self, recording_id: str, seq: int, header_hash: str, reason: str) -> None:
        """Append one line to ring.log and sync it, through the Disk like every durable step.

        A line a power cut tore is cut away by the next append: its deletion had not begun
        (the files go only after the line is synced)."""
        line = (
            json.dumps(
                {
                    "event": reason,
                    "id": recording_id,
                    "seq": seq,
                    "header_hash": header_hash,
                    "at": self._wall().isoformat(),
                }
            ).encode()
            + b"\n"
        )
        disk = self._card()
        end = self._end()
        if end is None:
            handle = disk.create(self.path)
            end = 0
        else:
            handle = disk.open(self.path)
        try:
            disk.pwrite(handle, line, end)
            disk.truncate(handle, end + len(line))  # whatever a torn line left after it
            disk.datasync(handle)
        finally:
            disk.close(handle)
        if end == 0:
            disk.sync_dir(self._dir)  # the log's own name
        self._size = end + len(line)

    def _end(self) -> int | None:
        """Where the next line goes (after the last whole line); None: no log yet."""
        if self._size is None:
            try:
                data = self._card().read(self.path)
            except FileNotFoundError:
                return None
            self._size = data.rfind(b"\n") + 1
        return self._size

    def ids(self) -> set[str]:
        """The recordings the log says were deleted (read once, at recovery)."""
        try:
            data = self._card().read(self.path)
        except FileNotFoundError:
            return set()
        ids = set()
        for line in data[: data.rfind(b"\n") + 1].splitlines():
            try:
                ids.add(str(json.loads(line)["id"]))
            except (ValueError, KeyError, TypeError):
                continue  # verify names it; recovery only finishes what it can read
        return ids
