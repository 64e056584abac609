"""At the collector: retention that runs, and deletion that leaves nothing of the call behind."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import databases
from broker import Mosquitto
from linerec.collector.config import load_collector_config
from linerec.collector.service import HOUSEKEEPING_EVERY, RETENTION_EVERY, Collector
from linerec.collector.store import CollectorStore
from linerec.config import load_config
from linerec.daemon.simulate import example_call, simulate
from linerec.store.keys import keygen

pytestmark = pytest.mark.usefixtures("engine")
LINEREC = [sys.executable, "-m", "linerec.cli"]
DAY = 86400.0
CALLER, CALLED = "5551234567", "5551234"  # in the example calls' caller ID and dialled digits


class Stop:
    """A stand-in for the stop event: each wait is a period passing on the fake clock."""

    def __init__(self, clock: list[float], periods: int) -> None:
        self.clock = clock
        self.periods = periods
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        if len(self.waits) > self.periods:
            return True
        self.clock[0] += timeout or 0
        return False

    def set(self) -> None:  # what a dying writer thread calls to end run()
        self.periods = -1


def recording_facts(seq: int, started_at: str, synchronized: bool) -> dict[str, object]:
    return {
        "seq": seq,
        "line": "line1",
        "started_at": started_at,
        "duration": 1.0,
        "state": "sealed",
        "clock_synchronized": synchronized,
        "caller_number": CALLER,
    }


def collector_toml(tmp_path: Path, url: str = "mqtt://127.0.0.1:1", days: float = 0) -> Path:
    if not (tmp_path / "keys").exists():
        keygen(tmp_path / "keys")
    path = tmp_path / "collector.toml"
    path.write_text(
        f'[collector]\nbroker = "{url}"\nallow_plaintext = true\ndata_dir = "central"\n'
        f'key = "keys/collector.key"\nretention_days = {days}\n'
        + databases.selected.config_line(tmp_path / "central")
    )
    return path


def test_the_collector_sweeps_when_it_starts_and_then_every_period(tmp_path: Path) -> None:
    settings = load_collector_config(collector_toml(tmp_path, days=1))
    store = CollectorStore(settings.data_dir, settings.database)
    arrived = 1_000_000_000.0

    def began(before: float) -> str:
        return datetime.fromtimestamp(arrived - before, UTC).isoformat()

    store.index("box1", "old", tmp_path / "o", "x", recording_facts(1, began(DAY), True), arrived)
    store.index(
        "box1", "new", tmp_path / "n", "x", recording_facts(2, began(0.4 * DAY), True), arrived
    )
    clock = [arrived + 0.5 * DAY]  # "old" began 1.5 days ago, "new" 0.9
    stop = Stop(clock, periods=0)
    collector = Collector(settings, client_id="sweep-test", clock=lambda: clock[0])
    collector.run(stop)  # type: ignore[arg-type]
    assert [r["id"] for r in collector.store.recordings()] == ["new"]  # swept at start
    assert [d["reason"] for d in collector.store.deletions()] == ["retention: older than 1 days"]

    periods = round(13 * RETENTION_EVERY / HOUSEKEEPING_EVERY)  # 13 hours: "new" is past a day
    stop = Stop(clock, periods=periods)
    collector.run(stop)  # type: ignore[arg-type]
    assert collector.store.recordings() == []
    assert stop.waits == [HOUSEKEEPING_EVERY] * (periods + 1)


def test_an_unsynchronised_start_time_is_aged_from_when_it_arrived(tmp_path: Path) -> None:
    store = CollectorStore(tmp_path / "data", databases.selected.location(tmp_path / "index.db"))
    arrived = 2_000_000_000.0
    # A Pi without NTP yet stamps 1970 (or any date): that date decides nothing.
    store.index(
        "box1",
        "nontp",
        tmp_path / "a",
        "x",
        recording_facts(1, "1970-01-01T00:00:09+00:00", False),
        arrived,
    )
    store.index(
        "box1",
        "future",
        tmp_path / "b",
        "x",
        recording_facts(2, "2099-01-01T00:00:00+00:00", False),
        arrived,
    )
    store.index(
        "box1",
        "ntp",
        tmp_path / "c",
        "x",
        recording_facts(3, "1970-01-01T00:00:09+00:00", True),
        arrived,
    )
    assert store.enforce_retention(30, now=arrived + 29 * DAY) == ["ntp"]
    assert sorted(store.enforce_retention(30, now=arrived + 31 * DAY)) == ["future", "nontp"]


# -- deletion takes the call's events with it ----------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path).start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
def delivered(tmp_path: Path, broker: Mosquitto) -> Path:
    """A collector (stopped again) holding an inbound and an outbound call from box1, with all
    their events; returns its config file."""
    config_path = collector_toml(tmp_path, broker.url)
    appliance = tmp_path / "linerec.toml"
    appliance.write_text(
        '[device]\nid = "box1"\n[store]\ndir = "ring"\nrecipients = ["keys/collector.pub"]\n'
        f'[uplink]\nbroker = "{broker.url}"\nallow_plaintext = true\n'
    )
    config = load_config(appliance)
    for name in ("inbound.toml", "outbound.toml"):
        simulate([example_call(name)], config=config, store_dir=None, emit=lambda e: None)
    collector = Collector(load_collector_config(config_path), client_id="delivered")
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert collector.ready.wait(10)
        flush = subprocess.run(
            [*LINEREC, "uplink", "flush", "--config", str(appliance), "--timeout", "30"],
            capture_output=True,
            text=True,
        )
        assert flush.returncode == 0, flush.stderr
    finally:
        stop.set()
        thread.join(10)
    collector.store.db.close()
    return config_path


def leftovers(root: Path, number: str) -> list[str]:
    """Every file under `root` whose bytes hold `number` (the database, its WAL, files...)."""
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and number.encode() in path.read_bytes()
    )


def events_of(database: Path) -> list[dict[str, object]]:
    with sqlite3.connect(database) as db:
        return [json.loads(row[0]) for row in db.execute("SELECT body FROM events ORDER BY seq")]


def delete(config: Path, recording_id: str) -> None:
    run = subprocess.run(
        [
            *LINEREC,
            "collector",
            "delete",
            recording_id,
            "--reason",
            "asked",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr


@pytest.mark.engines("sqlite")  # reads the SQLite files' bytes
def test_deleting_a_recording_leaves_no_number_of_its_call_anywhere(delivered: Path) -> None:
    central = delivered.parent / "central"
    settings = load_collector_config(delivered)
    store = CollectorStore(settings.data_dir, settings.database)
    rows = {r["caller_number"] or r["called_number"]: r for r in store.recordings()}
    store.db.close()
    assert leftovers(central, CALLER) == ["collector.db"]  # the test can see them: then not
    before = events_of(central / "collector.db")
    assert any(e.get("number") == CALLER for e in before)

    delete(delivered, rows[CALLER]["id"])
    assert leftovers(central, CALLER) == []
    after = events_of(central / "collector.db")
    assert [e["seq"] for e in after] == [e["seq"] for e in before]  # no hole: acks still hold
    assert any(e.get("number") == CALLED for e in after)  # the other call keeps its events
    erased = [e for e in after if e.get("erased")]
    assert {e["erased"] for e in erased} == {rows[CALLER]["id"]}
    assert {"callerid", "answered", "hung_up", "recording_sealed"} <= {e["event"] for e in erased}

    delete(delivered, rows[CALLED]["id"])
    assert leftovers(central, CALLED) == []
    with sqlite3.connect(central / "collector.db") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("VACUUM")
    assert leftovers(central, CALLER) == leftovers(central, CALLED) == []


@pytest.mark.engines("sqlite")  # reads the SQLite files' bytes
def test_retention_erases_the_calls_events_and_old_ones_of_no_recording(delivered: Path) -> None:
    central = delivered.parent / "central"
    settings = load_collector_config(delivered)
    store = CollectorStore(settings.data_dir, settings.database)
    store.db.execute(  # a missed call: its caller ID event belongs to no recording
        "INSERT INTO events (device, seq, body, received_at) VALUES (?, ?, ?, ?)",
        ("box2", 1, json.dumps({"seq": 1, "event": "callerid", "number": "5559876543"}), 0.0),
    )
    gone = store.enforce_retention(30, now=4_000_000_000.0)
    assert len(gone) == 2
    store.db.close()
    for number in (CALLER, CALLED, "5559876543"):
        assert leftovers(central, number) == []


def test_events_that_arrive_after_their_recording_was_deleted_are_erased(tmp_path: Path) -> None:
    store = CollectorStore(tmp_path / "data", databases.selected.location(tmp_path / "index.db"))
    store.index(
        "box1",
        "r1",
        tmp_path / "r1",
        "x",
        recording_facts(1, "2030-01-01T00:00:00+00:00", True),
        1.0,
    )
    store.delete("r1", "asked")
    for seq, body in enumerate(
        [
            {"event": "ringing", "line": "line1"},
            {"event": "callerid", "line": "line1", "number": CALLER},
            {"event": "answered", "line": "line1"},
            {"event": "recording_started", "line": "line1"},
            {"event": "hung_up", "line": "line1"},
            {"event": "recording_sealed", "line": "line1", "id": "r1"},
            {"event": "ringing", "line": "line1"},  # the next call: not this recording's
        ],
        start=1,
    ):
        store.add_event("box1", {"seq": seq, "device": "box1", **body}, 2.0)
    events = [
        json.loads(row[0]) for row in store.db.execute("SELECT body FROM events ORDER BY seq")
    ]
    assert [e.get("erased") for e in events] == ["r1"] * 6 + [None]
    assert store.contiguous_seq("box1") == 7
    store.db.close()
    if databases.selected.engine == "sqlite":  # the bytes of its files
        assert leftovers(tmp_path, CALLER) == []
