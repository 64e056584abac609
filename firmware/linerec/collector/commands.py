"""Sending a signed command to one device and waiting for its answer.

Before it numbers the command, the sender reads the device's retained status: it carries the
highest counter the device has accepted (`last_counter`), so a collector whose database is new
or restored carries on above it instead of being refused as a replay. The device answers with
an event, `command_done` or `command_refused` (with the refused command's counter and its own
last counter, which is recorded too).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.exceptions import InvalidTag
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from linerec.collector.config import CollectorSettings
from linerec.collector.sealed import open_event
from linerec.collector.store import CollectorStore
from linerec.mqttapi import ApiError, make_client, parse_payload, sign, topic
from linerec.store.keys import CollectorPrivate
from linerec.uplink.commands import MAX_COUNTER, command_body

CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    outcome: str  # "done", "refused", "unanswered", "sent" (not waited for), "failed"
    counter: int  # the command's counter (0 if it was never numbered)
    reason: str = ""


class _Listener:
    """What the broker hands back on the device's status and event topics."""

    def __init__(self, device: str, key: CollectorPrivate) -> None:
        self.device = device
        self.key = key  # the device's answers are events: their fields are sealed to us
        self.changed = threading.Condition()
        self.subscribed: list[int] = []
        self.refused_subscription = ""
        self.last_counter: int | None = None
        self.answers: dict[int, dict[str, Any]] = {}
        self.publish_failure = ""
        self.connected: bool | None = None

    def on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        with self.changed:
            self.connected = not reason.is_failure
            self.refused_subscription = "" if self.connected else f"connection refused: {reason}"
            self.changed.notify_all()

    def on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any
    ) -> None:
        with self.changed:
            if any(reason.is_failure for reason in reasons):
                self.refused_subscription = f"the broker refused the subscription: {reasons[0]}"
            self.subscribed.append(mid)
            self.changed.notify_all()

    def on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any
    ) -> None:
        if reason is not None and reason.is_failure:
            with self.changed:
                self.publish_failure = f"the broker refused the command: {reason}"
                self.changed.notify_all()

    def on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            body = parse_payload(message.topic, bytes(message.payload))
        except ApiError:
            return  # not ours to judge here; the collector reports malformed events
        if not isinstance(body, dict):
            return
        with self.changed:
            if message.topic == topic(self.device, "status"):
                if _counter(body.get("last_counter")) is not None:
                    self.last_counter = body["last_counter"]
            elif body.get("event") in ("command_done", "command_refused"):
                try:
                    body = open_event(self.key, body)
                except (KeyError, InvalidTag, ValueError, TypeError, AttributeError):
                    return  # not sealed to us: the collector reports it
                counter = _counter(body.get("counter"))
                if counter is not None:
                    self.answers[counter] = body
            self.changed.notify_all()

    def wait(self, predicate: Any, timeout: float) -> bool:
        with self.changed:
            return bool(self.changed.wait_for(predicate, timeout=timeout))


def _counter(value: object) -> int | None:
    """A counter a device reports (its own to write): one a device could have accepted."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_COUNTER:
        return value
    return None


def send_command(
    settings: CollectorSettings,
    store: CollectorStore,
    device: str,
    action: str,
    arguments: dict[str, str],
    *,
    ttl: float,
    timeout: float,
) -> Answer:
    listener = _Listener(device, settings.key)
    broker = settings.broker
    client = make_client(
        f"linerec-command-{os.getpid()}",
        broker,
        ca=settings.ca,
        cert=settings.cert,
        key=settings.client_key,
    )
    client.on_connect = listener.on_connect
    client.on_subscribe = listener.on_subscribe
    client.on_publish = listener.on_publish
    client.on_message = listener.on_message
    try:
        client.connect(broker.host, broker.port)
    except OSError as exc:
        return Answer(outcome="failed", counter=0, reason=f"{broker.host}:{broker.port}: {exc}")
    client.loop_start()
    try:
        if not listener.wait(lambda: listener.connected is not None, CONNECT_TIMEOUT):
            return Answer(outcome="failed", counter=0, reason="the broker did not answer")
        if not listener.connected:
            return Answer(outcome="failed", counter=0, reason=listener.refused_subscription)
        # One after the other: the retained status comes right after the first SUBACK, so it
        # has been read once the second is in.
        for name in ("status", "event"):
            mid = client.subscribe(topic(device, name), qos=1)[1]
            if not listener.wait(lambda m=mid: m in listener.subscribed, CONNECT_TIMEOUT):
                return Answer(outcome="failed", counter=0, reason="no SUBACK from the broker")
            if listener.refused_subscription:
                return Answer(outcome="failed", counter=0, reason=listener.refused_subscription)
        if listener.last_counter is not None:
            store.learn_command_counter(device, listener.last_counter)
        counter = store.next_command_counter(device)
        body = command_body(device, counter, action, ttl=ttl, **arguments)
        store.audit(f"command {action}", arguments.get("id"), json.dumps(arguments))
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.MessageExpiryInterval = max(int(ttl), 1)
        info = client.publish(
            topic(device, "command"), sign(settings.key.signing, body), qos=1, properties=properties
        )
        info.wait_for_publish(timeout=CONNECT_TIMEOUT)
        if listener.publish_failure or not info.is_published():
            reason = listener.publish_failure or "the broker did not take it"
            return Answer(outcome="failed", counter=counter, reason=reason)
        if timeout == 0:
            return Answer(outcome="sent", counter=counter)
        if not listener.wait(lambda: counter in listener.answers, timeout):
            return Answer(outcome="unanswered", counter=counter)
        answer = listener.answers[counter]
        if answer["event"] == "command_done":
            return Answer(outcome="done", counter=counter)
        last = _counter(answer.get("last_counter"))
        if last is not None:
            store.learn_command_counter(device, last)  # the next command goes above it
        return Answer(outcome="refused", counter=counter, reason=str(answer.get("reason", "")))
    finally:
        client.loop_stop()
        client.disconnect()
