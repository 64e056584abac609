"""Issue 14: the collector handles what has arrived in batches, one database transaction each
(one commit for many messages), on both engines.

A real mosquitto and a real collector connected to it; the batch is handed to
`Collector.handle` as paho hands messages over, so which messages share a batch is fixed by
the test. What the appliance is told comes back over the broker as signed acks.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import databases
from broker import Mosquitto
from linerec.collector.config import load_collector_config
from linerec.collector.service import Collector
from linerec.mqttapi import verify
from linerec.store.base import RecordingInfo
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
    writer = ring.begin(
        RecordingInfo(
            device_id="box1",
            line="line1",
            label="",
            direction="inbound",
            consent="notice",
            started_at=datetime.now(UTC),
            clock_synchronized=True,
        )
    )
    writer.write((np.random.default_rng(1).normal(0, 3000, 16000)).astype(np.int16))
    entry = writer.seal(ended_by="hang-up")
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
    """A piece naming a recording already stored with other content fails inside the batch's
    transaction: the batch is rolled back and each message done again alone, so the events
    beside it are stored and acknowledged, and the stored recording is untouched."""
    collector, acks = running
    recording_id, data = recording(tmp_path)
    collector.handle([piece(recording_id, data)])
    acks.wait_for({"kind": "recording", "id": recording_id})
    altered = bytes([data[0] ^ 1]) + data[1:]
    collector.handle([event(1), piece(recording_id, altered), event(2)])
    acks.wait_for({"kind": "events", "upto": 2})
    assert any("already stored with other content" in p for p in collector.problems)
    assert collector.store.contiguous_seq("box1") == 2
    (count,) = collector.store.db.execute("SELECT count(*) FROM events").fetchone()
    assert count == 2
    row = collector.store.find(recording_id, "box1")
    assert collector.store.read_recording(recording_id, Path(row["path"]), "box1") == data
    digests = {b["sha256"] for b in acks.bodies if b["kind"] == "recording"}
    assert digests == {hashlib.sha256(data).hexdigest()}  # never acknowledged the altered one
