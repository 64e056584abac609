"""One stolen or buggy box must not hurt the others: a device with a real certificate sends
what it likes to the collector, over the real TLS broker with its ACLs, and the other device
is still served (its upload completes and is acknowledged)."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import yaml

import databases
from enrolled import LINEREC, DeviceLink, HonestDevice, RunningCollector, Site, event
from linerec.collector.database import connect
from linerec.collector.enroll import MAX_PACKET_BYTES
from linerec.collector.schema import SCHEMA_VERSION, SchemaVersionError, migrate
from linerec.collector.service import MAX_EVENT_BYTES
from linerec.collector.store import CollectorStore
from linerec.mqttapi import CHUNK

pytestmark = pytest.mark.usefixtures("engine")
FAR = 10**12


def recording_id(device: str, seq: int = 1) -> str:
    return f"{device}-{seq:08d}-20260101T120000Z-line1"


def test_a_far_event_number_is_refused_and_no_one_stalls(
    enrolled_site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        RunningCollector(enrolled_site, tmp_path / "central") as collector,
        DeviceLink(enrolled_site, "box1") as box1,
        HonestDevice(enrolled_site, "box2") as box2,
    ):
        box1.publish("linerec/v1/box1/event", event(1))
        box1.wait_ack(kind="events", upto=1)
        box1.publish("linerec/v1/box1/event", event(FAR))
        refused = box1.wait_ack(kind="rejected", seq=FAR)
        box2.upload_and_wait()  # served at once, and again after box1's next event
        box1.publish("linerec/v1/box1/event", event(3))
        box1.publish("linerec/v1/box1/event", event(2))
        box1.wait_ack(kind="events", upto=3)
        box2.upload_and_wait()
    assert "event_seq_window" in str(refused["reason"])
    spec = yaml.safe_load((Path(__file__).parents[1] / "docs" / "asyncapi.yaml").read_text())
    for payload in box1.payloads:
        jsonschema.validate(json.loads(payload), spec["components"]["messages"]["ack"]["payload"])
    seqs = [r[0] for r in collector.store.db.execute("SELECT seq FROM events WHERE device='box1'")]
    assert sorted(seqs) == [1, 2, 3]  # refused means not stored
    line = next(r.getMessage() for r in caplog.records if str(FAR) in r.getMessage())
    assert "device box1" in line and "linerec/v1/box1/event" in line and "refused" in line
    assert collector.store.gaps("box1") == []


def test_gaps_are_ranges_even_with_a_far_event_already_stored(tmp_path: Path) -> None:
    """A database from before the fix may hold such an event: it costs nothing either."""
    store = CollectorStore(tmp_path / "data", databases.selected.location(tmp_path / "index.db"))
    for seq in (1, 5, FAR):
        store.add_event("box1", {"seq": seq}, 0.0)
    assert store.gaps("box1") == [(2, 4), (6, FAR - 1)]
    assert store.contiguous_seq("box1") == 1
    for seq in (2, 3, 4):
        store.add_event("box1", {"seq": seq}, 0.0)
    assert store.contiguous_seq("box1") == 5
    assert store.gaps("box1") == [(6, FAR - 1)]


def test_a_device_cannot_take_another_devices_recording_id(
    enrolled_site: Site, tmp_path: Path
) -> None:
    with (
        RunningCollector(enrolled_site, tmp_path / "central") as collector,
        DeviceLink(enrolled_site, "box1") as box1,
        HonestDevice(enrolled_site, "box2") as box2,
    ):
        # box2's next id is guessable: box1 sends an empty file under it first
        next_seq = box2.ring._seq + 1
        box1.upload(recording_id("box2", next_seq).replace("20260101T120000Z", "X"), b"")
        box1.upload(
            f"box2-{next_seq:08d}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-line1", b""
        )
        deadline = time.monotonic() + 10
        while len(collector.problems) < 2:
            assert time.monotonic() < deadline, collector.problems
            time.sleep(0.02)
        stored = box2.upload_and_wait()
    assert all("is not a recording id of device 'box1'" in p for p in collector.problems)
    (row,) = collector.store.recordings()
    assert (row["device"], row["id"]) == ("box2", stored)
    assert Path(row["path"]).parent == tmp_path / "central" / "recordings" / "box2"


def test_an_upload_over_the_size_limit_is_refused_and_told(
    enrolled_site: Site, tmp_path: Path
) -> None:
    extra = "max_recording_bytes = 100000\n"
    with (
        RunningCollector(enrolled_site, tmp_path / "central", extra) as collector,
        DeviceLink(enrolled_site, "box1") as box1,
        HonestDevice(enrolled_site, "box2") as box2,
    ):
        name = recording_id("box1")
        digest = box1.upload(name, bytes(CHUNK_PIECES * 32 * 1024))
        told = box1.wait_ack(kind="rejected", id=name, sha256=digest)
        box2.upload_and_wait()  # a small enough recording still goes through
    assert "max_recording_bytes" in str(told["reason"])
    assert not list((tmp_path / "central").rglob("*.part"))
    assert collector.store.uploads.under_way() == []


CHUNK_PIECES = 4


def _broker_peak_kib(site: Site) -> int:
    """The peak resident memory of the site's mosquitto (the one started on its config)."""
    conf = str(site.site / "mosquitto.conf").encode()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and conf in (proc / "cmdline").read_bytes():
                status = (proc / "status").read_text()
                return int(status.split("VmHWM:")[1].split()[0])
        except OSError:
            continue
    raise AssertionError("the site's broker is not running")


