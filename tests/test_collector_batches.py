"""Issue 14: the collector handles what has arrived in batches, one database transaction each
(one commit for many messages), on both engines.

A real mosquitto and a real collector connected to it; the batch is handed to
`Collector.handle` as paho hands messages over, so which messages share a batch is fixed by
the test. What the appliance is told comes back over the broker as signed acks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import databases
from broker import Mosquitto
from calls import record_call
from linerec.collector.config import load_collector_config
from linerec.collector.database import connect
from linerec.collector.discards import StreamDiscards
from linerec.collector.service import Collector, WriterDied
from linerec.collector.store import QUARANTINE_KEEP, CollectorStore
from linerec.collector.uploads import STREAMING, Piece
from linerec.collector.vault import BLOCK as VAULT_BLOCK
from linerec.mqttapi import verify
from linerec.store.keys import keygen, load_or_create_identity, load_public
from linerec.store.ring import RingStore

pytestmark = pytest.mark.usefixtures("engine")  # each test on SQLite and on PostgreSQL


class Acks:
    """What box1 is told (signed acks, verified), as it arrives."""

    def __init__(self, broker: Mosquitto, tmp_path: Path) -> None:
        self.signing = load_public(tmp_path / "keys" / "collector.pub").signing
        self.bodies: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe("linerec/v1/box1/ack", qos=1)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self.changed:
            self.bodies.append(verify(self.signing, bytes(message.payload), "ack"))
            self.changed.notify_all()

    def wait_for(self, wanted: dict[str, Any], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not any(wanted.items() <= body.items() for body in self.bodies):
                left = deadline - time.monotonic()
                assert left > 0 and self.changed.wait(left), (wanted, self.bodies)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Collector, Acks]]:
    keygen(tmp_path / "keys")
    broker = Mosquitto(tmp_path).start()
    (tmp_path / "collector.toml").write_text(
        f'[collector]\nbroker = "{broker.url}"\nallow_plaintext = true\n'
        'data_dir = "central"\nkey = "keys/collector.key"\n'
        + databases.selected.config_line(tmp_path / "central")
    )
    collector = Collector(load_collector_config(tmp_path / "collector.toml"))
    acks = Acks(broker, tmp_path)
    collector.start()
    try:
        assert collector.ready.wait(20)
        yield collector, acks
    finally:
        collector.stop()
        collector.store.db.close()
        acks.close()
        broker.stop()


def message(topic: str, payload: bytes, **properties: object) -> mqtt.MQTTMessage:
    """A message as paho hands it to the collector."""
    sent = mqtt.MQTTMessage(topic=topic.encode())
    sent.payload = payload
    sent.properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    sent.properties.UserProperty = [(k, str(v)) for k, v in properties.items()]
    return sent


def event(seq: int) -> mqtt.MQTTMessage:
    body = {"seq": seq, "device": "box1", "event": "ringing", "line": "line1"}
    return message("linerec/v1/box1/event", json.dumps(body).encode())


def recording(tmp_path: Path) -> tuple[str, bytes]:
    ring = RingStore(
        tmp_path / "ring",
        recipients=[load_public(tmp_path / "keys" / "collector.pub")],
        identity=load_or_create_identity(tmp_path / "identity.key"),
        device_id="box1",
    )
    entry = record_call(ring, 2.0, consent="notice", seed=1)
    return entry.id, entry.path.read_bytes()


def piece(recording_id: str, data: bytes) -> mqtt.MQTTMessage:
    return message(
        f"linerec/v1/box1/upload/{recording_id}",
        data,
        offset=0,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def test_a_batch_is_stored_and_acknowledged_together(
    tmp_path: Path, running: tuple[Collector, Acks]
) -> None:
    collector, acks = running
    recording_id, data = recording(tmp_path)
    collector.handle([event(2), piece(recording_id, data), event(1), event(3)])
    acks.wait_for({"kind": "events", "upto": 3})  # out of order within the batch: all here
    acks.wait_for({"kind": "recording", "id": recording_id})
    assert collector.store.contiguous_seq("box1") == 3
    assert collector.store.gaps("box1") == []
    row = collector.store.find(recording_id, "box1")
    assert collector.store.read_recording(recording_id, Path(row["path"]), "box1") == data
    assert collector.problems == []


def test_a_message_that_fails_in_a_batch_costs_the_others_nothing(
    tmp_path: Path, running: tuple[Collector, Acks]
) -> None:
    """A piece naming a recording already stored with other content is refused (the device is
    told), not an error that undoes the batch: the events beside it are stored and
    acknowledged, and the stored recording is untouched."""
    collector, acks = running
    recording_id, data = recording(tmp_path)
    collector.handle([piece(recording_id, data)])
    acks.wait_for({"kind": "recording", "id": recording_id})
    altered = bytes([data[0] ^ 1]) + data[1:]
    collector.handle([event(1), piece(recording_id, altered), event(2)])
    acks.wait_for({"kind": "events", "upto": 2})
    told = {"kind": "rejected", "id": recording_id, "sha256": hashlib.sha256(altered).hexdigest()}
    acks.wait_for(told)
    assert any("already stored with other content" in p for p in collector.problems)
    assert collector.store.contiguous_seq("box1") == 2
    (count,) = collector.store.db.execute("SELECT count(*) FROM events").fetchone()
    assert count == 2
    row = collector.store.find(recording_id, "box1")
    assert collector.store.read_recording(recording_id, Path(row["path"]), "box1") == data
    digests = {b["sha256"] for b in acks.bodies if b["kind"] == "recording"}
    assert digests == {hashlib.sha256(data).hexdigest()}  # never acknowledged the altered one


def test_a_quarantine_in_a_batch_that_fails_keeps_its_file_and_its_reject(
    tmp_path: Path, running: tuple[Collector, Acks]
) -> None:
    """The last piece of an upload that is not a recording (quarantined) shares a batch with
    a piece naming a recording already stored with other content: the quarantined file and
    its row stay together, the device is told, and no stray file is left behind."""
    collector, acks = running
    recording_id, data = recording(tmp_path)
    collector.handle([piece(recording_id, data)])
    acks.wait_for({"kind": "recording", "id": recording_id})
    junk_id = "box1-00000001-20260101T000000Z-line1"  # sorts first: handled first
    junk = bytes(range(256)) * 64
    digest = hashlib.sha256(junk).hexdigest()
    half = len(junk) // 2
    first, last = (
        message(
            f"linerec/v1/box1/upload/{junk_id}",
            junk[start:end],
            offset=start,
            size=len(junk),
            sha256=digest,
        )
        for start, end in ((0, half), (half, len(junk)))
    )
    collector.handle([first])
    altered = bytes([data[0] ^ 1]) + data[1:]
    collector.handle([last, piece(recording_id, altered)])
    acks.wait_for({"kind": "rejected", "id": junk_id, "sha256": digest})
    assert any("already stored with other content" in p for p in collector.problems)
    (kept,) = collector.store.quarantined("box1")
    assert (kept["id"], kept["sha256"], kept["size"]) == (junk_id, digest, len(junk))
    assert Path(kept["path"]).read_bytes() == junk
    incoming = collector.settings.data_dir / "incoming"
    assert not [p for p in incoming.rglob("*") if p.is_file()]
    assert collector.store.uploads.under_way() == []


def test_a_quarantine_undone_leaves_its_files_as_they_were(tmp_path: Path) -> None:
    """A quarantine whose transaction is rolled back moves no file and deletes none: the
    upload is still whole where it was, and the oldest quarantined upload is still kept."""
    store = CollectorStore(tmp_path / "central", databases.selected.location(tmp_path / "c.db"))
    try:

        def whole(n: int) -> tuple[str, str, Path]:
            recording_id = f"box1-{n:08d}-20260101T000000Z-line1"
            junk = f"junk {n}".encode()
            digest = hashlib.sha256(junk).hexdigest()
            part = store.uploads.add(
                Piece(
                    device="box1",
                    recording_id=recording_id,
                    offset=0,
                    size=len(junk),
                    sha256=digest,
                    data=junk,
                ),
                float(n),
            )
            assert part is not None
            return recording_id, digest, part

        for n in range(1, QUARANTINE_KEEP + 1):
            store.quarantine("box1", *whole(n), "damaged", float(n))
        oldest = store.quarantined("box1")[0]
        recording_id, digest, part = whole(QUARANTINE_KEEP + 1)
        with pytest.raises(RuntimeError), store.transaction():
            store.quarantine("box1", recording_id, digest, part, "damaged", 100.0)
            raise RuntimeError("another message in the batch failed")
        assert part.read_bytes() == f"junk {QUARANTINE_KEEP + 1}".encode()
        assert store.uploads.is_under_way("box1", recording_id)
        rows = store.quarantined("box1")
        assert len(rows) == QUARANTINE_KEEP and rows[0] == oldest
        files = sorted((tmp_path / "central" / "quarantine" / "box1").iterdir())
        assert files == sorted(Path(row["path"]) for row in rows)
        # done again, and committed: moved, and the oldest goes
        store.quarantine("box1", recording_id, digest, part, "damaged", 100.0)
        assert not part.exists()
        rows = store.quarantined("box1")
        assert oldest not in rows and rows[-1]["id"] == recording_id
        files = sorted((tmp_path / "central" / "quarantine" / "box1").iterdir())
        assert files == sorted(Path(row["path"]) for row in rows)
    finally:
        store.db.close()


def test_a_part_file_not_yet_committed_survives_another_collectors_housekeeping(
    tmp_path: Path, engine: str
) -> None:
    """A part file whose upload row is not committed yet (a batch still open in another
    process, or undone) is not a stray of a crash: another collector's housekeeping leaves it
    until it is older than the expiry age."""
    where = databases.selected.location(tmp_path / "c.db")
    writer = CollectorStore(tmp_path / "central", where)
    other = CollectorStore(tmp_path / "central", where)
    try:
        data = b"x" * 1000
        digest = hashlib.sha256(data).hexdigest()
        recording_id = "box1-00000001-20260101T000000Z-line1"

        def half(offset: int) -> Piece:
            chunk = data[offset : offset + 500]
            return Piece(
                device="box1",
                recording_id=recording_id,
                offset=offset,
                size=len(data),
                sha256=digest,
                data=chunk,
            )

        part = writer.uploads.part("box1", recording_id)
        if engine == "postgresql":  # SQLite's BEGIN IMMEDIATE keeps the other out meanwhile
            with writer.transaction():
                assert writer.uploads.add(half(0), time.time()) is None
                assert other.uploads.expire(time.time()) == []
                assert part.exists()
            assert writer.uploads.add(half(500), time.time()) == part
            assert part.read_bytes() == data
            writer.uploads.drop("box1", recording_id)
        with pytest.raises(RuntimeError), writer.transaction():
            writer.uploads.add(half(0), time.time())
            raise RuntimeError("another message in the batch failed")
        assert other.uploads.expire(time.time()) == []
        assert part.exists()  # as a batch still open would have left it
        day = other.uploads.limits.expire_after
        os.utime(part, (time.time() - day - 1,) * 2)  # a day old: a crash's
        assert other.uploads.expire(time.time()) == [f"box1/{part.name}"]
        assert not part.exists()
    finally:
        writer.db.close()
        other.db.close()


KILLED_WRITER = """
import sys
from pathlib import Path
from linerec.collector.vault import write_vault
target = Path(sys.argv[1])
write_vault(Path("/dev/stdin"), target, bytes(32), target.parent.name, target.name.split(".")[0])
"""


def killed_while_writing_a_vault(target: Path) -> Path:
    """What a process SIGKILLed in the middle of writing a vault leaves: its temp file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    before = set(target.parent.iterdir())
    held = target.read_bytes() if target.exists() else None
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(target)], stdin=subprocess.PIPE
    )
    try:
        assert writer.stdin is not None
        # Returns once the writer has read nearly all of it, so it is past making its temp
        # file (it reads the recording after that) and in the middle of the vault.
        writer.stdin.write(b"s" * (2 * VAULT_BLOCK + 1))
        writer.stdin.flush()
    finally:
        writer.kill()
        writer.wait(30)
        if writer.stdin is not None:
            writer.stdin.close()
    assert writer.returncode == -signal.SIGKILL
    assert (target.read_bytes() if target.exists() else None) == held  # as it was
    (left,) = set(target.parent.iterdir()) - before
    return left


