"""Collectors and appliances as separate parts of a site, for the scale-out tests.

`CollectorProcess` is `linerec collector run` in its own process (its log read as it comes);
`Appliance` is one device's real ring, outbox and uplink (firmware/linerec/uplink), filled with
a backlog before it connects; `stored_state` reads back what the collectors' database holds."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import databases
from calls import record_call
from linerec.collector.config import load_collector_config
from linerec.collector.service import Collector
from linerec.collector.store import CollectorStore
from linerec.collector.vault import is_vault_temp
from linerec.config import load_config
from linerec.daemon.storage import open_store, open_uplink
from linerec.store.ring import RingStore
from linerec.uplink.client import Uplink

LINEREC = [sys.executable, "-m", "linerec.cli"]


class CollectorProcess:
    """`linerec collector run` in its own process; its log lines read as they come."""

    def __init__(
        self, config: Path, command: list[str] | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.process = subprocess.Popen(
            command or [*LINEREC, "collector", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 30) -> None:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"never said {text!r}: {''.join(self.log)}") from None
            self.log.append(line)
            if text in line:
                return

    def text(self) -> str:
        while not self.lines.empty():
            self.log.append(self.lines.get_nowait())
        return "".join(self.log)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(20)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self._reader.join(10)  # the pipe read to its end: the last lines are in the log
        return self.text()


@dataclass(frozen=True, slots=True)
class Expected:
    """What a backlog holds: each device's events (count) and recordings (id -> bytes)."""

    events: dict[str, int]
    recordings: dict[tuple[str, str], bytes]


class Appliance:
    """One device's real ring, outbox and uplink; `record` and `event` build its backlog."""

    def __init__(self, config: Path, name: str) -> None:
        loaded = load_config(config)
        self.name = name
        self.ring: RingStore = open_store(loaded, emit=lambda e: None, clock=time.monotonic)
        self.problems: list[str] = []
        self.uplink: Uplink = open_uplink(loaded, self.ring, on_problem=self.problems.append)
        self.events = 0
        self.recordings: dict[str, bytes] = {}

    def record(self, seconds: float) -> str:
        seed = len(self.recordings)
        entry = record_call(self.ring, seconds, self.name, consent="notice", seed=seed)
        self.recordings[entry.id] = entry.path.read_bytes()
        return entry.id

    def event(self, number: str) -> None:
        """A caller-id event: its number travels sealed to the collector's key."""
        self.uplink.outbox.append(
            {"device": self.name, "event": "callerid", "line": "line1", "number": number}
        )
        self.events += 1

    def waiting(self) -> int:
        events, recordings = self.uplink.waiting()
        return events + len(recordings)


def wait_until_delivered(appliances: list[Appliance], timeout: float) -> None:
    """Until every appliance holds nothing the collector has not acknowledged."""
    deadline = time.monotonic() + timeout
    for appliance in appliances:  # durable first: waiting() leaves out events still queued
        assert appliance.uplink.outbox.flush(timeout), f"{appliance.name}: events not written"
    while any(a.waiting() for a in appliances):
        left = {a.name: a.uplink.waiting() for a in appliances if a.waiting()}
        assert time.monotonic() < deadline, f"still waiting for acks: {left}"
        for appliance in appliances:
            appliance.uplink.kick()
        time.sleep(0.1)


def expected(appliances: list[Appliance]) -> Expected:
    return Expected(
        events={a.name: a.events for a in appliances},
        recordings={(a.name, rid): data for a in appliances for rid, data in a.recordings.items()},
    )


def housekeep_after_expiry(config: Path) -> list[Path]:
    """The collector's housekeeping as it runs once the expiry age has passed: a process
    killed while writing a vault leaves its temporary file, which goes then. Returns the
    files it removed, each checked to be such a temp (no vault, and no upload dropped)."""
    settings = load_collector_config(config)
    recordings = settings.data_dir / "recordings"
    before = {p for p in recordings.rglob("*") if p.is_file()}
    later = time.time() + settings.limits.expire_after + 1
    collector = Collector(settings, client_id="housekeeping", clock=lambda: later)
    try:
        assert collector.housekeeping() == []  # every upload finished: none to drop
    finally:
        collector.store.db.close()
    gone = sorted(before - {p for p in recordings.rglob("*") if p.is_file()})
    assert all(is_vault_temp(p.name, p.parent.name) for p in gone), gone
    return gone


def check_stored_once(data_dir: Path, want: Expected) -> None:
    """Every event and recording is stored exactly once, readable, in an unbroken chain, and
    nothing is left over (no upload under way, no stray file)."""
    store = CollectorStore(data_dir, databases.selected.location(data_dir / "collector.db"))
    try:
        for device, count in want.events.items():
            rows = store.db.execute(
                "SELECT count(*), min(seq), max(seq) FROM events WHERE device = ?", (device,)
            ).fetchone()
            assert tuple(rows) == (count, 1, count), (device, rows)
            assert store.contiguous_seq(device) == count
            assert store.gaps(device) == []
        stored = {(r["device"], r["id"]) for r in store.recordings()}
        assert stored == set(want.recordings)
        for (device, recording_id), data in want.recordings.items():
            row = store.find(recording_id, device)
            assert store.read_recording(recording_id, Path(row["path"]), device) == data
        chain = store.chain()
        assert {link["state"] for link in chain} == {"stored"}, chain
        assert all(link["follows_on"] for link in chain), chain
        assert len(chain) == len(want.recordings)
        assert store.uploads.under_way() == []
    finally:
        store.db.close()
    files = sorted(p.relative_to(data_dir) for p in (data_dir / "recordings").rglob("*"))
    vaults = [p for p in files if p.suffix == ".vault"]
    assert len(vaults) == len(want.recordings) == len([p for p in files if "." in p.name]), files
    incoming = data_dir / "incoming"
    assert not incoming.exists() or not [p for p in incoming.rglob("*") if p.is_file()]
