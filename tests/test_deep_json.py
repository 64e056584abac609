"""JSON nested thousands of levels deep, sent by a device on any topic the collector reads.

Parsed as it came, such a payload used up the thread's whole recursion budget inside json's
recursive parser: whatever else ran on that thread meanwhile (a garbage collection's
finalizers and weakref callbacks, sys.unraisablehook, logging) found no room left and failed.
That is how tests/test_collector_attack.py's deep-JSON test failed now and then in a long
run: the garbage left by earlier tests was collected while the writer thread was a thousand
levels down. Here a collection is made to happen at every allocation, so the flake is a
certainty, and each collection checks that a call as deep as a finalizer's logging still
fits (`probing_headroom`).

Each such payload must instead be refused at once: one log line naming the topic and the
byte where the nesting goes too deep, no traceback, and what comes after still stored.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import databases
from broker import Mosquitto
from linerec.collector.commands import _Listener
from linerec.collector.config import load_collector_config
from linerec.collector.service import Collector
from linerec.jsonlimit import MAX_DEPTH
from linerec.mqttapi import event_envelope
from linerec.store.format import RecordType, frame
from linerec.store.keys import keygen, load_private, load_public
from linerec.store.seal import b64, wrap_key

HEADROOM = 100  # frames a finalizer that logs may need, wherever a collection finds it
DEEP = 30_000  # levels: far beyond the interpreter's recursion limit


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@contextmanager
def probing_headroom() -> Iterator[list[str]]:
    """While inside: a garbage collection at every allocation, each checking that a call
    HEADROOM frames deep still fits on the thread that made it; yields where it did not."""
    short: list[str] = []
    entered = [0]

    def descend(levels: int) -> int:
        return levels if levels == 0 else descend(levels - 1)

    def probe(phase: str, info: dict[str, int]) -> None:
        if phase != "start":
            return
        entered[0] += 1
        try:
            descend(HEADROOM)
        except RecursionError:
            short.append(threading.current_thread().name)

    def collections() -> int:
        return sum(generation["collections"] for generation in gc.get_stats())

    threshold = gc.get_threshold()
    gc.callbacks.append(probe)
    before = collections()
    gc.set_threshold(1, 10**9, 10**9)  # the youngest generation only: cheap
    try:
        yield short
    finally:
        gc.set_threshold(*threshold)
        after = collections()
        gc.callbacks.remove(probe)
    assert after > before  # the probe did run
    # A collection whose probe could not even be called had less than one frame left.
    short.extend(["(no frame left)"] * max(0, (after - before) - entered[0]))


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


def sealed_event(tmp_path: Path, seq: int, fields: bytes) -> mqtt.MQTTMessage:
    """An event whose sealed fields, once opened with the collector's key, are `fields` as
    they are (not JSON made by json.dumps, which refuses to nest this deep)."""
    clear = {"seq": seq, "device": "box1", "event": "ringing", "line": "line1"}
    event_key = ChaCha20Poly1305.generate_key()
    ciphertext = ChaCha20Poly1305(event_key).encrypt(
        bytes(12), fields, b"linerec-event-v1" + event_envelope(clear)
    )
    recipient = load_public(tmp_path / "keys" / "collector.pub").encryption
    sealed = {"v": 2, "recipients": [wrap_key(event_key, recipient)], "ciphertext": b64(ciphertext)}
    return message("linerec/v1/box1/event", json.dumps({**clear, "sealed": sealed}).encode())


def upload(recording_id: str, data: bytes) -> mqtt.MQTTMessage:
    return message(
        f"linerec/v1/box1/upload/{recording_id}",
        data,
        offset=0,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    keygen(tmp_path / "keys")
    broker = Mosquitto(tmp_path).start()
    (tmp_path / "collector.toml").write_text(
        f'[collector]\nbroker = "{broker.url}"\nallow_plaintext = true\n'
        'data_dir = "central"\nkey = "keys/collector.key"\n'
        + databases.selected.config_line(tmp_path / "central")
    )
    running = Collector(load_collector_config(tmp_path / "collector.toml"))
    running.start()
    try:
        assert running.ready.wait(20)
        yield running
    finally:
        running.stop()
        running.store.db.close()
        broker.stop()


HOSTILE = {
    "event": lambda tmp: message("linerec/v1/box1/event", deep(DEEP)),
    "event in an object": lambda tmp: message(
        "linerec/v1/box1/event", b'{"seq": 1, "at": ' + deep(DEEP) + b"}"
    ),
    "status": lambda tmp: message("linerec/v1/box1/status", deep(8000)),
    "health": lambda tmp: message("linerec/v1/box1/health", b'{"lines": ' + deep(8000) + b"}"),
    # as deep as json.dumps in this thread can make it, to be sealed: the rest of the
    # thread's budget, as the collector's writer would find it
    "sealed fields": lambda tmp: sealed_event(tmp, 1, b'{"n": ' + deep(850) + b"}"),
    "upload header": lambda tmp: upload(
        "box1-00000001-20260101T120000Z-line1", frame(RecordType.HEADER, deep(16_000))
    ),
}


@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize("kind", HOSTILE)
def test_deep_json_is_refused_in_one_line_with_room_to_spare(
    kind: str, collector: Collector, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    hostile = HOSTILE[kind](tmp_path)
    with probing_headroom() as short:
        collector.handle([hostile])
    assert short == [], f"{len(short)} collections found less than {HEADROOM} frames left"
    assert len(collector.problems) == 1, collector.problems
    (problem,) = collector.problems
    assert "\n" not in problem and hostile.topic in problem, problem
    assert f"deeper than {MAX_DEPTH} levels" in problem and "at byte " in problem, problem
    assert not any(record.exc_info for record in caplog.records)
    collector.handle([event(2)])  # what comes after is stored
    assert 2 in [row[0] for row in collector.store.db.execute("SELECT seq FROM events")]


def test_the_command_sender_ignores_deep_json_on_the_devices_topics(tmp_path: Path) -> None:
    """`linerec collector command` reads the device's status and events on paho's network
    thread: an exception there would end that thread, and the command would never be answered."""
    keygen(tmp_path / "keys")
    listener = _Listener("box1", load_private(tmp_path / "keys" / "collector.key"))
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    with probing_headroom() as short:
        listener.on_message(client, None, message("linerec/v1/box1/status", deep(DEEP)))
        listener.on_message(client, None, message("linerec/v1/box1/event", deep(DEEP)))
    assert short == []
    assert listener.last_counter is None and listener.answers == {}