def test_one_huge_message_is_refused_by_the_broker_before_it_costs_memory(
    enrolled_site: Site, tmp_path: Path
) -> None:
    """MQTT allows 256 MiB in one message and mosquitto's default takes them: one such
    message from one box took broker and collector to more than 600 MiB each. The broker
    enroll configures drops a device that sends a message larger than any linerec message."""
    huge = 64 << 20
    with (
        RunningCollector(enrolled_site, tmp_path / "central") as collector,
        DeviceLink(enrolled_site, "box1") as box1,
        HonestDevice(enrolled_site, "box2") as box2,
    ):
        dropped = threading.Event()
        box1.client.on_disconnect = lambda *args: dropped.set()
        box1.client.publish(f"linerec/v1/box1/upload/{recording_id('box1')}", bytes(huge), qos=0)
        assert dropped.wait(30), "the broker kept the connection of a box sending 64 MiB"
        box2.upload_and_wait()  # the others are served
        with DeviceLink(enrolled_site, "box1") as again:  # and box1 itself, connecting again
            again.publish("linerec/v1/box1/event", event(1))
            again.wait_ack(kind="events", upto=1)
    assert not any(recording_id("box1") in p for p in collector.problems), collector.problems
    assert _broker_peak_kib(enrolled_site) < huge // 1024 // 2
    # and linerec's own largest messages, with their topic and properties, still fit
    assert max(MAX_EVENT_BYTES, CHUNK) + 4096 <= MAX_PACKET_BYTES
    assert (
        f"max_packet_size {MAX_PACKET_BYTES}\n"
        in (enrolled_site.site / "mosquitto.conf").read_text()
    )


def test_open_uploads_are_bounded_and_unfinished_ones_expire(
    enrolled_site: Site, tmp_path: Path
) -> None:
    now = [time.time()]
    extra = "max_open_uploads = 2\nupload_expiry_hours = 1\n"
    with (
        RunningCollector(enrolled_site, tmp_path / "central", extra, clock=lambda: now[0]) as c,
        DeviceLink(enrolled_site, "box1") as box1,
    ):
        for seq in range(1, 6):  # five uploads begun, none finished
            now[0] += 1
            box1.piece(recording_id("box1", seq), 0, b"x" * 100, 1000, "0" * 64)
        box1.publish("linerec/v1/box1/event", event(1))  # in order after the pieces
        box1.wait_ack(kind="events", upto=1)
        under_way = [u["id"] for u in c.store.uploads.under_way()]
        parts = sorted(p.name for p in (tmp_path / "central" / "incoming" / "box1").iterdir())
        now[0] += 3601
        expired = c.housekeeping()
    assert under_way == [recording_id("box1", 4), recording_id("box1", 5)]
    assert parts == [f"{name}.part" for name in under_way]
    assert sorted(expired) == [f"box1/{name}" for name in under_way]
    assert not (tmp_path / "central" / "incoming" / "box1").exists()


