"""Issue 14: several `linerec collector run` processes on one broker and one data directory.

Real parts throughout: mosquitto, two collector processes (`linerec collector run`) sharing
one database (a SQLite file in WAL mode, or PostgreSQL: each test runs on both) and one
`data_dir`, and appliances running the real ring, outbox and
uplink. Each process has its own MQTT client id ([collector] instance) and joins the one shared
subscription; every write is one transaction, so whichever process gets whichever message,
everything is stored once and the event marks and chains come out the same.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import databases
from broker import Mosquitto
from collectors import (
    Appliance,
    CollectorProcess,
    check_stored_once,
    expected,
    housekeep_after_expiry,
    wait_until_delivered,
)
from linerec.collector.config import default_instance, load_collector_config
from linerec.collector.database import connect
from linerec.errors import ConfigError
from linerec.store.keys import keygen

DEVICES = 4
RECORDINGS = 3  # a device's backlog: recordings of 6 s (two upload pieces each) ...
EVENTS = 120  # ... and events, each with a sealed field

pytestmark = pytest.mark.usefixtures("engine")  # each test on SQLite and on PostgreSQL


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    # The broker's own log says when a client id already connected is taken over.
    log = tmp_path / "mosquitto.log"
    mosquitto = Mosquitto(tmp_path, extra=f"user root\nlog_dest file {log}\nlog_type all\n").start()
    yield mosquitto
    mosquitto.stop()


def site(tmp_path: Path, broker: Mosquitto) -> tuple[Path, list[Appliance]]:
    keygen(tmp_path / "keys")
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[collector]\nbroker = "{broker.url}"\nallow_plaintext = true\ndata_dir = "central"\n'
        'key = "keys/collector.key"\n' + databases.selected.config_line(tmp_path / "central")
    )
    appliances = []
    for index in range(1, DEVICES + 1):
        name = f"box{index}"
        path = tmp_path / f"{name}.toml"
        path.write_text(
            f'[device]\nid = "{name}"\n[store]\ndir = "{name}-ring"\n'
            'recipients = ["keys/collector.pub"]\n'
            f'[uplink]\nbroker = "{broker.url}"\nallow_plaintext = true\nstream = false\n'
        )
        appliances.append(Appliance(path, name))
    return config, appliances


def count(data_dir: Path, table: str) -> int:
    """Rows in a table of the collectors' database (0 while it is not made yet)."""
    location = databases.selected.location(data_dir / "collector.db")
    if isinstance(location, Path) and not location.exists():
        return 0
    db = connect(location)
    try:
        if table not in db.tables():
            return 0
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