def test_housekeeping_removes_only_the_vault_temps_a_killed_collector_left(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A collector killed while it wrote a vault leaves its temporary file (encrypted audio,
    under a name no row knows) beside the recordings: housekeeping removes it once it is as
    old as an expired upload (another process may be writing it now), says so, and touches
    nothing else there: no vault, no file whose name is not exactly such a temp's."""
    keygen(tmp_path / "keys")
    (tmp_path / "collector.toml").write_text(
        '[collector]\nbroker = "mqtt://127.0.0.1:1"\nallow_plaintext = true\n'
        'data_dir = "central"\nkey = "keys/collector.key"\n'
        + databases.selected.config_line(tmp_path / "central")
    )
    clock = [2_000_000_000.0]
    collector = Collector(
        load_collector_config(tmp_path / "collector.toml"), clock=lambda: clock[0]
    )
    day = collector.settings.limits.expire_after
    kept_id, other_id = (f"box1-0000000{n}-20260101T000000Z-line1" for n in (1, 2))
    box = tmp_path / "central" / "recordings" / "box1"

    def aged(path: Path, seconds: float) -> Path:
        os.utime(path, (clock[0] - seconds,) * 2, follow_symlinks=False)
        return path

    def temp(target: str, seconds: float) -> Path:
        return aged(killed_while_writing_a_vault(box / target), seconds)

    try:
        part = tmp_path / "sealed.part"
        part.write_bytes(b"a sealed recording")
        vault = aged(collector.store.keep("box1", kept_id, part), 2 * day)  # a real one
        old = [temp(f"{kept_id}.lrec.vault", day + 1), temp(f"{other_id}.v2.lrec.vault", 3 * day)]
        young = temp(f"{other_id}.lrec.vault", day - 60)
        odd = [
            box / f".{kept_id}.lrec.vault",  # no random part
            box / f".{kept_id}.lrec.vault.abc12",  # too short for mkstemp's
            box / f".{kept_id}.lrec.vault.ABCDEFGH",  # characters mkstemp never uses
            box / f"{kept_id}.lrec.vault.abcdefgh",  # no leading dot
            box / f".{kept_id}.lrec.vault.abcdefgh.bak",
            box / f".{kept_id}.lrec.vaulx.abcdefgh",
            box / ".notes.txt.abcdefgh",
            box / ".box2-00000001-20260101T000000Z-line1.lrec.vault.abcdefgh",  # not box1's
            box.parent / f".{kept_id}.lrec.vault.abcdefgh",  # not in a device's directory
        ]
        for path in odd:
            path.write_bytes(b"not ours to remove")
            aged(path, 3 * day)
        directory = box / f".{other_id}.lrec.vault.dir12345"
        directory.mkdir()
        aged(directory, 3 * day)
        link = box / f".{other_id}.lrec.vault.link1234"  # planted: never followed
        link.symlink_to(vault)
        aged(link, 3 * day)
        with caplog.at_level(logging.INFO, logger="linerec.collector"):
            assert collector.housekeeping() == []  # no upload was dropped
        assert not any(path.exists() for path in old)
        for path in old:
            assert f"box1/{path.name}" in caplog.text, caplog.text
        assert young.exists() and f"box1/{young.name}" not in caplog.text
        assert all(path.exists() for path in odd)
        assert directory.is_dir() and link.is_symlink()
        assert collector.store.read_recording(kept_id, vault, "box1") == b"a sealed recording"

        clock[0] += 61  # now the young one is as old as an expired upload too
        collector.housekeeping()
        assert not young.exists()
        assert all(path.exists() for path in [*odd, vault]) and link.is_symlink()
    finally:
        collector.store.db.close()


class _OutageAfter(logging.Handler):
    """Takes the collector's database away as soon as it logs that `topic` failed: the
    steps done alone after that one meet the database gone (SQLite: another process holds
    the write lock; PostgreSQL: the server ends the collector's connection)."""

    def __init__(self, collector: Collector, topic: str) -> None:
        super().__init__()
        self.collector, self.topic = collector, topic
        self.other: sqlite3.Connection | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.topic not in record.getMessage() or self.other is not None:
            return
        db = self.collector.store.db
        if databases.selected.server is None:
            db.connection.execute("PRAGMA busy_timeout = 200")  # not 30 s
            self.other = sqlite3.connect(db.name, isolation_level=None)
            self.other.execute("BEGIN IMMEDIATE")
        else:
            name = db.name.rpartition("/")[2]
            databases.selected.server.admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )

    def end(self) -> None:
        if self.other is not None:
            self.other.execute("ROLLBACK")
            self.other.close()