def test_holes_in_an_upload_are_bounded_and_cost_one_row_each(
    enrolled_site: Site, tmp_path: Path
) -> None:
    extra = "max_upload_holes = 8\n"
    name = recording_id("box1")
    with (
        RunningCollector(enrolled_site, tmp_path / "central", extra) as collector,
        DeviceLink(enrolled_site, "box1") as box1,
    ):
        for offset in range(2, 40, 2):  # one-byte pieces with a hole before each
            box1.piece(name, offset, b"x", 100, "0" * 64)
        deadline = time.monotonic() + 10
        while not any("max_upload_holes" in p for p in collector.problems):
            assert time.monotonic() < deadline, collector.problems
            time.sleep(0.02)
        box1.piece(name, 40, b"x", 100, "0" * 64)
        ranges = collector.store.db.execute(
            "SELECT start, \"end\" FROM upload_ranges WHERE device = 'box1' ORDER BY start"
        ).fetchall()
    assert ranges == [(offset, offset + 1) for offset in range(2, 20, 2)]  # 9 ranges, 8 holes
    refused = [p for p in collector.problems if "max_upload_holes" in p]
    assert refused[0].startswith(f"device box1: linerec/v1/box1/upload/{name}: byte 20:")


def test_junk_is_quarantined_with_its_reason_not_stored_and_not_acked(
    enrolled_site: Site, tmp_path: Path
) -> None:
    with (
        RunningCollector(enrolled_site, tmp_path / "central") as collector,
        DeviceLink(enrolled_site, "box1") as box1,
        HonestDevice(enrolled_site, "box2") as box2,
    ):
        junk_id, junk = recording_id("box1"), os.urandom(70_000)
        digest = box1.upload(junk_id, junk)
        told = box1.wait_ack(kind="rejected", id=junk_id, sha256=digest)
        empty = box1.upload(junk_id, b"")  # other content under the same id: kept apart too
        told_empty = box1.wait_ack(kind="rejected", id=junk_id, sha256=empty)
        # box2's real recording, sent by box1 under an id of box1's own: the header says whose
        stolen = box2.ring.entries[box2.record()].path.read_bytes()
        stolen_id = recording_id("box1", 2)
        box1.upload(stolen_id, stolen)
        told_stolen = box1.wait_ack(kind="rejected", id=stolen_id)
        box1.upload(junk_id, junk)  # the same junk again: told again, nothing stored again
        box1.wait_ack(kind="rejected", id=junk_id, sha256=digest, count=2)
        box2.upload_and_wait()
        box2.upload_and_wait()
    assert not any(a.get("kind") == "recording" for a in box1.acks)
    assert str(told["reason"]).startswith("quarantined: damaged")
    assert told_empty["reason"] == "quarantined: damaged: an empty file"
    assert "header names 'box2'" in str(told_stolen["reason"])
    spec = yaml.safe_load((Path(__file__).parents[1] / "docs" / "asyncapi.yaml").read_text())
    for payload in box1.payloads:  # the rejected acks are as docs/asyncapi.yaml says
        jsonschema.validate(json.loads(payload), spec["components"]["messages"]["ack"]["payload"])
    assert {r["device"] for r in collector.store.recordings()} == {"box2"}
    listed = subprocess.run(
        [*LINEREC, "collector", "quarantine", "--json", "--config", str(tmp_path / "central.toml")],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {(r["device"], r["id"]) for r in rows} == {("box1", junk_id), ("box1", stolen_id)}
    assert len(rows) == 3  # two contents under junk_id, one under stolen_id
    for row in rows:
        assert Path(row["path"]).is_file()
        assert Path(row["path"]).parent == tmp_path / "central" / "quarantine" / "box1"
        assert row["reason"]
    assert not list((tmp_path / "central" / "recordings").glob("box1*"))


@pytest.mark.parametrize(
    "device",
    ["..", ".", "$SYS", "box\u202e1", "x" * 5000, "Box1", "-box", "linerec-collector"],
)
def test_a_topic_naming_no_valid_device_is_refused(
    tmp_path: Path, device: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Where the ACL does not stop them (a plaintext broker, a lax ACL), the collector does."""
    import hashlib

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from broker import Mosquitto
    from linerec.collector.config import load_collector_config
    from linerec.collector.service import Collector
    from linerec.store.keys import keygen

    keygen(tmp_path / "keys")
    broker = Mosquitto(tmp_path).start()
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[collector]\nbroker = "{broker.url}"\nallow_plaintext = true\ndata_dir = "central"\n'
        'key = "keys/collector.key"\n'
    )
    collector = Collector(load_collector_config(config))
    collector.start()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    try:
        assert collector.ready.wait(10)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        data = b"\0" * 100
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.UserProperty = [
            ("offset", "0"),
            ("size", "100"),
            ("sha256", hashlib.sha256(data).hexdigest()),
        ]
        for name in (f"linerec/v1/{device}/upload/{device}-x", f"linerec/v1/{device}/event"):
            payload = data if "upload" in name else event(1)
            client.publish(name, payload, qos=1, properties=properties).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while len(collector.problems) < 2:
            assert time.monotonic() < deadline, collector.problems
            time.sleep(0.02)
    finally:
        client.loop_stop()
        client.disconnect()
        collector.stop()
        broker.stop()
    assert all("is not a device id" in p or "is reserved" in p for p in collector.problems)
    assert all(len(p) < 600 and p.isascii() and p.isprintable() for p in collector.problems)
    kept = [p for p in (tmp_path / "central").rglob("*") if p.is_file()]
    assert all(p.parent == tmp_path / "central" and p.name.startswith("collector.db") for p in kept)
    assert collector.store.db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0
    assert not any(r.exc_info for r in caplog.records)


def test_the_command_line_refuses_what_is_not_a_device_id(tmp_path: Path) -> None:
    from linerec.store.keys import keygen

    keygen(tmp_path / "keys")
    config = tmp_path / "collector.toml"
    config.write_text(
        '[collector]\nbroker = "mqtt://127.0.0.1:1"\nallow_plaintext = true\n'
        'data_dir = "central"\nkey = "keys/collector.key"\n'
    )
    for arguments in (
        ["command", "..", "status"],
        ["hold", "x", "--device", "$SYS"],
        ["quarantine", "--device", "../etc"],
    ):
        out = subprocess.run(
            [*LINEREC, "collector", *arguments, "--config", str(config)],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 2, (arguments, out.stderr)
        assert "is not a device id" in out.stderr
    for device in ("../etc", "Box1", "box1\n"):
        out = subprocess.run(
            [*LINEREC, "collector", "enroll", "--revoke", device, "--site", str(tmp_path / "s")],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 2, (device, out.stderr)
        assert "is not a device id" in out.stderr
        assert not (tmp_path / "s").exists()


@pytest.mark.engines("sqlite")  # schema 0 was SQLite's
def test_recordings_are_found_by_device_and_id_and_an_old_database_is_migrated(
    tmp_path: Path,
) -> None:
    """A database of schema 0 (recordings keyed by id alone) opens with its recordings, keys
    and holds under (device, id); an id two devices share needs DEVICE/ID or --device."""
    db_path = tmp_path / "central" / "collector.db"
    db_path.parent.mkdir()
    old = sqlite3.connect(db_path)
    old.executescript(
        """
        CREATE TABLE events (device TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL,
            received_at REAL NOT NULL, PRIMARY KEY (device, seq));
        CREATE TABLE recordings (id TEXT PRIMARY KEY, device TEXT NOT NULL, seq INTEGER,
            line TEXT, started_at TEXT, duration REAL, state TEXT, caller_number TEXT,
            called_number TEXT, path TEXT NOT NULL, sha256 TEXT NOT NULL,
            received_at REAL NOT NULL);
        CREATE TABLE vault_keys (id TEXT PRIMARY KEY, key BLOB NOT NULL);
        CREATE TABLE holds (id TEXT PRIMARY KEY);
        CREATE TABLE uploads (device TEXT NOT NULL, id TEXT NOT NULL, size INTEGER NOT NULL,
            sha256 TEXT NOT NULL, received TEXT NOT NULL, PRIMARY KEY (device, id));
        INSERT INTO recordings VALUES ('shared', 'box1', 1, 'line1', '2026-01-01T12:00:00+00:00',
            1.0, 'complete', NULL, NULL, '/nowhere', 'aa', 0);
        INSERT INTO vault_keys VALUES ('shared', x'00');
        INSERT INTO holds VALUES ('shared');
        INSERT INTO holds VALUES ('box2-00000009-20260101T120000Z-line1');
        INSERT INTO uploads VALUES ('box1', 'box1-00000002-20260101T120000Z-line1', 100, 'bb',
            '[[0, 10], [20, 30]]');
        """
    )
    old.commit()
    old.close()
    with pytest.raises(SchemaVersionError, match="schema version 0 is older"):
        CollectorStore(tmp_path / "central", db_path)  # refused until migrated
    db = connect(db_path)
    assert migrate(db) == (0, SCHEMA_VERSION)
    db.close()
    store = CollectorStore(tmp_path / "central", db_path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.find("shared")["device"] == "box1"
    assert store.is_held("box1", "shared")
    assert store.is_held("box2", "box2-00000009-20260101T120000Z-line1")
    assert store.db.execute("SELECT device, id FROM vault_keys").fetchall() == [("box1", "shared")]
    assert store.uploads.received("box1", "box1-00000002-20260101T120000Z-line1") == 10
    store.index("box2", "shared", Path("/elsewhere"), "cc", {"seq": 1}, 0.0)
    with pytest.raises(KeyError, match="several devices"):
        store.find("shared")
    assert store.find("box2/shared")["path"] == "/elsewhere"
    assert store.find("shared", "box2")["path"] == "/elsewhere"
    store.db.close()
    config = tmp_path / "collector.toml"
    from linerec.store.keys import keygen

    keygen(tmp_path / "keys")
    config.write_text(
        '[collector]\nbroker = "mqtt://127.0.0.1:1"\nallow_plaintext = true\n'
        'data_dir = "central"\nkey = "keys/collector.key"\n'
    )
    cfg = ["--config", str(config)]
    ambiguous = subprocess.run(
        [*LINEREC, "collector", "delete", "shared", "--reason", "r", *cfg],
        capture_output=True,
        text=True,
    )
    assert ambiguous.returncode == 1
    assert "DEVICE/ID or with --device" in ambiguous.stderr
    deleted = subprocess.run(
        [*LINEREC, "collector", "delete", "shared", "--device", "box2", "--reason", "r", *cfg],
        capture_output=True,
        text=True,
    )
    assert deleted.returncode == 0, deleted.stderr
    held = subprocess.run(
        [*LINEREC, "collector", "delete", "box1/shared", "--reason", "r", *cfg],
        capture_output=True,
        text=True,
    )
    assert held.returncode == 1 and "box1/shared is on legal hold" in held.stderr
    released = subprocess.run(
        [*LINEREC, "collector", "hold", "box1/shared", "--release", *cfg],
        capture_output=True,
        text=True,
    )
    assert released.returncode == 0 and "box1/shared: released" in released.stdout


def test_no_traceback_for_deep_or_huge_json(
    enrolled_site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with (
        RunningCollector(enrolled_site, tmp_path / "central") as collector,
        DeviceLink(enrolled_site, "box1") as box1,
    ):
        for payload in (
            b"[" * 30_000 + b"]" * 30_000,
            b'{"seq": 1' + b"0" * 5000 + b"}",
            b'{"seq": true}',
            b"x" * 100_000,
        ):
            box1.publish("linerec/v1/box1/event", payload)
        box1.publish("linerec/v1/box1/event", event(1))
        box1.wait_ack(kind="events", upto=1)
    assert len(collector.problems) == 4, collector.problems
    assert not any(r.exc_info for r in caplog.records)
    assert collector.store.contiguous_seq("box1") == 1


def _steps(store: CollectorStore, work: Callable[[], object]) -> int:
    """SQLite virtual-machine steps `work` costs (counted, not timed: the same on any machine)."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    store.db.connection.set_progress_handler(count, 100)
    try:
        work()
    finally:
        store.db.connection.set_progress_handler(None, 0)
    return steps[0]


@pytest.mark.engines("sqlite")  # counts SQLite's steps
def test_events_sent_backwards_above_a_hole_cost_the_same_however_many(tmp_path: Path) -> None:
    """A device sends its numbers from high to low above a hole (all within the window): each
    event must cost the collector about as much with 2,000 stored above the hole as with 200,
    or 10,000 such events hold every other device up for minutes."""
    costs = []
    for count in (200, 2000):
        store = CollectorStore(tmp_path / f"data{count}", tmp_path / f"index{count}.db")
        store.db.execute("PRAGMA synchronous=OFF")
        for seq in range(count + 2, 2, -1):
            store.add_event("box1", {"seq": seq, "event": "ringing", "line": "line1"}, 0.0)

        def one_more(store: CollectorStore = store) -> None:
            store.add_event("box1", {"seq": 2, "event": "ringing", "line": "line1"}, 0.0)
            assert store.gaps("box1", limit=1) == [(1, 1)]  # as the collector logs it

        costs.append(_steps(store, one_more))
    assert costs[1] < 2 * costs[0], costs
