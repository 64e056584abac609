"""Real messages, caught on a real broker during a whole upload, checked against docs/asyncapi.yaml."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import jsonschema
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from broker import Mosquitto
from linerec.collector.config import load_collector_config
from linerec.collector.service import Collector
from linerec.config import load_config
from linerec.daemon.simulate import example_call, simulate
from linerec.store.keys import keygen

SPEC = yaml.safe_load((Path(__file__).parents[1] / "docs" / "asyncapi.yaml").read_text())


def channel_for(topic: str) -> tuple[str, dict]:
    for name, channel in SPEC["channels"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", name) + "$"
        if re.match(pattern, topic):
            return name, channel
    raise AssertionError(f"{topic}: no channel in docs/asyncapi.yaml")


def message_schema(channel: dict) -> dict:
    operation = channel.get("publish") or channel["subscribe"]
    reference = operation["message"]["$ref"].split("/")[-1]
    return SPEC["components"]["messages"][reference]


def test_every_message_of_an_upload_matches_the_asyncapi_document(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path).start()
    caught: list[mqtt.MQTTMessage] = []
    recording_acked = threading.Event()

    def catch(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        caught.append(message)
        if message.topic.endswith("/ack") and b'"kind":"recording"' in message.payload:
            recording_acked.set()

    spy = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    spy.on_message = catch
    subscribed = threading.Event()
    spy.on_subscribe = lambda *args: subscribed.set()
    spy.connect("127.0.0.1", broker.port)
    spy.subscribe("linerec/#", qos=1)
    spy.loop_start()
    assert subscribed.wait(5)
    try:
        keygen(tmp_path / "keys")
        appliance = tmp_path / "linerec.toml"
        appliance.write_text(
            '[device]\nid = "box1"\n[store]\ndir = "ring"\nrecipients = ["keys/collector.pub"]\n'
            f'[uplink]\nbroker = "{broker.url}"\nallow_plaintext = true\n'
        )
        (tmp_path / "collector.toml").write_text(
            f'[collector]\nbroker = "{broker.url}"\nallow_plaintext = true\ndata_dir = "central"\n'
            'key = "keys/collector.key"\n'
        )
        simulate(
            [example_call("inbound.toml")],
            config=load_config(appliance),
            store_dir=None,
            emit=lambda e: None,
        )
        collector = Collector(load_collector_config(tmp_path / "collector.toml"))
        stop = threading.Event()
        thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
        thread.start()
        assert collector.ready.wait(10)
        flush = subprocess.run(
            [sys.executable, "-m", "linerec.cli", "uplink", "flush", "--config", str(appliance)],
            capture_output=True,
            text=True,
        )
        assert flush.returncode == 0, flush.stderr
        assert recording_acked.wait(5)  # the spy saw the collector's ack go by
        stop.set()
        thread.join(10)
    finally:
        spy.loop_stop()
        spy.disconnect()
        broker.stop()
    seen = set()
    for message in caught:
        name, channel = channel_for(message.topic)
        seen.add(name)
        spec = message_schema(channel)
        if spec.get("contentType") == "application/octet-stream":
            properties = dict(message.properties.UserProperty)
            assert set(properties) == {"offset", "size", "sha256"}
            assert len(message.payload) <= spec["payload"]["maxLength"]
            continue
        jsonschema.validate(json.loads(message.payload), spec["payload"])
        for personal in (b"5551234567", b"JOHN DOE"):  # the broker sees no caller ID
            assert personal not in message.payload, f"{message.topic}: {personal!r} in clear"
    # every channel was exercised (commands and health come from a running daemon:
    # test_uplink.py; streams from a call in progress: test_streaming.py)
    assert seen == set(SPEC["channels"]) - {
        "linerec/v1/{device}/command",
        "linerec/v1/{device}/health",
        "linerec/v1/{device}/stream/{recording}",
    }