def test_steps_done_alone_before_the_database_went_away_are_acknowledged(
    tmp_path: Path, running: tuple[Collector, Acks]
) -> None:
    """A batch undone by a message that fails is done again message by message; if the
    database goes away during that, what was already committed is acknowledged all the same,
    and only the messages not handled are counted as turned away."""
    collector, acks = running
    broken = collector.settings.data_dir / "incoming" / "box2"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"")  # a file where box2's uploads go: its piece fails
    box2 = message(
        "linerec/v1/box2/upload/box2-00000001-20260101T000000Z-line1",
        b"abc",
        offset=0,
        size=3,
        sha256=hashlib.sha256(b"abc").hexdigest(),
    )
    box3 = message(
        "linerec/v1/box3/event",
        json.dumps({"seq": 1, "device": "box3", "event": "ringing", "line": "line1"}).encode(),
    )
    outage = _OutageAfter(collector, "linerec/v1/box2/upload")
    logger = logging.getLogger("linerec.collector.service")
    logger.addHandler(outage)
    try:
        collector.handle([event(1), box2, box3])
    finally:
        logger.removeHandler(outage)
        outage.end()
    acks.wait_for({"kind": "events", "upto": 1})  # box1's event was committed
    assert collector.status()["database"] == "unavailable"
    assert collector.status()["not_acknowledged"] == 1  # box3's event only
    assert collector.store.contiguous_seq("box1") == 1


