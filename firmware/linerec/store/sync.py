"""fdatasync off the main loop, for the writers of open recordings."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from linerec.store.digest import Sha256
from linerec.store.disk import Disk


@dataclass(frozen=True, slots=True)
class Mark:
    """A point in a recording being written: its length, the digest of those bytes, and the
    whole chunks and samples they hold."""

    offset: int
    digest: Sha256  # the digest's state (copied: it goes on growing in the writer)
    chunks: int
    samples: int


class Syncable(Protocol):
    """A recording being written, as the sync thread sees it."""

    @property
    def handle(self) -> int: ...

    @property
    def written(self) -> Mark: ...  # what it has written so far

    def synced(self, mark: Mark) -> None: ...

    def failed(self, error: OSError) -> None: ...


class BackgroundSync:
    """fdatasync off the main loop: the audio path never waits for the card.

    A writer asks for a sync after each chunk; one thread performs them in order. An error is
    kept on the writer and raised by its next write, so it is never retried into silent loss;
    what each sync made durable is told to the writer (`synced`), so after a failure it can
    close the recording where the card provably holds it.
    """

    def __init__(self, disk: Disk) -> None:
        self._disk = disk
        self._cond = threading.Condition()
        self._queue: list[Syncable] = []
        self._busy: Syncable | None = None
        threading.Thread(target=self._run, name="store-sync", daemon=True).start()

    def request(self, writer: Syncable) -> None:
        with self._cond:
            if writer not in self._queue:
                self._queue.append(writer)
                self._cond.notify_all()

    def settle(self, writer: Syncable) -> None:
        """Wait until no sync of `writer` is queued or running (before it closes its file)."""
        with self._cond:
            while writer in self._queue or self._busy is writer:
                self._cond.wait()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                writer = self._busy = self._queue.pop(0)
            mark = writer.written  # everything in it was written before this sync began
            try:
                self._disk.datasync(writer.handle)
            except OSError as exc:
                writer.failed(exc)
            else:
                writer.synced(mark)
            with self._cond:
                self._busy = None
                self._cond.notify_all()
