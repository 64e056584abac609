"""The durable event outbox: events wait on the card until the collector has acknowledged them.

paho keeps unacknowledged messages in memory only; a reboot or a broker outage of days must
not lose an event. Each event is one small file, `<seq>.json`, written, synced and renamed
into place before it counts as queued; the sequence number is per device and never reused:
while an event waits its file holds its number, and before acknowledged files go the highest
number is kept in `seq`. Only the collector's signed ack removes events.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _write_synced(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


class EventOutbox:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._seq = self._load_seq()

    def _load_seq(self) -> int:
        return max([self._load_seq_file(), *(int(p.stem) for p in self.dir.glob("*.json"))])

    def _load_seq_file(self) -> int:
        try:
            return int((self.dir / "seq").read_text())
        except (OSError, ValueError):
            return 0

    def append(self, record: dict[str, Any]) -> int:
        """Queue an event durably; returns its sequence number."""
        self._seq += 1
        body = json.dumps({**record, "seq": self._seq}, sort_keys=True).encode()
        _write_synced(self.dir / f"{self._seq:012d}.json", body)
        self._sync_dir()  # the rename too: one data and one directory sync per event
        return self._seq

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def pending(self) -> list[tuple[int, bytes]]:
        """(seq, payload) of every event not yet acknowledged, oldest first."""
        events = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                events.append((int(path.stem), path.read_bytes()))
            except FileNotFoundError:  # acknowledged meanwhile (the ack comes on another thread)
                continue
        return events

    def acknowledge(self, upto: int) -> int:
        """The collector has every event up to `upto`: forget them. Returns how many went."""
        going = [p for p in sorted(self.dir.glob("*.json")) if int(p.stem) <= upto]
        if going:  # the numbers they held must outlive them, or a restart would reuse them
            kept = max(int(going[-1].stem), self._load_seq_file())
            _write_synced(self.dir / "seq", str(kept).encode())
            self._sync_dir()
        for path in going:
            path.unlink()
        return len(going)
