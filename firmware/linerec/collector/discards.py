"""Streams a device discarded while they were open (the call was opted out), one row each.

The collector drops what it holds of such a stream at once; the row is what keeps a piece
that comes after it (still in flight, or redelivered after a broker or collector restart)
from starting the stream again. It is in the database, so a restart between the discard and
the late piece changes nothing. A device may discard only its own recordings (the topic's
device names the row), and the oldest rows of a device give way beyond `KEPT`, so a stolen
box cannot grow the table for the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from linerec.collector.database import Database

KEPT = 1000  # discarded streams remembered per device (a late piece comes within minutes)


class StreamDiscards:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, device: str, recording_id: str, now: float) -> None:
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO stream_discards (device, id, at) VALUES (?, ?, ?) "
                "ON CONFLICT (device, id) DO NOTHING",
                (device, recording_id, now),
            )
            self.db.execute(
                "DELETE FROM stream_discards WHERE device = ? AND id NOT IN (SELECT id FROM "
                "stream_discards WHERE device = ? ORDER BY at DESC, id DESC LIMIT ?)",
                (device, device, KEPT),
            )

    def __contains__(self, key: tuple[str, str]) -> bool:
        device, recording_id = key
        return (
            self.db.execute(
                "SELECT 1 FROM stream_discards WHERE device = ? AND id = ?", (device, recording_id)
            ).fetchone()
            is not None
        )