def test_messages_of_a_lost_connection_are_not_pubacked_on_the_next(tmp_path: Path) -> None:
    """Messages queued when the connection to the broker is lost are handled, but not
    PUBACKed on the connection that replaces it: their packet ids belonged to the old one
    (on the new one they would name other messages, or none)."""
    keygen(tmp_path / "keys")
    log_file = tmp_path / "mosquitto.log"
    broker = Mosquitto(
        tmp_path, extra=f"user root\nlog_dest file {log_file}\nlog_type all\n"
    ).start()
    (tmp_path / "collector.toml").write_text(
        f'[collector]\nbroker = "{broker.url}"\nallow_plaintext = true\n'
        'data_dir = "central"\nkey = "keys/collector.key"\n'
        + databases.selected.config_line(tmp_path / "central")
    )
    collector = Collector(load_collector_config(tmp_path / "collector.toml"))
    subscribed = threading.Semaphore(0)
    said = logging.getLogger("linerec.collector.service")
    counter = _Said("collector subscribed", subscribed)
    said.addHandler(counter)
    level = said.level
    said.setLevel(logging.INFO)
    acks = Acks(broker, tmp_path)
    box1 = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    box1.connect("127.0.0.1", broker.port)
    box1.loop_start()
    arrived = threading.Event()
    handed = collector._on_message

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        handed(client, userdata, message)
        arrived.set()

    collector.client.on_message = on_message
    collector.start()
    try:
        assert subscribed.acquire(timeout=20)
        with collector._lock:  # the writer busy: what arrives waits for it
            box1.publish("linerec/v1/box1/event", event(1).payload, qos=1).wait_for_publish(10)
            assert arrived.wait(30)
            # another client with the collector's id: the broker ends the collector's
            # connection, and the collector connects again
            kicker = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=collector.settings.client_id,
                protocol=mqtt.MQTTv5,
            )
            kicker.connect("127.0.0.1", broker.port)
            kicker.loop_start()
            _wait(lambda: not collector.client.is_connected(), "the collector cut off")
            kicker.disconnect()
            kicker.loop_stop()
            assert subscribed.acquire(timeout=30)  # connected and subscribed again
        acks.wait_for({"kind": "events", "upto": 1})  # handled all the same
        box1.publish("linerec/v1/box1/event", event(2).payload, qos=1).wait_for_publish(10)
        acks.wait_for({"kind": "events", "upto": 2})  # what was PUBACKed before it, has been
        name = collector.settings.client_id
        assert _stale_pubacks(log_file.read_text(), name) == []
    finally:
        said.removeHandler(counter)
        said.setLevel(level)
        collector.stop()
        collector.store.db.close()
        box1.loop_stop()
        acks.close()
        broker.stop()


