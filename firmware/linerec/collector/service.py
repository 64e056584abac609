"""The collector: receives events and recordings from appliances and acknowledges them.

It subscribes through an MQTT 5 shared subscription, so several collectors can share the
load. For each event: its sealed fields opened with the collector's key, stored (once), and
the device's events acknowledged up to the highest contiguous sequence number; a gap is
reported. For each piece of a recording: written at its
offset; when the file is whole, checked, synced and indexed (its metadata decrypted with the
collector's key for the index), the recording is acknowledged with a signed ack.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.exceptions import InvalidTag

from linerec.collector.config import CollectorSettings
from linerec.collector.sealed import open_event
from linerec.collector.store import CollectorStore, Piece
from linerec.mqttapi import (
    CHUNK,
    SHARE,
    ApiError,
    make_client,
    parse_topic,
    sign,
    topic,
)
from linerec.store.reader import IntegrityError, decrypt, inspect

log = logging.getLogger(__name__)

RETENTION_EVERY = 3600.0  # seconds between retention sweeps
PROGRESS_EVERY = 8  # pieces between progress acks on a long upload


class Collector:
    def __init__(
        self,
        settings: CollectorSettings,
        *,
        client_id: str = "linerec-collector",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._clock = clock  # wall clock: arrival times, retention
        self.store = CollectorStore(settings.data_dir, settings.database)
        self._lock = threading.Lock()  # paho calls back on one thread; the CLI may read too
        self.ready = threading.Event()
        self.problems: list[str] = []
        self.client = make_client(
            client_id, settings.broker, ca=settings.ca, cert=settings.cert, key=settings.client_key
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def start(self) -> None:
        broker = self.settings.broker
        self.client.connect_async(broker.host, broker.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def run(self, stop: threading.Event) -> None:
        """Until `stop`: receive, and sweep retention at start and every RETENTION_EVERY."""
        self.sweep()  # a collector that restarts often must still delete on time
        self.start()
        try:
            while not stop.wait(timeout=RETENTION_EVERY if self.settings.retention_days else None):
                self.sweep()
        finally:
            self.stop()

    def sweep(self) -> None:
        """Delete what is past `retention_days` (with its call's events), unless on hold."""
        if not self.settings.retention_days:
            return
        with self._lock:
            for gone in self.store.enforce_retention(self.settings.retention_days, self._clock()):
                log.info("deleted %s: past retention", gone)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._problem(f"broker refused the connection: {reason}")
            return
        client.subscribe(
            [(f"{SHARE}/linerec/v1/+/event", 1), (f"{SHARE}/linerec/v1/+/upload/+", 1)]
        )
        log.info("collector connected")

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        if any(reason.is_failure for reason in reasons):
            self._problem(f"broker refused the subscriptions: {reasons}")
            return
        self.ready.set()  # subscribed: from now on nothing published is missed

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            device, rest = parse_topic(message.topic)
            with self._lock:
                if rest == ["event"]:
                    self._event(device, message)
                elif len(rest) == 2 and rest[0] == "upload":
                    self._piece(device, rest[1], message)
                else:
                    raise ApiError(f"{message.topic}: not a topic the collector reads")
        except ApiError as exc:
            self._problem(str(exc))
        except Exception as exc:  # one bad message must not stop the collector
            log.exception("while handling a message on %s", message.topic)
            self._problem(f"{message.topic}: {exc}")

    def _event(self, device: str, message: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(message.payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(f"{message.topic}: not JSON: {exc}") from exc
        if not isinstance(body, dict) or not isinstance(body.get("seq"), int) or body["seq"] < 1:
            raise ApiError(f"{message.topic}: an event needs a positive integer seq")
        self.store.add_event(device, self._open_event(message.topic, body), self._clock())
        gaps = self.store.gaps(device)
        if gaps:
            log.warning("device %s: events %s not received (yet)", device, gaps[:10])
        self._ack(
            device, {"kind": "events", "device": device, "upto": self.store.contiguous_seq(device)}
        )

    def _open_event(self, where: str, body: dict[str, Any]) -> dict[str, Any]:
        """The event with its sealed fields opened by this collector's key. One the key cannot
        open is stored as it came (still sealed), said so, and acknowledged all the same: its
        number must not hold up the events after it."""
        key = self.settings.key
        try:
            return open_event(key, body)
        except KeyError:
            self._problem(
                f"{where}: event {body['seq']}: its fields are not sealed to this collector's "
                f"key (kid {key.kid}): stored sealed"
            )
            return body
        except (InvalidTag, ValueError, TypeError, AttributeError) as exc:
            reason = str(exc) or "altered, or sealed to another key"
            self._problem(
                f"{where}: event {body['seq']}: its sealed fields do not open "
                f"({reason}): stored sealed"
            )
            return body

    def _piece(self, device: str, recording_id: str, message: mqtt.MQTTMessage) -> None:
        props = dict(getattr(message.properties, "UserProperty", []) or [])
        try:
            offset, size, digest = int(props["offset"]), int(props["size"]), str(props["sha256"])
        except (KeyError, ValueError) as exc:
            raise ApiError(
                f"{message.topic}: upload needs offset, size and sha256 user properties"
            ) from exc
        if not 0 <= offset <= size or offset + len(message.payload) > size:
            raise ApiError(
                f"{message.topic}: piece at byte {offset} does not fit a file of {size} bytes"
            )
        stored = self.store.stored(device, recording_id)
        if stored is not None and stored[1] == digest:  # redelivered after we acked: ack again
            self._ack(
                device,
                {"kind": "recording", "device": device, "id": recording_id, "sha256": digest},
            )
            return
        if stored is not None or self.store.recording(recording_id) is not None:
            raise ApiError(f"{message.topic}: {recording_id} is already stored with other content")
        final = self.store.add_piece(
            Piece(
                device=device,
                recording_id=recording_id,
                offset=offset,
                size=size,
                sha256=digest,
                data=bytes(message.payload),
            )
        )
        if final is None:
            received = self.store.received(device, recording_id)
            lost = received == 0 and offset > 0  # what came before is gone (reset): start again
            if lost or (received and (offset // CHUNK) % PROGRESS_EVERY == PROGRESS_EVERY - 1):
                # Synced so far: after an outage the appliance resumes from here.
                self._ack(
                    device,
                    {
                        "kind": "progress",
                        "device": device,
                        "id": recording_id,
                        "sha256": digest,
                        "received": received,
                    },
                )
            return
        facts = self._facts(recording_id, final)
        if "device" in facts and (facts["device"] != device or facts["id"] != recording_id):
            self.store.forget(device, recording_id, final)
            raise ApiError(
                f"{message.topic}: the recording's header names {facts.get('device')!r}/"
                f"{facts.get('id')!r}, not this topic's device and id: not stored"
            )
        self._check_chain(device, recording_id, facts)
        self.store.index(device, recording_id, final, digest, facts, self._clock())
        log.info("recording %s from %s stored (%s)", recording_id, device, facts.get("state"))
        self._ack(
            device, {"kind": "recording", "device": device, "id": recording_id, "sha256": digest}
        )

    def _facts(self, recording_id: str, path: Path) -> dict[str, Any]:
        """What the index keeps of a recording: from its header (no key needed) and, with the
        collector's key, its metadata. One the key cannot open is kept, marked unreadable."""
        sealed = self.store.read_recording(recording_id, path)
        try:
            inspected = inspect(sealed)
        except IntegrityError as exc:
            return {"state": f"damaged: {exc}"}
        header = inspected.header
        facts: dict[str, Any] = {
            "device": header.get("device"),
            "id": header.get("id"),
            "prev": header.get("prev"),
            "hash": inspected.header_hash.hex(),
            "seq": header.get("seq"),
            "line": header.get("line"),
            "started_at": header.get("started_at"),
            "clock_synchronized": header.get("clock_synchronized"),
            "duration": round(inspected.duration, 3),
            "state": inspected.state,
        }
        try:
            metadata = decrypt(sealed, self.settings.key).metadata
        except IntegrityError as exc:
            self._problem(f"{path.name}: stored, but this collector's key cannot open it: {exc}")
            return {**facts, "state": f"unreadable: {exc}"}
        return {
            **facts,
            "caller_number": metadata.get("caller_number"),
            "called_number": metadata.get("called_number"),
        }

    def _check_chain(self, device: str, recording_id: str, facts: dict[str, Any]) -> None:
        """Each device's recordings form a chain (seq, previous header hash): say where not."""
        problem = self.store.follow_chain(
            device, facts.get("seq"), facts.get("prev"), facts.get("hash")
        )
        if problem:
            self._problem(f"device {device}: {recording_id}: {problem}")

    def _ack(self, device: str, body: dict[str, Any]) -> None:
        self.client.publish(topic(device, "ack"), sign(self.settings.key.signing, body), qos=1)

    def _problem(self, message: str) -> None:
        log.warning("%s", message)
        self.problems.append(message)
        del self.problems[:-100]