def test_two_processes_share_a_backlog_and_a_killed_one_loses_nothing(
    tmp_path: Path, broker: Mosquitto
) -> None:
    config, appliances = site(tmp_path, broker)
    for appliance in appliances:
        for n in range(RECORDINGS):
            appliance.record(6.0)
            for k in range(EVENTS // RECORDINGS):
                appliance.event(f"555{n:03d}{k:04d}")
    total = DEVICES * EVENTS
    first, second = CollectorProcess(config), CollectorProcess(config)
    third = None
    try:
        first.wait_for("collector subscribed")
        second.wait_for("collector subscribed")
        for appliance in appliances:
            appliance.uplink.start()
        deadline = time.monotonic() + 60
        while (done := count(tmp_path / "central", "events")) < total // 5:
            assert time.monotonic() < deadline, f"only {done} of {total} events stored"
            time.sleep(0.02)
        first.kill()  # SIGKILL in the middle of the backlog
        assert done < total
        wait_until_delivered(appliances, timeout=120)  # the other one takes over

        third = CollectorProcess(config)  # the killed one comes back (a new process id)
        third.wait_for("collector subscribed")
        second_log = second.stop()  # ... and now it alone must carry what comes next
        for appliance in appliances:
            appliance.record(6.0)
            for k in range(10):
                appliance.event(f"666{k:04d}")
            appliance.uplink.kick()
        wait_until_delivered(appliances, timeout=120)
    finally:
        for appliance in appliances:
            appliance.uplink.stop()
        logs = [first.stop(), second.stop(), third.stop() if third else ""]
    second_log = logs[1]
    # Each process had its own client id: neither knocked the other off the broker.
    broker_log = (tmp_path / "mosquitto.log").read_text()
    assert "already connected, closing old connection" not in broker_log
    assert "lost its connection" not in second_log, second_log
    assert "lost its connection" not in logs[2], logs[2]
    for log in logs:
        assert "Traceback" not in log and "database is locked" not in log, log
        assert "does not follow on" not in log, log
    assert "stored" in logs[2]  # the rejoined process stored what came after
    # Killed while writing a vault, the first left its temporary file, if it was at that
    # point: housekeeping removes it (only it) once it is as old as an expired upload.
    housekeep_after_expiry(config)
    check_stored_once(tmp_path / "central", expected(appliances))


def test_each_process_has_its_own_client_id(tmp_path: Path) -> None:
    keygen(tmp_path / "keys")
    path = tmp_path / "collector.toml"
    base = (
        '[collector]\nbroker = "mqtt://127.0.0.1:1883"\nallow_plaintext = true\n'
        'data_dir = "central"\nkey = "keys/collector.key"\n'
    )
    path.write_text(base)
    settings = load_collector_config(path)
    assert settings.instance == default_instance()
    assert settings.client_id.startswith("linerec-collector-")
    assert settings.client_id.endswith(f"-{__import__('os').getpid()}")
    path.write_text(base + 'instance = "central-a"\n')
    assert load_collector_config(path).client_id == "linerec-collector-central-a"
    for bad in ('"a b"', '""', '"-x"', "3", '"' + "x" * 65 + '"', '"a/b"'):
        path.write_text(base + f"instance = {bad}\n")
        with pytest.raises(ConfigError, match=r"collector\.instance"):
            load_collector_config(path)


def test_two_writers_at_once_keep_marks_chains_and_uploads_right(tmp_path: Path) -> None:
    """Two stores on one database file, as two processes have them, writing at the same time:
    one takes the odd events, chain links and upload pieces, the other the even ones."""
    import hashlib
    import threading

    from linerec.collector.store import CollectorStore
    from linerec.collector.uploads import Piece

    data_dir = tmp_path / "central"
    database = databases.selected.location(data_dir / "collector.db")
    stores = [CollectorStore(data_dir, database) for _ in range(2)]
    count, piece = 600, 512
    blob = bytes(range(256)) * (count * piece // 256)
    digest = hashlib.sha256(blob).hexdigest()
    heads = [f"h{n}" for n in range(count + 1)]
    wholes: list[int] = []
    start = threading.Barrier(2)

    def write(which: int) -> None:
        store = stores[which]
        start.wait()
        for n in range(1 + which, count + 1, 2):
            store.add_event("box1", {"seq": n, "event": "ringing"}, 0.0)
            with store.transaction():
                store.follow_chain("box1", n, heads[n - 1] if n > 1 else "", heads[n])
            at = (n - 1) * piece
            data = Piece(
                device="box1",
                recording_id="box1-1-20261130T000000Z-line1",
                offset=at,
                size=len(blob),
                sha256=digest,
                data=blob[at : at + piece],
            )
            if store.uploads.add(data, 0.0) is not None:
                wholes.append(n)

    threads = [threading.Thread(target=write, args=(which,)) for which in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    check = CollectorStore(data_dir, database)
    assert check.contiguous_seq("box1") == count  # the mark is not stuck below a hole
    assert check.gaps("box1") == []
    assert len(wholes) == 1  # the upload is found whole once, by one of the two
    assert check.uploads.received("box1", "box1-1-20261130T000000Z-line1") == len(blob)
    assert check.db.execute("SELECT seq FROM chains").fetchall() == [(count,)]
    chain = check.chain("box1")
    assert len(chain) == count and all(link["follows_on"] for link in chain)


# `linerec collector run`, SIGKILLed at the one point between the recording's file being synced
# (vault written, fsynced and renamed into place) and the database transaction that indexes it.
CRASHING = """
import os, signal, sys
from linerec.collector import store
from linerec.cli import main

def crash(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

store.CollectorStore.index = crash
sys.exit(main(["collector", "run", "--config", sys.argv[1]]))
"""


def test_a_crash_between_the_file_sync_and_the_commit_stores_the_recording_once(
    tmp_path: Path, broker: Mosquitto
) -> None:
    import sys

    config, appliances = site(tmp_path, broker)
    box = appliances[0]
    recording_id = box.record(6.0)
    box.event("5550001")
    crashing = CollectorProcess(config, [sys.executable, "-c", CRASHING, str(config)])
    central = tmp_path / "central"
    try:
        crashing.wait_for("collector subscribed")
        box.uplink.start()
        assert crashing.process.wait(30) == -9  # killed at the point
    finally:
        crashing.kill()
    vault = central / "recordings" / "box1" / f"{recording_id}.lrec.vault"
    assert vault.exists()  # synced before the crash ...
    assert count(central, "recordings") == 0  # ... and not committed
    assert count(central, "vault_keys") == 0
    assert box.uplink.waiting()[1] == [recording_id]  # not acknowledged: still on the card
    collector = CollectorProcess(config)
    try:
        collector.wait_for("collector subscribed")
        wait_until_delivered([box], timeout=60)  # the appliance sends it again
    finally:
        box.uplink.stop()
        log = collector.stop()
    assert "Traceback" not in log, log
    check_stored_once(central, expected([box]))


def test_pieces_and_events_sent_again_to_either_process_are_stored_once(
    tmp_path: Path, broker: Mosquitto
) -> None:
    """Everything of one device sent three times over, as fast as it goes: the broker deals
    the copies to both processes at once; each is stored once and every ack agrees."""
    import hashlib
    import json
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from linerec.mqttapi import CHUNK, verify
    from linerec.store.keys import load_public

    config, appliances = site(tmp_path, broker)
    box = appliances[0]
    ids = [box.record(6.0) for _ in range(3)]
    signing = load_public(tmp_path / "keys" / "collector.pub").signing
    acks: list[bytes] = []
    got = threading.Condition()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with got:
            acks.append(bytes(message.payload))
            got.notify_all()

    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.connect("127.0.0.1", broker.port)
    client.subscribe("linerec/v1/box1/ack", qos=1)
    client.loop_start()
    processes = [CollectorProcess(config), CollectorProcess(config)]
    try:
        for process in processes:
            process.wait_for("collector subscribed")
        for _ in range(3):
            for seq in range(1, 41):
                body = {"seq": seq, "device": "box1", "event": "ringing", "line": "line1"}
                client.publish("linerec/v1/box1/event", json.dumps(body), qos=1)
            for recording_id in ids:
                data = box.recordings[recording_id]
                digest = hashlib.sha256(data).hexdigest()
                for offset in range(0, len(data), CHUNK):
                    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                    properties.UserProperty = [
                        ("offset", str(offset)),
                        ("size", str(len(data))),
                        ("sha256", digest),
                    ]
                    client.publish(
                        f"linerec/v1/box1/upload/{recording_id}",
                        data[offset : offset + CHUNK],
                        qos=1,
                        properties=properties,
                    )

        def bodies() -> list[dict[str, object]]:
            return [verify(signing, ack, "ack") for ack in acks]

        deadline = time.monotonic() + 60
        with got:
            while not (
                {b["id"] for b in bodies() if b["kind"] == "recording"} == set(ids)
                and any(b.get("upto") == 40 for b in bodies())
            ):
                assert got.wait(max(deadline - time.monotonic(), 0)), bodies()
    finally:
        client.loop_stop()
        client.disconnect()
        logs = [process.stop() for process in processes]
    for log in logs:  # (events out of order between the two are said, and fill in)
        assert "Traceback" not in log and "does not follow on" not in log, log
        assert "refused" not in log and "quarantined" not in log, log
    recorded = [b for b in bodies() if b["kind"] == "recording"]
    for recording_id in ids:  # every ack for a recording names the same content
        digest = hashlib.sha256(box.recordings[recording_id]).hexdigest()
        assert {b["sha256"] for b in recorded if b["id"] == recording_id} == {digest}
    assert not [b for b in bodies() if b["kind"] == "rejected"]
    box.events = 40
    check_stored_once(tmp_path / "central", expected([box]))