def _stale_pubacks(log: str, client: str) -> list[str]:
    """The broker's log lines of PUBACKs `client` sent for a packet id the broker had not
    sent it on that connection."""
    sent: set[str] = set()
    stale = []
    for line in log.splitlines():
        if "New client connected from" in line and line.split(" as ")[-1].startswith(client):
            sent = set()  # a new connection: its packet ids start afresh
        elif line.split(": ", 1)[-1].startswith(f"Sending PUBLISH to {client} ("):
            sent.add(re.search(r", m(\d+),", line).group(1))  # type: ignore[union-attr]
        elif f"Received PUBACK from {client} (Mid: " in line:
            mid = re.search(r"Mid: (\d+)", line).group(1)  # type: ignore[union-attr]
            if mid not in sent:
                stale.append(line)
            sent.discard(mid)
    return stale


class _Said(logging.Handler):
    """Releases `semaphore` each time a log line says `text`."""

    def __init__(self, text: str, semaphore: threading.Semaphore) -> None:
        super().__init__()
        self.text, self.semaphore = text, semaphore

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.semaphore.release()


def _wait(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Bounded wait on something another thread does."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_run_exits_when_the_writer_thread_dies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A collector whose writer thread has died stores and acknowledges nothing more: run()
    notices, says so in one line, and ends with WriterDied (the command exits non-zero, and
    systemd starts it again) instead of carrying on as if receiving."""
    keygen(tmp_path / "keys")
    broker = Mosquitto(tmp_path).start()
    (tmp_path / "collector.toml").write_text(
        f'[collector]\nbroker = "{broker.url}"\nallow_plaintext = true\n'
        'data_dir = "central"\nkey = "keys/collector.key"\n'
        + databases.selected.config_line(tmp_path / "central")
    )
    collector = Collector(load_collector_config(tmp_path / "collector.toml"))
    stop = threading.Event()
    ended: list[BaseException | None] = []

    def run() -> None:
        try:
            collector.run(stop)
            ended.append(None)
        except BaseException as exc:
            ended.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    try:
        assert collector.ready.wait(20)
        # a fault the writer does not survive: what it takes from its queue is not a message
        collector._inbox.put((collector._connection, cast(mqtt.MQTTMessage, object())))
        runner.join(30)
        assert not runner.is_alive(), "run() carried on with its writer dead"
        assert len(ended) == 1 and isinstance(ended[0], WriterDied), ended
        assert "the writer thread died" in str(ended[0])
        assert any("the writer thread died" in r.getMessage() for r in caplog.records)
    finally:
        stop.set()
        runner.join(30)
        collector.store.db.close()
        broker.stop()


# SQLite: the batch holds the only write lock, so the database cannot go away in its middle.
@pytest.mark.engines("postgresql")
def test_a_recording_kept_in_a_batch_the_database_undoes_leaves_no_file(
    tmp_path: Path, running: tuple[Collector, Acks]
) -> None:
    """A whole recording is encrypted at rest in a batch that then cannot commit (the server
    ends the connection at a later message): its file goes with its key, so no file is left
    that nothing opens, and the recording is stored when it comes again."""
    collector, acks = running
    recording_id, data = recording(tmp_path)
    box3 = message(
        "linerec/v1/box3/event",
        json.dumps({"seq": 1, "device": "box3", "event": "ringing", "line": "line1"}).encode(),
    )
    outage = _OutageAfter(collector, f"recording {recording_id} from box1 stored")
    logger = logging.getLogger("linerec.collector.service")
    logger.addHandler(outage)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        collector.handle([piece(recording_id, data), box3])
    finally:
        logger.removeHandler(outage)
        logger.setLevel(level)
        outage.end()
    assert collector.status()["database"] == "unavailable"
    vaults = collector.settings.data_dir / "recordings"
    assert not [p for p in vaults.rglob("*") if p.is_file()]
    _wait(lambda: _handled(collector, [piece(recording_id, data)]), "the database back")
    acks.wait_for({"kind": "recording", "id": recording_id})
    row = collector.store.find(recording_id, "box1")
    assert collector.store.read_recording(recording_id, Path(row["path"]), "box1") == data


def _handled(collector: Collector, messages: list[mqtt.MQTTMessage]) -> bool:
    collector.handle(messages)
    return collector.status()["database"] == "ok"


def device_event(device: str, seq: int, **fields: object) -> mqtt.MQTTMessage:
    body = {"seq": seq, "device": device, "event": "ringing", "line": "line1", **fields}
    return message(f"linerec/v1/{device}/event", json.dumps(body).encode())


class _Statements:
    """Counts the statements the collector's database is asked to run (each a round trip to
    a server, or a batch of them sent together)."""

    def __init__(self, collector: Collector, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        db = collector.store.db
        for name in ("execute", "execute_all"):
            original = getattr(db, name, None)
            if original is not None:
                monkeypatch.setattr(db, name, self._counted(original))

    def _counted(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(*args, **kwargs)

        return run


def test_a_batch_of_events_costs_a_few_statements_whatever_its_size(
    running: tuple[Collector, Acks], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events of a batch are written a statement per table, not a statement per event:
    60 events of 30 devices cost no more statements than 6 of 3."""
    collector, _ = running

    def cost(devices: int) -> int:
        names = [f"dev{devices}x{d:03d}" for d in range(devices)]
        collector.handle([device_event(name, 1) for name in names])  # each known already
        batch = [device_event(name, seq) for seq in (2, 3) for name in names]
        counter = _Statements(collector, monkeypatch)
        collector.handle(batch)
        monkeypatch.undo()
        assert {collector.store.contiguous_seq(name) for name in names} == {3}
        return counter.count

    small, large = cost(3), cost(30)
    assert large <= small, (small, large)
    assert collector.problems == []


