"""The collector's database goes away under a running collector (issue 14, part 5).

PostgreSQL is stopped and started again under a real collector, a real mosquitto and a real
appliance uplink; SQLite's write lock is held by another process for longer than the
collector waits. While
the database is away nothing is acknowledged that was not committed (the appliance keeps its
events and recordings), the collector says why once in its log and in its status, and when the
database is back it reconnects by itself and catches up as the appliance sends again: each
event and recording stored once.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import pytest

from broker import Mosquitto
from linerec.broker import Broker
from linerec.collector.config import load_collector_config
from linerec.collector.database import connect
from linerec.collector.service import Collector
from linerec.store.base import RecordingInfo
from linerec.store.keys import keygen, load_public
from linerec.store.ring import EncryptedWriter, RingStore
from linerec.uplink import client as uplink_client
from linerec.uplink.client import Uplink, UplinkSettings
from linerec.uplink.outbox import EventOutbox
from postgres import PostgresServer


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Bounded wait on something another thread or process does."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Outage(Protocol):
    """Takes the collector's database away and brings it back."""

    @property
    def location(self) -> str | Path: ...  # what the collector is configured with

    @property
    def name(self) -> str: ...  # how the collector names it in what it says

    def begin(self, collector: Collector) -> None: ...

    def end(self, collector: Collector) -> None: ...

    def close(self) -> None: ...


class PostgresStopped:
    def __init__(self) -> None:
        self.server = PostgresServer().start()  # its own: this one is stopped mid-test
        self.location = self.server.create()
        self.name = self.location

    def begin(self, collector: Collector) -> None:
        self.server.pause()

    def end(self, collector: Collector) -> None:
        self.server.resume()

    def close(self) -> None:
        self.server.stop()


class SqliteLocked:
    """Another process holds SQLite's write lock for longer than the collector waits."""

    def __init__(self, root: Path) -> None:
        self.location = root / "central" / "collector.db"
        self.name = str(self.location)
        self.other: sqlite3.Connection | None = None

    def begin(self, collector: Collector) -> None:
        collector.store.db.connection.execute("PRAGMA busy_timeout = 200")  # not 30 s a try
        self.other = sqlite3.connect(self.location, isolation_level=None)
        self.other.execute("BEGIN IMMEDIATE")

    def end(self, collector: Collector) -> None:
        assert self.other is not None
        self.other.execute("ROLLBACK")

    def close(self) -> None:
        if self.other is not None:
            self.other.close()


def record(ring: RingStore, seconds: float) -> str:
    writer = ring.begin(
        RecordingInfo(
            device_id="box1",
            line="line1",
            label="",
            direction="inbound",
            consent="one-party",
            started_at=datetime.now(UTC),
            clock_synchronized=True,
        )
    )
    assert isinstance(writer, EncryptedWriter)
    audio = (np.random.default_rng(7).standard_normal(int(seconds * 8000)) * 6000).astype(np.int16)
    writer.write(audio)
    writer.seal(ended_by="hang-up")
    return writer.id


@pytest.fixture(params=["postgresql", "sqlite"])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    made = PostgresStopped() if request.param == "postgresql" else SqliteLocked(tmp_path)
    yield made
    made.close()


def test_the_database_going_away_stops_acks_and_the_collector_catches_up(
    tmp_path: Path,
    outage: Outage,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(uplink_client, "RESEND_AFTER", 0.5)  # the appliance asks again sooner
    keygen(tmp_path / "keys")
    broker = Mosquitto(tmp_path).start()
    (tmp_path / "collector.toml").write_text(
        f'[collector]\nbroker = "{broker.url}"\nallow_plaintext = true\ndata_dir = "central"\n'
        f'key = "keys/collector.key"\ndatabase = "{outage.location}"\n'
    )
    collector = Collector(load_collector_config(tmp_path / "collector.toml"))
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    thread.start()
    assert collector.ready.wait(10)
    public = load_public(tmp_path / "keys" / "collector.pub")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    ring = RingStore(
        tmp_path / "ring",
        recipients=[public],
        identity=Ed25519PrivateKey.generate(),
        device_id="box1",
        background_sync=True,
    )
    outbox = EventOutbox(tmp_path / "ring" / "outbox", recipients=[public])
    uplink = Uplink(
        UplinkSettings(
            broker=Broker.parse(broker.url, allow_plaintext=True),
            device_id="box1",
            collector=public,
        ),
        ring,
        outbox,
    )
    uplink.start()
    try:
        wait_until(lambda: uplink.connected, "the uplink to connect")
        outbox.append({"device": "box1", "event": "ringing", "line": "line1", "number": "555"})
        first = record(ring, 1.0)
        uplink.kick()
        wait_until(lambda: uplink.waiting() == (0, []), "the first event and recording acked")
        assert collector.status()["database"] == "ok"

        caplog.clear()
        with caplog.at_level(logging.INFO):
            outage.begin(collector)
            for n in range(3):
                outbox.append({"device": "box1", "event": "ringing", "line": "line1", "n": n})
            second = record(ring, 1.0)
            uplink.kick()
            wait_until(
                lambda: collector.status()["not_acknowledged"] >= 8,
                "the collector to turn away messages it cannot store",
            )
            status = collector.status()
            assert status["database"] == "unavailable"
            assert outage.name.split("?")[0] in status["problem"]
            # Nothing acknowledged that was not committed: the appliance still has it all.
            assert uplink.waiting() == (3, [second])
            down = [
                r for r in caplog.records if r.name.startswith("linerec.collector")
                and r.levelno >= logging.WARNING
            ]  # fmt: skip
            assert len(down) == 1, [r.getMessage() for r in down]
            assert outage.name.split("?")[0] in down[0].getMessage()
            assert "not acknowledging" in down[0].getMessage()
            assert down[0].exc_info is None  # one clear line, not a traceback per message

            outage.end(collector)
            wait_until(lambda: uplink.waiting() == (0, []), "the collector to catch up")
            assert collector.status()["database"] == "ok"
            back = [r.getMessage() for r in caplog.records if "is back after" in r.getMessage()]
            assert len(back) == 1, back
    finally:
        uplink.stop()
        stop.set()
        thread.join(10)
        broker.stop()

    db = connect(outage.location)
    try:
        seqs = [row[0] for row in db.execute("SELECT seq FROM events WHERE device = 'box1'")]
        assert sorted(seqs) == [1, 2, 3, 4]  # each once
        ids = [row[0] for row in db.execute("SELECT id FROM recordings WHERE device = 'box1'")]
        assert sorted(ids) == sorted([first, second])
    finally:
        db.close()
