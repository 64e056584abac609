"""The durable event outbox: events wait on the card until the collector has acknowledged them.

paho keeps unacknowledged messages in memory only; a reboot or a broker outage of days must
not lose an event. Each event is one small file, `<seq>.json`, written, synced and renamed
into place before it counts as queued; the sequence number is per device and never reused
(the last one handed out is kept in `seq`). Only the collector's signed ack removes events.
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
        try:
            seq = int((self.dir / "seq").read_text())
        except (OSError, ValueError):
            seq = 0
        return max([seq, *(int(p.stem) for p in self.dir.glob("*.json"))])

    def append(self, record: dict[str, Any]) -> int:
        """Queue an event durably; returns its sequence number."""
        self._seq += 1
        body = json.dumps({**record, "seq": self._seq}, sort_keys=True).encode()
        _write_synced(self.dir / f"{self._seq:012d}.json", body)
        _write_synced(self.dir / "seq", str(self._seq).encode())
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return self._seq

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
        gone = 0
        for path in sorted(self.dir.glob("*.json")):
            if int(path.stem) <= upto:
                path.unlink()
                gone += 1
        return gone