def test_a_batch_of_events_some_stored_before_is_acknowledged_as_before(
    running: tuple[Collector, Acks],
) -> None:
    """Events redelivered beside new ones (the multi-row insert meets rows already there, and
    the same event twice in one batch): the first stored is kept, nothing is stored twice, and
    the mark moves over both."""
    collector, acks = running
    collector.handle([event(1), event(2)])
    acks.wait_for({"kind": "events", "upto": 2})
    again = device_event("box1", 2, event="hung_up")  # other content, same number
    collector.handle([event(1), again, event(3), event(3), event(4)])
    acks.wait_for({"kind": "events", "upto": 4})
    rows = collector.store.db.execute(
        "SELECT seq, body FROM events WHERE device = 'box1' ORDER BY seq"
    ).fetchall()
    assert [int(seq) for seq, _ in rows] == [1, 2, 3, 4]
    assert json.loads(rows[1][1])["event"] == "ringing"  # the first stored is kept
    assert collector.store.contiguous_seq("box1") == 4
    assert collector.problems == []


def test_a_batch_with_an_event_beyond_the_window_refuses_only_that_one(
    running: tuple[Collector, Acks],
) -> None:
    """An event too far beyond the mark shares a batch with events that move the mark: each
    is judged against the mark the ones before it in the batch left, as if it came alone."""
    collector, acks = running
    window = collector.settings.event_seq_window
    collector.handle([event(1), event(window + 1), event(window + 5)])
    # window + 1 is within the window once event 1 is stored; window + 5 is not
    acks.wait_for({"kind": "rejected", "seq": window + 5})
    acks.wait_for({"kind": "events", "upto": 1})
    seqs = [
        int(seq)
        for (seq,) in collector.store.db.execute(
            "SELECT seq FROM events WHERE device = 'box1' ORDER BY seq"
        )
    ]
    assert seqs == [1, window + 1]
    assert [p for p in collector.problems if "beyond the last in order" in p]
    assert collector.store.gaps("box1", limit=1) == [(2, window)]


