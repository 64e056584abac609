"""The appliance's uplink: events and sealed recordings to the collector, over MQTT 5.

Nothing is dropped while disconnected: events wait in the outbox and recordings in the ring
(the card is the outbox); on every connect the uplink publishes its retained status and sends
again whatever the collector has not acknowledged. A PUBACK from the broker changes nothing
on the card; only the collector's signed ack, sent after its own fsync, does.

Threads: paho's network thread only hands what arrives (acks, commands) to the store's writer
thread (the outbox's, through its queue), which checks them, hashes recordings and syncs
files; paho's thread itself never touches the card. The sender thread publishes, with a
bounded number of messages in flight, only what is durable on the card.

Streaming (`[uplink] stream`, uplink/stream.py): while a recording is open, each chunk goes to
`stream/<id>` as soon as the store has synced it; the store's sync thread only notes how far
the card has it, and the sender reads and publishes. The sealed upload then sends only what
the collector does not hold yet, and only its signed ack of the whole frees the recording.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from linerec.atomic import remove_temps, temp_target
from linerec.broker import Broker
from linerec.codec import RATE
from linerec.ids import recording_id_problem
from linerec.mqttapi import CHUNK, ApiError, make_client, topic, verify
from linerec.store.format import BLOCK, CHUNK_AUDIO_BYTES
from linerec.store.keys import CollectorPublic
from linerec.store.private import private_dir, sync_dir, write_private
from linerec.store.ring import STATE_OPEN, RingStore
from linerec.uplink.commands import Command, CommandGate, Refusal
from linerec.uplink.outbox import EventOutbox
from linerec.uplink.stream import Streams

log = logging.getLogger(__name__)

IN_FLIGHT = 16  # QoS 1 messages published and not yet PUBACKed
# Bytes of a stream the collector may hold beyond what the card has noted: after a power cut
# at most this much is sent again (a write to the card per ~2 s of G.711 a line, not per ack).
NOTE_STREAMED_EVERY = 4 * BLOCK
RESEND_AFTER = 10.0  # seconds without the collector's ack before sending again
FULL_PASS_EVERY = 1.5  # seconds between looks through the outbox and the ring unasked


@dataclass(frozen=True, slots=True, kw_only=True)
class UplinkSettings:
    broker: Broker
    device_id: str
    collector: CollectorPublic
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    stream: bool = True  # send open recordings chunk by chunk as they reach the card


class Uplink:
    def __init__(
        self,
        settings: UplinkSettings,
        ring: RingStore,
        outbox: EventOutbox,
        *,
        on_problem: Callable[[str], None] = lambda message: None,
        on_command: Callable[[Command | Refusal], None] = lambda command: None,
        role: str = "",
    ) -> None:
        self.settings = settings
        # The broker drops an older session with the same client id: a one-off flush beside a
        # running daemon must not kick the daemon off, so each role has its own id.
        self._client_id = f"linerec-{settings.device_id}" + (f"-{role}" if role else "")
        self.ring = ring
        self.outbox = outbox
        self._on_problem = on_problem
        self._on_command = on_command
        self._device = settings.device_id
        self.commands = CommandGate(
            settings.device_id, settings.collector.signing, outbox.dir / "command-counter"
        )
        outbox.on_durable = self.kick  # an event is on the card: it may go now
        self._wake = threading.Condition()
        # What the sender is woken for (under _wake): a stream's chunks and acks come a few
        # times a second a line and need only the streams looked at; anything else (an event,
        # a sealed recording, an ack of a whole, a connect) a look through everything.
        self._full_pass = True
        self._streams_due = False
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._session = 0  # bumped on every connect: what was sent before must go again
        self._sent: dict[str, float] = {}  # what went in this session, and when
        self._rejected: dict[str, str] = {}  # recording id -> sha256 the collector refused
        self._unacked = 0  # QoS 1 publishes the broker has not PUBACKed (under _wake)
        self._chunk = CHUNK
        self.streams = Streams()
        self._held: dict[str, tuple[str, int]] = {}  # id -> (sha256, bytes) the collector holds
        self._remove_cut_files()
        for marker in self._discards_dir().glob("*"):  # opted out before a restart: say so
            if temp_target(marker.name) is None:  # not one still being written (by a flush)
                self.streams.discard(marker.name.removesuffix(".tmp"))  # a torn one counts too
        self._noted: dict[str, int] = {}  # streamed bytes noted on the card (writer thread)
        self._sweep_progress()
        for recording_id, received in self._streamed_on_card().items():
            self.streams.restore(recording_id, received)  # resume there, not from byte 0
            self._noted[recording_id] = received
        if settings.stream:
            ring.on_synced = self._synced
            ring.on_discard = self._discarding
        self._connection = self._load_counter()
        self._save_counter()
        self.client = self._make_client()
        self._sender = threading.Thread(target=self._send_loop, name="uplink", daemon=True)

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        broker = self.settings.broker
        self.client.connect_async(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        self._sender.start()

    def stop(self) -> None:
        """A clean stop: `stopped` in the retained status (the will is for unclean ones); the
        outbox writes every event queued before it stops."""
        # What the collector holds of each stream, to the byte, for the next start.
        self.outbox.submit(functools.partial(self._note_streamed, every=1))
        self.outbox.flush(timeout=10)  # a card that hangs must not hold up the stop for ever
        self._stop.set()
        self.kick()
        if self._connected.is_set():
            info = self.client.publish(
                topic(self._device, "status"), self._status("stopped"), qos=1, retain=True
            )
            info.wait_for_publish(timeout=5)
        self.client.disconnect()
        self.client.loop_stop()
        self.outbox.close()

    def kick(self) -> None:
        """Something new waits (an event, a sealed recording): send it now."""
        with self._wake:
            self._full_pass = True
            self._wake.notify_all()

    def _kick_streams(self) -> None:
        """New bytes of an open recording on the card, room in a stream's window, a discard."""
        with self._wake:
            self._streams_due = True
            self._wake.notify_all()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def publish_status(self) -> None:
        """Answer a status request: the retained status again."""
        self.client.publish(
            topic(self._device, "status"), self._status("online"), qos=1, retain=True
        )

    def publish_health(self, health: dict[str, object]) -> None:
        """Telemetry: the latest is what matters, so it is retained and not queued on the
        card (events and recordings are; this is not where anything is lost)."""
        if self._connected.is_set():
            # How far behind live each line's stream is (seconds on the card only).
            rate = self.ring.codec.bytes_per_sample * RATE * BLOCK / CHUNK_AUDIO_BYTES
            streams = {"stream_lag": self.streams.lag(rate), "stream_skipped": self.streams.skipped}
            body = json.dumps({**health, **streams, "t": time.time()}).encode()
            self.client.publish(topic(self._device, "health"), body, qos=0, retain=True)

    def waiting(self) -> tuple[int, list[str]]:
        """(events, recordings) the collector has not acknowledged yet."""
        return len(self.outbox.pending()), [e.id for e in self.ring.sealed()]

    # -- MQTT ------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        settings = self.settings
        client = make_client(
            self._client_id,
            settings.broker,
            ca=settings.ca,
            cert=settings.cert,
            key=settings.key,
        )
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        self._set_will(client)
        return client

    def _set_will(self, client: mqtt.Client) -> None:
        # The will carries this connection's counter, so a will from an old connection that
        # arrives late cannot mark the device offline after it has reconnected.
        client.will_set(topic(self._device, "status"), self._status("offline"), qos=1, retain=True)

    def _status(self, state: str) -> bytes:
        # last_counter: the highest command counter accepted, so a collector that lost its
        # own count sends above it rather than being refused as a replay.
        return json.dumps(
            {
                "state": state,
                "connection": self._connection,
                "last_counter": self.commands.last,
                "t": time.time(),
            }
        ).encode()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._on_problem(f"broker refused the connection: {reason}")
            return
        client.subscribe([(topic(self._device, "ack"), 1), (topic(self._device, "command"), 1)])
        client.publish(topic(self._device, "status"), self._status("online"), qos=1, retain=True)
        limit = getattr(properties, "MaximumPacketSize", None)
        # Pieces fit the broker's limit (with room for the topic and properties).
        self._chunk = min(CHUNK, max(int(limit) - 1024, 1024)) if limit else CHUNK
        self._session += 1
        self.streams.reconnected()
        self._connected.set()
        log.info("uplink connected to %s:%d", self.settings.broker.host, self.settings.broker.port)
        self.kick()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self._connected.clear()
        # Next connection, next counter: a will from this one must not count against it.
        self._connection += 1
        self.outbox.submit(self._save_counter)  # on the writer thread: no file I/O here
        self._set_will(client)
        with self._wake:  # whatever was in flight is sent again after the reconnect
            self._unacked = 0
            self._wake.notify_all()
        if not self._stop.is_set():
            self._on_problem(f"broker connection lost: {reason}")

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        with self._wake:
            self._unacked = max(self._unacked - 1, 0)
            self._wake.notify_all()
        if reason is not None and reason.is_failure:  # e.g. the ACL: not authorised
            self._on_problem(f"broker refused a publish: {reason}")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # Handed over, nothing else: checking an ack hashes a whole recording and syncs files.
        self.outbox.submit(functools.partial(self._received, message.topic, bytes(message.payload)))

    def _received(self, name: str, payload: bytes) -> None:
        """An ack or a command, on the store's writer thread."""
        where = f"topic {name}"
        wake = self.kick
        if name.endswith("/command"):
            try:
                command = self.commands.check(payload, where)
            except Refusal as refusal:
                self._on_command(refusal)  # refused: reported, nothing changed
            else:
                self.publish_status()  # its new last_counter
                self._on_command(command)
            return
        try:
            ack = verify(self.settings.collector.signing, payload, where)
            if ack.get("device") != self._device:
                raise ApiError(
                    f"{where}: ack for device {ack.get('device')!r}, not {self._device!r}"
                )
            if ack.get("kind") == "events" and isinstance(ack.get("upto"), int):
                self.outbox.acknowledge(ack["upto"])
            elif ack.get("kind") == "streamed" and isinstance(ack.get("received"), int):
                end = ack.get("end")
                room = self.streams.acknowledged(
                    str(ack.get("id")), end if isinstance(end, int) else 0, ack["received"]
                )
                self._note_streamed()
                # Live, a window is seldom full: the sender is woken only if this made room.
                wake = self._kick_streams if room else lambda: None
            elif ack.get("kind") == "discarded" and isinstance(ack.get("id"), str):
                # It names files: only one of ours (a second ack of one is nothing to do).
                if ack["id"] in self.streams.discarded():
                    self.streams.discard_acknowledged(ack["id"])
                    for name in (ack["id"], ack["id"] + ".tmp"):
                        (self._discards_dir() / name).unlink(missing_ok=True)
                    self._forget_progress(ack["id"])
            elif ack.get("kind") == "progress" and isinstance(ack.get("received"), int):
                if ack["received"] == 0:  # the collector lost what it had, streamed or not
                    self.streams.forget(str(ack.get("id")))
                self._save_progress(str(ack.get("id")), str(ack.get("sha256")), ack["received"])
            elif ack.get("kind") == "rejected":
                # The collector will not store this (docs/mqtt-api.md, "Refusals"): it stays
                # on the card, unacknowledged, and is not sent again unchanged by this process.
                if isinstance(ack.get("id"), str):
                    self._rejected[ack["id"]] = str(ack.get("sha256"))
                raise ApiError(
                    f"{where}: the collector refused "
                    f"{ack.get('id') or 'event ' + str(ack.get('seq'))}: {ack.get('reason')}"
                )
            elif ack.get("kind") == "recording" and isinstance(ack.get("id"), str):
                entry = self.ring.entries.get(ack["id"])
                if entry is not None and ack.get("sha256") == _sha256(entry.path):
                    self.ring.acknowledge(ack["id"], payload)
                    self.streams.forget(ack["id"])
                    self._forget_progress(ack["id"])
                elif entry is not None:
                    raise ApiError(f"{where}: ack for {ack['id']} names other content")
            else:
                raise ApiError(f"{where}: not an events or recording ack")
        except (ApiError, OSError, KeyError) as exc:
            log.warning("ignored a message: %s", exc)
            self._on_problem(str(exc))
        wake()

    # -- sending ---------------------------------------------------------------------------

    def _send_loop(self) -> None:
        next_pass = 0.0
        while not self._stop.is_set():
            with self._wake:
                while not (self._full_pass or self._streams_due or self._stop.is_set()):
                    left = next_pass - time.monotonic()
                    if left <= 0:  # now and then unasked: what is due again by time
                        self._full_pass = True
                        break
                    self._wake.wait(timeout=left)
                full = self._full_pass
                self._full_pass = self._streams_due = False
            if self._stop.is_set():
                return
            if full:
                next_pass = time.monotonic() + FULL_PASS_EVERY * (0.7 + 0.6 * random.random())
            if self._connected.is_set():
                try:
                    self._send_pending() if full else self._send_streams()
                except (OSError, RuntimeError) as exc:
                    log.warning("uplink send failed, will retry: %s", exc)
                    with self._wake:
                        self._wake.wait(timeout=1.0)  # not at once again

    def _due(self, key: str) -> bool:
        # Sent in this session and not acknowledged for a while: the collector may not have
        # been subscribed when it went (a broker restart drops what no one subscribed to).
        sent = self._sent.get(key)
        return sent is None or time.monotonic() - sent > RESEND_AFTER

    def _send_pending(self) -> None:
        session = self._session
        self._send_streams()
        for seq, payload in self.outbox.pending():
            key = f"{session}:event:{seq}"
            if self._due(key) and self._publish(topic(self._device, "event"), payload):
                self._sent[key] = time.monotonic()
        for entry in self.ring.sealed():
            self.streams.ended(entry.id)  # sealed or cut: the stream stops, the upload follows
            if entry.id in self._rejected:
                continue
            key = f"{session}:recording:{entry.id}"
            if self._due(key) and self._upload(entry.id, entry.path):
                self._sent[key] = time.monotonic()
        if len(self._sent) > 10_000:  # forget old sessions' keys
            self._sent = {k: v for k, v in self._sent.items() if k.startswith(f"{session}:")}

    def _upload(self, recording_id: str, path: Path) -> bool:
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        chunk = self._chunk
        resume = self._resume_offset(recording_id, digest)  # what the collector already has
        # A streamed recording: the collector holds its beginning; at least the last piece
        # goes, with the size and digest of the whole.
        last = max(len(data) - 1, 0)
        offset = min(max(resume, self.streams.resume_at(recording_id)), last)
        while True:
            self._send_streams()  # a long upload must not hold up the live calls
            # The collector may say, while this goes, that it holds more (what it had of a
            # stream before a restart here): skip what it has.
            held = self._held.get(recording_id)
            if held is not None and held[0] == digest and held[1] > offset:
                offset = min(held[1], last)
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.UserProperty = [
                ("offset", str(offset)),
                ("size", str(len(data))),
                ("sha256", digest),
            ]
            piece = data[offset : offset + chunk]
            if recording_id not in self.ring.entries:
                return False  # it left the card meanwhile (an opt-out): no more of it goes
            if not self._publish(topic(self._device, "upload", recording_id), piece, properties):
                return False
            offset += chunk
            if offset >= len(data):
                return True

    # -- streaming open recordings -------------------------------------------------------------

    def _synced(self, recording_id: str, offset: int) -> None:
        """On the store's sync thread: bytes 0..offset of an open recording are on the card."""
        entry = self.ring.entries.get(recording_id)
        if entry is not None and entry.state == STATE_OPEN:
            self.streams.synced(recording_id, entry.path, entry.line, offset)
            self._kick_streams()

    def _discarding(self, recording_id: str) -> None:
        """On the main loop: a recording is discarded (opt-out). Nothing more of it goes; the
        collector is told to drop what it got, and until it acknowledges that, a marker on
        the card (written by the writer thread) keeps telling it across restarts."""
        self.streams.discard(recording_id)
        self.outbox.submit(functools.partial(self._mark_discarded, recording_id))
        self._kick_streams()

    def _discards_dir(self) -> Path:
        return self.outbox.dir / "discards"

    def _remove_cut_files(self) -> None:
        """What a power cut mid-write left in discards/ and uploads/ is no marker and no note:
        it goes (logged). A marker's was written only once its recording was discarded, so
        that marker is written whole now: the collector must still drop what it got."""
        for temp in remove_temps(self.outbox.dir / "uploads"):
            log.warning("removed %s: a file replacement a power cut or kill cut short", temp)
        directory = self._discards_dir()
        for temp in remove_temps(directory):
            log.warning("removed %s: a file replacement a power cut or kill cut short", temp)
            recording_id = temp_target(temp.name)
            if recording_id and not recording_id_problem(self._device, recording_id):
                write_private(directory / recording_id, b"")
                sync_dir(directory)

    def _mark_discarded(self, recording_id: str) -> None:
        directory = private_dir(self._discards_dir())
        if self.streams.is_discarded(recording_id):  # not acknowledged meanwhile
            write_private(directory / recording_id, b"")
            sync_dir(directory)

    def _send_streams(self) -> None:
        if not self.settings.stream or not self._connected.is_set():
            return
        for recording_id in self.streams.discarded():
            key = f"{self._session}:discard:{recording_id}"
            if self._due(key):
                properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                properties.UserProperty = [("discard", "opted-out")]
                if self._publish(topic(self._device, "stream", recording_id), b"", properties):
                    self._sent[key] = time.monotonic()
        for recording_id in self.streams.open_ids():
            entry = self.ring.entries.get(recording_id)
            if entry is None or entry.state != STATE_OPEN:
                self.streams.ended(recording_id)
        for due in self.streams.due():
            try:
                fd = os.open(due.path, os.O_RDONLY)
            except FileNotFoundError:  # discarded meanwhile
                continue
            try:
                data = os.pread(fd, due.end - due.start, due.start)
            finally:
                os.close(fd)
            if self.streams.is_discarded(due.id) or len(data) != due.end - due.start:
                continue
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.UserProperty = [("offset", str(due.start))]
            if not self._publish(topic(self._device, "stream", due.id), data, properties):
                return
            self.streams.sent(due.id, due.end)

    def _publish(self, name: str, payload: bytes, properties: Properties | None = None) -> bool:
        with self._wake:  # a bounded window: a backlog of days does not flood memory
            while self._unacked >= IN_FLIGHT:
                if not self._connected.is_set() or self._stop.is_set():
                    return False
                self._wake.wait(timeout=0.5)
            self._unacked += 1
        info = self.client.publish(name, payload, qos=1, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            with self._wake:
                self._unacked -= 1
            return False
        return True

    # -- resuming uploads --------------------------------------------------------------------

    def _progress_path(self, recording_id: str) -> Path:
        return self.outbox.dir / "uploads" / f"{recording_id}.json"

    def _save_progress(self, recording_id: str, digest: str, received: int) -> None:
        """The collector has bytes 0..received of this recording, synced: resume there."""
        self._held[recording_id] = (digest, received)
        path = self._progress_path(recording_id)
        private_dir(path.parent)
        write_private(path, json.dumps({"sha256": digest, "received": received}).encode())

    def _note_streamed(self, every: int = NOTE_STREAMED_EVERY) -> None:
        """On the writer thread: keep on the card how much of each stream the collector holds
        (signed `received`), once it has grown by `every` bytes since last noted, so that after
        a restart or a power cut the stream or the sealed upload resumes there."""
        for recording_id, received in self.streams.holdings().items():
            if received - self._noted.get(recording_id, 0) < every or received <= 0:
                continue
            path = self._progress_path(recording_id)
            try:
                if "sha256" in json.loads(path.read_text()):
                    continue  # the sealed upload has begun: its own progress is what counts
            except (OSError, ValueError):
                pass  # none yet (or torn): noted afresh
            private_dir(path.parent)
            write_private(path, json.dumps({"streamed": received}).encode())
            if recording_id not in self._noted:
                sync_dir(path.parent)  # a new name: it must outlive a power cut too
            self._noted[recording_id] = received

    def _sweep_progress(self) -> None:
        """Progress noted for a recording that has left the card (deleted or evicted while
        no uplink ran, or lost) would stay for ever: it goes at start. Only these notes go,
        never a recording; the notes are listed before the ring, so a recording begun in
        between (a daemon beside a one-off flush) is on the card when its note is judged."""
        notes = list((self.outbox.dir / "uploads").glob("*.json"))
        if not notes:
            return
        on_card = self.ring.on_card()
        swept = [path for path in notes if path.stem not in on_card]
        for path in swept:
            path.unlink(missing_ok=True)
        if swept:
            sync_dir(swept[0].parent)

    def _streamed_on_card(self) -> dict[str, int]:
        noted = {}
        for path in (self.outbox.dir / "uploads").glob("*.json"):
            try:
                streamed = json.loads(path.read_text()).get("streamed")
            except (OSError, ValueError, AttributeError):
                continue
            if type(streamed) is int and streamed > 0:
                noted[path.stem] = streamed
        return noted

    def _forget_progress(self, recording_id: str) -> None:
        """Acknowledged whole, or discarded: nothing more of it will be sent."""
        self._progress_path(recording_id).unlink(missing_ok=True)
        self._noted.pop(recording_id, None)

    def _resume_offset(self, recording_id: str, digest: str) -> int:
        try:
            progress = json.loads(self._progress_path(recording_id).read_text())
        except (OSError, ValueError):
            return 0
        if progress.get("sha256") != digest or not isinstance(progress.get("received"), int):
            return 0
        return int(progress["received"]) // self._chunk * self._chunk

    # -- the connection counter ----------------------------------------------------------------

    def _counter_path(self) -> Path:
        return self.outbox.dir / "connection"

    def _load_counter(self) -> int:
        try:
            return int(self._counter_path().read_text()) + 1
        except (OSError, ValueError):
            return 1

    def _save_counter(self) -> None:
        write_private(self._counter_path(), str(self._connection).encode())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
