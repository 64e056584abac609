"""What stays retained on the broker: one status and one health message per device, however
many calls, events, acks and commands went through. Nothing per recording or per call is
retained, so the broker's retained store grows with the fleet, not with the calls (a real
mosquitto; the appliance's real ring and uplink, the real collector)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from calls import record_call, speech, wait_until, write
from linerec.collector.commands import send_command
from streamed import StreamedSite, streamed_site

MARKER = "test/retained-marker"
HEALTH: dict[str, object] = {"ring_fill": 0.1, "faults": [], "lines": []}


def subscriber(site: StreamedSite, on_message: Callable[[mqtt.MQTTMessage], None]) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda client, userdata, message: on_message(message)
    client.connect("127.0.0.1", site.broker.port)
    client.loop_start()
    return client


def retained(site: StreamedSite) -> dict[str, bytes]:
    """Every retained message under linerec/ as a new subscriber gets it. A second
    subscription, to a marker retained last, comes after the first's retained messages on
    the same connection: once it is in, they all are."""
    found: dict[str, bytes] = {}
    done = threading.Event()

    def on_message(message: mqtt.MQTTMessage) -> None:
        if message.topic == MARKER:
            done.set()
        elif message.retain:
            found[message.topic] = message.payload

    client = subscriber(site, on_message)
    try:
        client.publish(MARKER, b"last", qos=1, retain=True).wait_for_publish(10)
        client.subscribe("linerec/#", qos=1)
        client.subscribe(MARKER, qos=1)
        assert done.wait(10), "the marker's retained message never came"
    finally:
        client.loop_stop()
        client.disconnect()
    return found


def test_only_each_devices_status_and_health_are_retained(tmp_path: Path) -> None:
    with streamed_site(tmp_path) as site:
        wait_until(lambda: site.uplink.connected, "the uplink to connect")
        # a call streamed while in progress, then sealed and uploaded; a whole call uploaded
        writer = site.begin()
        write(writer, speech(2.0))
        wait_until(lambda: writer.id in site.in_progress(), "the call to stream")
        writer.seal(ended_by="hang-up")
        record_call(site.ring, 1.0)
        site.outbox.append({"device": "box1", "event": "ringing", "line": "line1"})
        assert site.outbox.flush(10)  # durable first: waiting() leaves out events still queued
        site.uplink.kick()
        wait_until(lambda: site.uplink.waiting() == (0, []), "every event and recording acked")
        # telemetry (seen by a subscriber: the broker has it), and a command the box takes
        health, subscribed = threading.Event(), threading.Event()
        watcher = subscriber(site, lambda message: health.set())
        watcher.on_subscribe = lambda *args: subscribed.set()
        watcher.subscribe("linerec/v1/box1/health", qos=0)
        assert subscribed.wait(10)
        site.uplink.publish_health(HEALTH)
        assert health.wait(10), "the health message never reached the broker"
        watcher.loop_stop()
        watcher.disconnect()
        settings = site.collector.settings
        sent = send_command(
            settings, site.collector.store, "box1", "status", {}, ttl=300.0, timeout=0
        )
        assert sent.outcome == "sent", sent
        wait_until(lambda: site.uplink.commands.last == sent.counter, "the box to take it")

        kept = retained(site)
        assert sorted(kept) == ["linerec/v1/box1/health", "linerec/v1/box1/status"], sorted(kept)