def test_a_batch_whose_event_insert_fails_is_done_again_message_by_message(
    running: tuple[Collector, Acks],
) -> None:
    """A batch's events written together fail (here: a trigger refusing one device's rows):
    the batch is undone and each message done again alone, so the other devices' events are
    stored and acknowledged, and the refused device's are neither."""
    collector, acks = running
    db = collector.store.db
    if db.engine == "sqlite":
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.device = 'box9' "
            "BEGIN SELECT RAISE(ABORT, 'box9 refused'); END"
        )
    else:
        db.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.device = 'box9' THEN RAISE EXCEPTION 'box9 refused'; END IF; "
            "RETURN NEW; END $$"
        )
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    collector.handle([event(1), device_event("box9", 1), event(2)])
    acks.wait_for({"kind": "events", "upto": 2})
    assert collector.store.contiguous_seq("box1") == 2
    (count,) = db.execute("SELECT count(*) FROM events WHERE device = 'box9'").fetchone()
    assert count == 0
    assert any("box9 refused" in p for p in collector.problems)


def upload_piece(
    device: str, recording_id: str, data: bytes, start: int, end: int
) -> mqtt.MQTTMessage:
    return message(
        f"linerec/v1/{device}/upload/{recording_id}",
        data[start:end],
        offset=start,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _held(collector: Collector, device: str) -> list[tuple[object, ...]]:
    """What the collector holds of a device's uploads under way: rows, ranges, part files."""
    db, uploads = collector.store.db, collector.store.uploads
    held: list[tuple[object, ...]] = []
    for row in uploads.under_way():
        if row["device"] != device:
            continue
        recording_id = str(row["id"])
        ranges = db.execute(
            'SELECT start, "end" FROM upload_ranges WHERE device = ? AND id = ? ORDER BY start',
            (device, recording_id),
        ).fetchall()
        part = uploads.part(device, recording_id).read_bytes()
        held.append((recording_id.split("-", 1)[1], row["size"], row["ranges"], ranges, part))
    return held


def test_pieces_placed_together_leave_what_pieces_placed_alone_leave(
    running: tuple[Collector, Acks],
) -> None:
    """Pieces carrying uploads on are placed together in a batch; beside them a duplicate, a
    piece past a hole, the one filling it, other content under the same id, and a last
    piece making a whole that is not a recording (quarantined). box1 gets them in batches,
    box2 the same one message at a time: both end up holding, quarantining and being told
    the same."""
    collector, acks = running
    first, second, junk = os.urandom(40_000), os.urandom(40_000), bytes(range(256)) * 64
    ids = ("00000002-20260101T000000Z-line1", "00000003-20260101T000000Z-line1")
    script = [
        [(0, first, 0, 8000), (1, junk, 0, 8000)],
        [
            (0, first, 8000, 16000),
            (0, first, 8000, 16000),
            (0, first, 24000, 32000),
            (0, first, 16000, 20000),
            (1, junk, 8000, 12000),
        ],
        [(0, first, 20000, 24000), (0, second, 8000, 16000), (1, junk, 12000, len(junk))],
        [(0, second, 0, 8000), (0, second, 16000, 24000)],
    ]
    for batch in script:
        collector.handle([upload_piece("box1", f"box1-{ids[n]}", d, a, b) for n, d, a, b in batch])
        for n, d, a, b in batch:
            collector.handle([upload_piece("box2", f"box2-{ids[n]}", d, a, b)])
    assert _held(collector, "box1") == _held(collector, "box2")
    assert [h[0] for h in _held(collector, "box1")] == [ids[0]]  # the junk went
    assert _held(collector, "box1")[0][3] == [(0, 24000)]  # second's, from the start
    quarantined = {
        device: [
            (q["id"].split("-", 1)[1], q["sha256"], q["size"])
            for q in collector.store.quarantined(device)
        ]
        for device in ("box1", "box2")
    }
    assert quarantined["box1"] == quarantined["box2"] != []
    acks.wait_for({"kind": "rejected", "id": f"box1-{ids[1]}"})


def test_pieces_carrying_uploads_on_cost_a_few_statements_whatever_their_number(
    running: tuple[Collector, Acks], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of pieces each carrying its upload on from where it is costs a statement per
    table, not statements per piece: 30 uploads' pieces no more than 3 uploads'."""
    collector, _ = running
    data = os.urandom(10_000)

    def cost(uploads: int) -> int:
        names = [f"dev{uploads}x{d:03d}" for d in range(uploads)]
        rid = "00000001-20260101T000000Z-line1"
        collector.handle([upload_piece(n, f"{n}-{rid}", data, 0, 1000) for n in names])
        counter = _Statements(collector, monkeypatch)
        collector.handle([upload_piece(n, f"{n}-{rid}", data, 1000, 3000) for n in names])
        monkeypatch.undo()
        assert {collector.store.uploads.received(n, f"{n}-{rid}") for n in names} == {3000}
        return counter.count

    small, large = cost(3), cost(30)
    assert large <= small, (small, large)
    assert collector.problems == []


def _waits_for_a_lock(watcher: Any, pid: int) -> bool:
    """Whether PostgreSQL backend `pid` is waiting for an advisory lock now."""
    row = watcher.execute(
        "SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE pid = ?", (pid,)
    ).fetchone()
    return tuple(row or ()) == ("Lock", "advisory")


def test_a_discard_done_alone_after_a_failed_batch_holds_the_device_as_a_batch_does(
    tmp_path: Path, running: tuple[Collector, Acks], engine: str
) -> None:
    """A batch undone by a failing message is done again message by message; a stream
    discard done so takes the device's lock as the batch would have. Another collector
    process in the middle of a piece of that stream (the device locked, the discard not yet
    there when it looked) is waited for, and its upload row is dropped, not left to come
    back after the discard."""
    collector, acks = running
    recording_id = "box1-00000001-20260101T000000Z-line1"
    broken = collector.settings.data_dir / "incoming" / "box2"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"")  # a file where box2's uploads go: its piece fails the batch
    failing = message(
        "linerec/v1/box2/upload/box2-00000001-20260101T000000Z-line1",
        b"abc",
        offset=0,
        size=3,
        sha256=hashlib.sha256(b"abc").hexdigest(),
    )
    discard = message(f"linerec/v1/box1/stream/{recording_id}", b"", discard=1)
    streamed = Piece(
        device="box1",
        recording_id=recording_id,
        offset=0,
        size=0,
        sha256=STREAMING,
        data=b"streamed audio",
    )
    where = databases.selected.location(collector.settings.data_dir / "collector.db")
    other = CollectorStore(collector.settings.data_dir, where)
    try:
        if engine == "postgresql":
            (pid,) = collector.store.db.execute("SELECT pg_backend_pid()").fetchone()
            watcher = connect(where)
            handler = threading.Thread(target=collector.handle, args=([failing, discard],))
            try:
                with other.transaction():  # as _take_stream_piece in the other process
                    other.db.lock_key("device box1")
                    assert ("box1", recording_id) not in StreamDiscards(other.db)
                    other.uploads.add(streamed, time.time())
                    handler.start()
                    deadline = time.monotonic() + 30
                    while handler.is_alive() and not _waits_for_a_lock(watcher, pid):
                        assert time.monotonic() < deadline, "neither done nor waiting"
                        handler.join(0.05)
            finally:
                watcher.close()
            handler.join(60)
            assert not handler.is_alive()
        else:  # SQLite's BEGIN IMMEDIATE keeps the other out: its piece came first, whole
            other.uploads.add(streamed, time.time())
            collector.handle([failing, discard])
        acks.wait_for({"kind": "discarded", "id": recording_id})
        assert any("box2" in problem for problem in collector.problems)  # the batch failed
        assert ("box1", recording_id) in StreamDiscards(other.db)
        rows = other.db.execute(
            "SELECT count(*) FROM uploads WHERE device = 'box1' AND id = ?", (recording_id,)
        ).fetchone()
        assert rows == (0,)  # the discarded stream's upload does not come back
        assert other.uploads.received("box1", recording_id) == 0
        assert not other.uploads.part("box1", recording_id).exists()
    finally:
        other.db.close()
