"""The bounded queue between the capture threads and the main loop.

A producer that finds it full sleeps until the main loop has drained it to half, so when
both sides run flat out (a backlog after a stall, a simulation) they hand over in batches
instead of waking each other for every 20 ms frame. On a Pi the capture side is paced by the
sound card and the queue is nearly always empty; then this is a plain FIFO.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class HandoffQueue(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._low_water = maxsize // 2
        self._items: deque[T] = deque()
        lock = threading.Lock()
        self._not_empty = threading.Condition(lock)
        self._not_full = threading.Condition(lock)

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T, timeout: float) -> bool:
        """Append; False if the queue stayed full for `timeout` seconds."""
        with self._not_full:
            if len(self._items) >= self.maxsize and not self._not_full.wait_for(
                lambda: len(self._items) <= self._low_water, timeout
            ):
                return False
            self._items.append(item)
            self._not_empty.notify()
        return True

    def get(self, timeout: float) -> T | None:
        """The oldest item, waiting up to `timeout` seconds; None if there was none."""
        with self._not_empty:
            if not self._items and not self._not_empty.wait(timeout):
                return None
            if not self._items:
                return None
            item = self._items.popleft()
            if len(self._items) == self._low_water:
                self._not_full.notify_all()
            return item

    def take_while(self, wanted: Callable[[T], bool], limit: int) -> list[T]:
        """The oldest items, without waiting, as long as each is `wanted` (at most `limit`)."""
        taken: list[T] = []
        with self._not_empty:
            while self._items and len(taken) < limit and wanted(self._items[0]):
                taken.append(self._items.popleft())
                if len(self._items) == self._low_water:
                    self._not_full.notify_all()
        return taken
