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
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from calls import record_call, wait_until
from linerec.collector.database import connect
from linerec.collector.service import Collector
from linerec.uplink import client as uplink_client
from postgres import PostgresServer
from streamed import streamed_site

WAIT = 60.0  # seconds: a database server stopped and started again is slow under load


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
    with streamed_site(tmp_path, f'database = "{outage.location}"\n') as site:
        collector, ring, outbox, uplink = site.collector, site.ring, site.outbox, site.uplink
        wait_until(lambda: uplink.connected, "the uplink to connect", WAIT)
        outbox.append({"device": "box1", "event": "ringing", "line": "line1", "number": "555"})
        first = record_call(ring, 1.0).id
        assert outbox.flush(WAIT)  # durable first: waiting() leaves out events still queued
        uplink.kick()
        wait_until(lambda: uplink.waiting() == (0, []), "the first event and recording acked", WAIT)
        assert collector.status()["database"] == "ok"

        caplog.clear()
        with caplog.at_level(logging.INFO):
            outage.begin(collector)
            for n in range(3):
                outbox.append({"device": "box1", "event": "ringing", "line": "line1", "n": n})
            second = record_call(ring, 1.0).id
            assert outbox.flush(WAIT)  # all three counted by waiting() below
            uplink.kick()
            wait_until(
                lambda: collector.status()["not_acknowledged"] >= 8,
                "the collector to turn away messages it cannot store",
                WAIT,
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
            wait_until(lambda: uplink.waiting() == (0, []), "the collector to catch up", WAIT)
            assert collector.status()["database"] == "ok"
            back = [r.getMessage() for r in caplog.records if "is back after" in r.getMessage()]
            assert len(back) == 1, back

    db = connect(outage.location)
    try:
        seqs = [row[0] for row in db.execute("SELECT seq FROM events WHERE device = 'box1'")]
        assert sorted(seqs) == [1, 2, 3, 4]  # each once
        ids = [row[0] for row in db.execute("SELECT id FROM recordings WHERE device = 'box1'")]
        assert sorted(ids) == sorted([first, second])
    finally:
        db.close()
