"""The collector: receives events and recordings from appliances and acknowledges them.

It subscribes through an MQTT 5 shared subscription, so several collectors can share the
load: each process with an MQTT client id of its own (`[collector] instance`), what has
arrived handled in one database transaction (a batch: one commit for many messages) and
acknowledged only once that has committed, so processes sharing one database and data
directory store everything once (docs/scale.md).

For each event: its sealed fields opened with the collector's key, stored (once), and the
device's events acknowledged up to the highest contiguous sequence number; a gap is reported
as ranges. For each piece of a recording: written at its offset; when the file is
whole, checked, synced and indexed (its metadata decrypted with the collector's key for the
index), the recording is acknowledged with a signed ack.

Any one device may be stolen and reprogrammed, so nothing a device sends may cost the others:
topics name a valid device id (linerec.ids) and a recording id of that device; an event
number far beyond the device's last in order, an oversized message or recording, too many
holes are refused (not stored; the device is told with a signed `rejected` ack where it could
act on it); a whole upload that is not a recording of its device is quarantined, not stored
and not acknowledged as stored. Every refusal is one log line naming device, topic and value.

A recording streamed while open (`stream/<id>`) is kept as an upload "in progress" under the
same limits; each piece is synced and acknowledged (`streamed`, with what is held from byte 0)
so the appliance knows where its sealed upload resumes. A stream the appliance discards (the
call was opted out) is dropped at once, and pieces of it that come later are not kept: the
discard is a row in the database (collector/discards.py), so a restart does not forget it.
"""

from __future__ import annotations

import logging
import mmap
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import paho.mqtt.client as mqtt
from cryptography.exceptions import InvalidTag
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from linerec.collector.config import CollectorSettings
from linerec.collector.database import DatabaseUnavailable
from linerec.collector.discards import StreamDiscards
from linerec.collector.sealed import open_event
from linerec.collector.store import CollectorStore
from linerec.collector.uploads import STREAMING, Appends, Piece, UploadRefused
from linerec.ids import recording_id_problem, shown
from linerec.mqttapi import (
    CHUNK,
    SHARE,
    ApiError,
    make_client,
    parse_payload,
    parse_topic,
    shown_topic,
    sign,
    topic,
)
from linerec.store.reader import OPEN, IntegrityError, inspect, read_metadata

log = logging.getLogger(__name__)

RETENTION_EVERY = 3600.0  # seconds between retention sweeps
HOUSEKEEPING_EVERY = 60.0  # seconds between sweeps of unfinished uploads
PROGRESS_EVERY = 8  # pieces between progress acks on a long upload
LEFT_OUT = ("opted-out", "discarded")  # recording_deleted reasons: a number left out on purpose
# How long after it was stored a recording may still be taken back by its device's opt-out (a
# part of the call sealed before the opt-out; the call and its report come within minutes).
OPT_OUT_REACH = 24 * 3600.0
MAX_EVENT_BYTES = 64 * 1024  # an event is a small JSON object; anything larger is refused
# Messages handled in one database transaction at most: what is waiting when the writer is
# free, so a quiet collector answers each at once and a busy one pays one commit for many.
BATCH = 200
RECEIVE_MAXIMUM = 2 * BATCH  # messages the broker may send us ahead of our PUBACKs
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_KIND_ORDER = {"event": 0, "upload": 1, "stream": 1, "status": 2, "health": 2}


@dataclass(frozen=True, slots=True)
class _Event:
    """An event read and checked: stored with the batch's other events, a statement per
    table for them all (CollectorStore.store_events), or alone if the batch is done again."""

    device: str
    where: str
    seq: int
    body: dict[str, Any]  # its sealed fields opened


@dataclass(frozen=True, slots=True)
class _PieceStep:
    """A piece of a recording read and checked: carrying on its upload, placed with the
    batch's others (uploads.Appends), or else on its own (Uploads.add)."""

    piece: Piece
    where: str
    tell: bool  # its first or last piece: a refusal is told


# A message's writes to run in a batch: (device, kind, recording id), arrival, topic, writes.
_Step = tuple[tuple[str, int, str], int, str, Callable[[], None] | _Event | _PieceStep]


class WriterDied(RuntimeError):
    """The writer thread ended on a fault: nothing more would be stored or acknowledged."""


class NotARecording(ValueError):
    """A whole upload that is not a recording of the device that sent it: why."""


class Collector:
    def __init__(
        self,
        settings: CollectorSettings,
        *,
        client_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._clock = clock  # wall clock: arrival times, retention, unfinished uploads
        self.store = CollectorStore(settings.data_dir, settings.database, settings.limits)
        self._lock = threading.Lock()  # paho calls back on one thread; the CLI may read too
        self.ready = threading.Event()
        self.problems: list[str] = []
        # The database not taking writes: since when (None: it does), why, messages turned away.
        self._down_since: float | None = None
        self._down_reason = ""
        self._turned_away = 0
        self.on_status: Callable[[str], None] = lambda text: None  # systemd's STATUS=, say
        self._discarded = StreamDiscards(self.store.db)  # so a late piece does not revive one
        self._acks: list[tuple[str, dict[str, Any]]] = []  # to send once committed
        self._handled = 0  # messages of the batch under way handled (committed or refused)
        self._appends: Appends | None = None  # pieces carrying on uploads, in the batch
        # paho's network thread only queues what arrives; the writer thread handles it
        # (None: stop). Each message is PUBACKed once handled, so the broker holds at most
        # RECEIVE_MAXIMUM of ours in flight and the queue stays that short.
        # Each message with the connection it came on: a PUBACK names a packet id of that
        # connection, so one lost meanwhile is not PUBACKed on the next (the broker deals
        # what it had in flight again, or the appliance sends it again).
        self._inbox: queue.Queue[tuple[int, mqtt.MQTTMessage] | None] = queue.Queue()
        self._connection = 0  # counts connections made: which one is the broker's now
        self._writer: threading.Thread | None = None
        self._writer_fault: BaseException | None = None  # why the writer thread died, if it did
        self._on_writer_died: Callable[[], None] = lambda: None  # run() wakes up to exit
        self.client = make_client(
            client_id or settings.client_id,
            settings.broker,
            ca=settings.ca,
            cert=settings.cert,
            key=settings.client_key,
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.manual_ack_set(True)  # PUBACK once handled (and committed), not on arrival
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect

    def start(self) -> None:
        broker = self.settings.broker
        # A clean session that ends with the connection (session expiry 0): the broker deals
        # a shared subscription's messages only to members connected now, so a process that
        # is killed or cut off leaves no session behind for its share to pile up in (its
        # client id, with a process id in it, may never come back). What was in flight to it
        # unacknowledged comes again from the appliance, which resends until the signed ack
        # (docs/scale.md, "Sessions").
        session = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        session.SessionExpiryInterval = 0
        session.ReceiveMaximum = RECEIVE_MAXIMUM
        self._writer = threading.Thread(
            target=self._write_or_die, name="collector-writer", daemon=True
        )
        self._writer.start()
        self.client.connect_async(
            broker.host, broker.port, keepalive=30, clean_start=True, properties=session
        )
        self.client.loop_start()

    def stop(self) -> None:
        if self._writer is not None:  # what has arrived is handled (and PUBACKed) first
            self._inbox.put(None)
            self._writer.join()
            self._writer = None
        self.client.disconnect()
        self.client.loop_stop()

    def run(self, stop: threading.Event) -> None:
        """Until `stop`: receive, and sweep retention at start and every RETENTION_EVERY.
        WriterDied if the writer thread dies: the process should exit and be restarted
        (systemd's Restart=), not carry on receiving what it can no longer store."""
        self.sweep()  # a collector that restarts often must still delete on time
        self.housekeeping()
        self._on_writer_died = stop.set
        self.start()
        try:
            next_sweep = self._clock() + RETENTION_EVERY
            while not stop.wait(timeout=HOUSEKEEPING_EVERY):
                try:
                    self.housekeeping()
                    if self._clock() >= next_sweep:
                        next_sweep = self._clock() + RETENTION_EVERY
                        self.sweep()
                except DatabaseUnavailable as exc:  # tried again next time round
                    self._database_down(exc)
        finally:
            self.stop()
        if self._writer_fault is not None:
            fault = self._writer_fault
            raise WriterDied(
                f"collector {self.settings.instance}: the writer thread died "
                f"({type(fault).__name__}: {fault}): exiting, to be restarted"
            ) from fault

    def sweep(self) -> None:
        """Delete what is past `retention_days` (with its call's events), unless on hold."""
        if not self.settings.retention_days:
            return
        with self._lock:
            for gone in self.store.enforce_retention(self.settings.retention_days, self._clock()):
                log.info("deleted %s: past retention", gone)

    def housekeeping(self) -> list[str]:
        """Drop uploads left unfinished for longer than the limit, and remove vault files a
        killed process left half written as long; returns 'device/id' of each upload."""
        age = self.settings.limits.expire_after
        with self._lock:
            gone = self.store.uploads.expire(self._clock())
            temps = self.store.remove_vault_temps(self._clock())
        for name in gone:
            log.info("dropped the unfinished upload %s (no piece for %g s)", name, age)
        for name in temps:
            log.info(
                "removed %s: a recording's vault file left half written (unwritten for %g s)",
                name,
                age,
            )
        return gone

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._problem(f"broker refused the connection: {reason}")
            return
        client.subscribe(
            [
                (f"{SHARE}/linerec/v1/+/event", 1),
                (f"{SHARE}/linerec/v1/+/upload/+", 1),
                (f"{SHARE}/linerec/v1/+/stream/+", 1),
                # Not shared: every collector keeps the fleet's latest, retained ones included.
                ("linerec/v1/+/status", 1),
                ("linerec/v1/+/health", 0),
            ]
        )
        self._connection += 1
        log.info("collector %s connected", self.settings.instance)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:  # not our own stop: another client with our id, a broker restart
            log.warning(
                "collector %s lost its connection to the broker (%s): reconnecting",
                self.settings.instance,
                reason,
            )

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        if any(reason.is_failure for reason in reasons):
            self._problem(f"broker refused the subscriptions: {reasons}")
            return
        log.info("collector subscribed: receiving")
        self.ready.set()  # subscribed: from now on nothing published is missed

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._inbox.put((self._connection, message))  # handled on the writer thread, in batches

    def _write_or_die(self) -> None:
        try:
            self._write()
        except BaseException as exc:
            self._writer_fault = exc
            log.critical(
                "collector %s: the writer thread died: nothing more is stored or acknowledged",
                self.settings.instance,
                exc_info=exc,
            )
            self._on_writer_died()

    def _write(self) -> None:
        """The writer thread: whatever has arrived (up to BATCH) in one transaction, then
        each message PUBACKed. A message whose handling failed is PUBACKed all the same: what
        it said was not acknowledged (no signed ack), so its appliance sends it again."""
        stopping = False
        while not stopping:
            first = self._inbox.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < BATCH:
                try:
                    more = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            try:
                self.handle([message for _, message in batch])
            except Exception:  # the writer must go on: nothing of this batch was acknowledged
                log.exception("while handling %d messages", len(batch))
            for connection, message in batch:
                if connection == self._connection:
                    self.client.ack(message.mid, message.qos)

    def handle(self, messages: Sequence[mqtt.MQTTMessage]) -> None:
        """Handle messages in one database transaction (two, if another process was writing
        some of the same devices); the signed acks go once it has committed (if one message
        fails, each is done again in a transaction of its own). Each is first read and
        checked (JSON parsed, sealed fields opened) outside the transaction. Their writes run
        device by device, the batch's devices locked first (Database.lock_keys: one device's
        writes one process at a time): only those no other process holds, then, for the rest,
        waiting in the same order in every process, so no two wait for each other in a
        circle (a deadlock)."""
        steps: list[_Step] = []
        for arrival, message in enumerate(messages):
            where = shown_topic(message.topic)
            try:
                device, rest = parse_topic(message.topic)
                step = self._prepare(device, rest, where, message)
            except ApiError as exc:
                self._problem(str(exc))
                continue
            except Exception as exc:  # one bad message must not stop the others
                log.exception("while reading a message on %s", where)
                self._problem(f"{where}: {exc}")
                continue
            # a device's events first, then each recording's pieces, each in order of arrival
            order = (device, _KIND_ORDER.get(rest[0], 3), rest[-1] if len(rest) == 2 else "")
            steps.append((order, arrival, where, step))
        steps.sort(key=lambda s: (s[0], s[1]))
        if not steps:
            return
        with self._lock:
            self._handled = 0
            try:
                # First the devices no other process is writing now; then, in a transaction
                # of their own, those it was (waiting for it to commit once, not batch after
                # batch: two processes given the same devices would otherwise take turns).
                pending, wait = steps, False
                while pending:
                    pending = self._commit(pending, wait)
                    wait = True
            except DatabaseUnavailable as exc:
                # Not committed, so not acknowledged: the appliances send it all again.
                self._acks.clear()
                self._database_down(exc, len(steps) - self._handled)
                return
            except BaseException:
                self._acks.clear()
                raise
        if self._down_since is not None:
            self._database_back()

    def _commit(self, steps: list[_Step], wait: bool) -> list[_Step]:
        """Run `steps` in one transaction, their devices locked first, and send their acks
        once it has committed. Unless `wait`, a device another process holds is left for
        later: its steps are returned. If one step fails, the transaction is undone
        and each step is done again alone, in a transaction of its own, as if it came alone."""
        later: list[_Step] = []
        try:
            with self.store.transaction():
                devices = dict.fromkeys(order[0] for order, _, _, _ in steps)  # in their order
                held = self.store.db.lock_keys([f"device {d}" for d in devices], wait=wait)
                now = [s for s in steps if f"device {s[0][0]}" in held]
                later = [s for s in steps if f"device {s[0][0]}" not in held]
                self._run_together(now)
        except DatabaseUnavailable:
            raise
        except Exception:
            self._acks.clear()
            for order, _, where, step in steps:
                # each step's acks go once it has committed: the database going away at a
                # later one does not take back what is stored
                self._step(order[0], where, step)
                self._send_acks()
                self._handled += 1
            return []
        self._send_acks()
        self._handled += len(steps) - len(later)
        return later

    def _run_together(self, steps: list[_Step]) -> None:
        """Steps of devices this transaction holds, in order. Every event of the batch is
        stored together where the first comes (each device's still before its other messages,
        as sorted); pieces that carry on their upload are placed together (uploads.Appends),
        read at the first and written before the commit."""
        events = [step for _, _, _, step in steps if isinstance(step, _Event)]
        # A device whose upload an event drops (left out on purpose): its pieces one by one.
        dropping = {event.device for event in events if _leaves_out(event.body)}
        pieces = [
            (step.piece.device, step.piece.recording_id, step.piece.sha256)
            for _, _, _, step in steps
            if isinstance(step, _PieceStep) and step.piece.device not in dropping
        ]
        try:
            for order, _, _, step in steps:
                if isinstance(step, _Event):
                    if step is events[0]:
                        self._store_events(events)
                elif isinstance(step, _PieceStep):
                    if self._appends is None:
                        self._appends = Appends(self.store.uploads, pieces)
                    self._take_piece(step.piece, step.where, step.tell)
                else:
                    if self._appends is not None:  # it may write the device's uploads
                        self._appends.forget(order[0])
                    step()
            if self._appends is not None:
                self._appends.flush()
        finally:
            self._appends = None

    def _step(
        self, device: str, where: str, step: Callable[[], None] | _Event | _PieceStep
    ) -> None:
        """One message's writes in a transaction of its own (said, and undone, if they fail),
        `device` locked as in a batch: a stream discard done here must not slip between
        another process's look at the discards and its write of that stream's upload."""
        try:
            with self._writing(device):
                if isinstance(step, _Event):
                    self._store_events([step])
                elif isinstance(step, _PieceStep):
                    self._take_piece(step.piece, step.where, step.tell)
                else:
                    step()
        except DatabaseUnavailable:
            raise
        except ApiError as exc:
            self._problem(str(exc))
        except Exception as exc:  # one bad message must not stop the collector
            log.exception("while handling a message on %s", where)
            self._problem(f"{where}: {exc}")

    def _prepare(
        self, device: str, rest: list[str], where: str, message: mqtt.MQTTMessage
    ) -> Callable[[], None] | _Event | _PieceStep:
        """A message read and checked (ApiError if it is not acceptable): its writes, to run
        inside the batch's transaction."""
        if rest == ["event"]:
            return self._event(device, where, bytes(message.payload))
        if len(rest) == 2 and rest[0] == "upload":
            return self._piece(device, rest[1], where, message)
        if len(rest) == 2 and rest[0] == "stream":
            return self._stream(device, rest[1], where, message)
        if rest in (["status"], ["health"]):
            return self._fleet(device, rest[0], where, bytes(message.payload))
        raise ApiError(f"{where}: not a topic the collector reads")

    @contextmanager
    def _writing(self, device: str) -> Iterator[None]:
        """One message's writes in one transaction (Database.transaction), its device locked
        (Database.lock_key) as a batch locks its devices: another collector process writing
        that device waits, or is waited for, but never writes in between. Acks queued inside
        go out only once it is committed; if it is not, they never go, and the appliance
        sends again."""
        queued = len(self._acks)
        try:
            with self.store.transaction():
                self.store.db.lock_key(f"device {device}")
                yield
        except BaseException:
            del self._acks[queued:]
            raise

    def _send_acks(self) -> None:
        acks, self._acks = self._acks, []
        for device, body in acks:
            self.client.publish(topic(device, "ack"), sign(self.settings.key.signing, body), qos=1)

    # -- the database going away -------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What this collector says of itself: whether its database takes writes now (if not:
        since when, why, and how many messages it has turned away unacknowledged)."""
        return {
            "database": "ok" if self._down_since is None else "unavailable",
            "name": self.store.db.name,
            "problem": self._down_reason or None,
            "since": self._down_since,
            "not_acknowledged": self._turned_away,
        }

    def _database_down(self, exc: DatabaseUnavailable, messages: int = 1) -> None:
        """Said once an outage (one line, no traceback); each message after it is turned away
        unacknowledged, silently."""
        self._turned_away += messages
        if self._down_since is not None:
            return
        self._down_since = self._clock()
        self._down_reason = f"database unavailable: {exc}"
        self._problem(
            f"{self._down_reason}: not acknowledging until it is back (the appliances keep "
            "what they sent and send it again)"
        )
        self.on_status(f"{self._down_reason}: not acknowledging")

    def _database_back(self) -> None:
        """The last message went through: unless the database still does not answer, the
        outage is over (what was turned away comes again as the appliances resend)."""
        try:
            self.store.db.execute("SELECT 1").fetchone()
        except DatabaseUnavailable:
            return
        assert self._down_since is not None
        log.info(
            "database %s is back after %.0f s (%d messages not acknowledged meanwhile): "
            "catching up as the appliances send them again",
            self.store.db.name,
            self._clock() - self._down_since,
            self._turned_away,
        )
        self._down_since, self._down_reason, self._turned_away = None, "", 0
        self.on_status("receiving")

    def _fleet(self, device: str, kind: str, where: str, payload: bytes) -> Callable[[], None]:
        """Keep a device's latest status or health for the console's fleet page."""
        from linerec.collector.fleet import parse_health, parse_status

        body = (parse_status if kind == "status" else parse_health)(where, payload)
        return lambda: self.store.keep_status(device, kind, body, self._clock())

    # -- events ------------------------------------------------------------------------------

    def _event(self, device: str, where: str, payload: bytes) -> _Event:
        if len(payload) > MAX_EVENT_BYTES:
            raise ApiError(
                f"{where}: an event of {len(payload)} bytes is over the limit of "
                f"{MAX_EVENT_BYTES}: not stored"
            )
        body = parse_payload(where, payload)
        seq = body.get("seq") if isinstance(body, dict) else None
        if type(seq) is not int or seq < 1:  # not bool: True is an int to Python
            raise ApiError(f"{where}: an event needs a positive integer seq")
        opened = self._open_event(where, body)  # outside the transaction: others may write
        return _Event(device, where, seq, opened)

    def _store_events(self, events: list[_Event]) -> None:
        """Store events (together: CollectorStore.store_events) and acknowledge each device's
        up to its mark after them (once a batch, unless the mark moved between its events); a
        gap is said once a device and batch."""
        window = self.settings.event_seq_window
        marks = self.store.store_events(
            [(event.device, event.body) for event in events], self._clock(), window=window
        )
        acked: dict[str, int] = {}
        gapped: set[str] = set()
        for event, upto in zip(events, marks, strict=True):
            device, opened = event.device, event.body
            if upto is None:
                reason = (
                    f"event seq {shown(str(event.seq), 24)} is more than {window} beyond the "
                    f"last in order ({self.store.contiguous_seq(device)}) "
                    "([collector] event_seq_window)"
                )
                self._problem(f"device {device}: {event.where}: {reason}: refused, not stored")
                self._ack(
                    device,
                    {"kind": "rejected", "device": device, "seq": event.seq, "reason": reason},
                )
                continue
            if _leaves_out(opened):
                if not isinstance(opened.get("id"), str):
                    self._left_out(device, opened)
                elif self._take_back(device, opened):  # what was streamed or stored goes too
                    self._drop_stream(device, opened["id"])
                    self._left_out(device, opened)
            if event.seq > upto and device not in gapped:
                gapped.add(device)
                runs = self.store.gaps(device, limit=1)  # the first: found by index seeks alone
                log.warning(
                    "device %s: events %s not received (yet)",
                    device,
                    ", ".join(f"{first}..{last}" for first, last in runs),
                )
            if acked.get(device) != upto:
                acked[device] = upto
                self._ack(device, {"kind": "events", "device": device, "upto": upto})

    def _take_back(self, device: str, body: dict[str, Any]) -> bool:
        """A part of an opted-out call that was sealed before the opt-out (a stall or a store
        error split the call) and stored here: crypto-shredded like any deletion, logged as
        the device's. Not one on legal hold, nor one stored longer ago than `OPT_OUT_REACH`
        (a stolen box must not reach back into what it delivered long ago), nor one the event
        names by its id but not by its chain link (`recording_seq`, `header_hash`): a buggy
        or stolen box must not shred another recording by naming it. False if the event is
        refused for that: then nothing of it is done, its number not linked as left out."""
        recording_id, reason = str(body["id"]), str(body["reason"])
        row = self.store.db.execute(
            "SELECT r.received_at, r.seq, l.head FROM recordings AS r "
            "LEFT JOIN chain_links AS l ON l.device = r.device AND l.seq = r.seq "
            "WHERE r.device = ? AND r.id = ?",
            (device, recording_id),
        ).fetchone()
        if row is None:
            return True
        said = f"device {device}: {recording_id} is said to be {reason}"
        differs = _link_differs(body, seq=row[1], head=row[2])
        if differs:
            self._problem(f"{said}, but its {differs}: refused, kept")
            return False
        if self._clock() - float(row[0]) > OPT_OUT_REACH:
            self._problem(
                f"{said}, but it was stored more than {OPT_OUT_REACH / 3600:g} h ago: kept"
            )
            return True
        try:
            self.store.delete(recording_id, reason, device, who=f"device {device}")
        except PermissionError as exc:  # on legal hold: kept, and never said deleted
            self._problem(f"{said}: kept: {exc}")
            return True
        except KeyError:
            return True  # another collector process took it back first
        log.info("device %s: %s deleted: %s", device, recording_id, reason)
        return True

    def _left_out(self, device: str, body: dict[str, Any]) -> None:
        """A recording the device discarded as it was written (opt-out): its number is linked
        into the chain as deliberately absent, so it is never reported as not arrived."""
        problem = self.store.absent(
            device,
            body.get("recording_seq"),  # `seq` is the event's own number
            body.get("id"),
            str(body["reason"]),
            body.get("prev"),
            body.get("header_hash"),
        )
        if problem:
            self._problem(f"device {device}: {body.get('id')}: {problem}")
        else:
            log.info(
                "device %s: recording %s is %s: left out of the chain on purpose",
                device,
                body.get("recording_seq"),
                body["reason"],
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

    # -- recordings --------------------------------------------------------------------------

    def _piece(
        self, device: str, recording_id: str, where: str, message: mqtt.MQTTMessage
    ) -> _PieceStep:
        props = dict(getattr(message.properties, "UserProperty", []) or [])
        try:
            offset, size, digest = int(props["offset"]), int(props["size"]), str(props["sha256"])
        except (KeyError, ValueError) as exc:
            raise ApiError(
                f"{where}: upload needs offset, size and sha256 user properties"
            ) from exc
        payload = bytes(message.payload)
        if not _SHA256.match(digest):
            raise ApiError(f"{where}: sha256 {shown(digest, 70)} is not 64 lowercase hex digits")
        if len(payload) > CHUNK:
            raise ApiError(
                f"{where}: a piece of {len(payload)} bytes is over the limit of {CHUNK}: not stored"
            )
        if not 0 <= offset <= size or offset + len(payload) > size:
            raise ApiError(f"{where}: piece at byte {offset} does not fit a file of {size} bytes")
        problem = recording_id_problem(device, recording_id)
        if problem:
            raise ApiError(f"{where}: {problem}: not stored")
        # Told (again) at most twice an upload: at its first and at its last piece.
        tell = offset == 0 or offset + len(payload) == size
        piece = Piece(
            device=device,
            recording_id=recording_id,
            offset=offset,
            size=size,
            sha256=digest,
            data=payload,
        )
        return _PieceStep(piece, where, tell)  # whichever process has it

    def _take_piece(self, piece: Piece, where: str, tell: bool) -> None:
        device, recording_id, digest = piece.device, piece.recording_id, piece.sha256
        if self._appends is not None:  # a left-out recording's upload is dropped: never here
            received = self._appends.take(piece, self._clock())
            if received is not None:
                self._progress(device, recording_id, digest, piece.offset, received=received)
                return
            self._appends.forget(device)  # placed below: its uploads read afresh from now on
        if (device, recording_id) in self._discarded:
            return  # late: the device left it out (its call was opted out)
        stored, quarantined, streamed = self.store.arrival(device, recording_id, digest)
        if stored == digest:  # redelivered after we acked: ack again
            self._ack(
                device,
                {"kind": "recording", "device": device, "id": recording_id, "sha256": digest},
            )
            return
        if stored is not None:
            # Refused, nothing written: not an error that would undo the rest of the batch
            # (any device could otherwise roll back everyone's messages with one of its own).
            reason = f"{recording_id} is already stored with other content"
            self._problem(f"device {device}: {where}: {reason}: refused, not stored")
            if tell:
                self._reject(device, recording_id, digest, reason)
            return
        if quarantined is not None:
            if tell:
                self._reject(device, recording_id, digest, f"quarantined: {quarantined}")
            return
        try:
            part = self.store.uploads.add(piece, self._clock())
        except UploadRefused as exc:
            self._problem(f"device {device}: {where}: {exc}: refused, not stored")
            if tell:
                self._reject(device, recording_id, digest, str(exc))
            return
        if part is None:
            self._progress(device, recording_id, digest, piece.offset, streamed)
            return
        try:
            facts = self._facts(device, recording_id, part)
        except NotARecording as exc:
            self.store.quarantine(device, recording_id, digest, part, str(exc), self._clock())
            self._problem(f"{where}: {exc}: not stored")
            self._reject(device, recording_id, digest, f"quarantined: {exc}")
            return
        final = self.store.keep(device, recording_id, part)
        self._check_chain(device, recording_id, facts)
        self.store.index(device, recording_id, final, digest, facts, self._clock())
        log.info("recording %s from %s stored (%s)", recording_id, device, facts.get("state"))
        self._ack(
            device, {"kind": "recording", "device": device, "id": recording_id, "sha256": digest}
        )

    def _stream(
        self, device: str, recording_id: str, where: str, message: mqtt.MQTTMessage
    ) -> Callable[[], None]:
        """A piece of a recording still open, or word that it was discarded (opted out)."""
        props = dict(getattr(message.properties, "UserProperty", []) or [])
        problem = recording_id_problem(device, recording_id)
        if problem:
            raise ApiError(f"{where}: {problem}: not stored")
        if "discard" in props:
            return lambda: self._discard_stream(device, recording_id)
        try:
            offset = int(props["offset"])
        except (KeyError, ValueError) as exc:
            raise ApiError(f"{where}: a stream piece needs an offset user property") from exc
        payload = bytes(message.payload)
        if len(payload) > CHUNK:
            raise ApiError(
                f"{where}: a piece of {len(payload)} bytes is over the limit of {CHUNK}: not stored"
            )
        if offset < 0:
            raise ApiError(f"{where}: piece at byte {offset}: not stored")
        return lambda: self._take_stream_piece(device, recording_id, where, offset, payload)

    def _take_stream_piece(
        self, device: str, recording_id: str, where: str, offset: int, payload: bytes
    ) -> None:
        if (device, recording_id) in self._discarded:
            return  # late: the call was opted out
        if self.store.stored(device, recording_id) is not None:
            return  # the sealed whole is here already
        piece = Piece(
            device=device,
            recording_id=recording_id,
            offset=offset,
            size=0,
            sha256=STREAMING,
            data=payload,
        )
        try:
            self.store.uploads.add(piece, self._clock())
        except UploadRefused as exc:
            self._problem(f"device {device}: {where}: {exc}: refused, not stored")
            return
        self.store.uploads.sync(device, recording_id)  # synced before it is said
        self._ack(
            device,
            {
                "kind": "streamed",
                "device": device,
                "id": recording_id,
                "end": offset + len(payload),
                "received": self.store.uploads.received(device, recording_id),
            },
        )

    def _discard_stream(self, device: str, recording_id: str) -> None:
        self._drop_stream(device, recording_id)
        log.info("device %s: %s discarded while open (opted out)", device, recording_id)
        self._ack(device, {"kind": "discarded", "device": device, "id": recording_id})

    def _drop_stream(self, device: str, recording_id: str) -> None:
        self._discarded.add(device, recording_id, self._clock())
        if self.store.stored(device, recording_id) is None:
            self.store.uploads.drop(device, recording_id)

    def _progress(
        self,
        device: str,
        recording_id: str,
        digest: str,
        offset: int,
        streamed: bool = False,
        *,
        received: int | None = None,
    ) -> None:
        """Tell the appliance what is held of its upload where it needs to know (`received`:
        the bytes held from byte 0, if known already)."""
        if received is None:
            received = self.store.uploads.received(device, recording_id)
        lost = received == 0 and offset > 0  # what came before is gone (reset): start again
        # The first piece of the sealed whole of a stream: say at once what is held (after a
        # restart the appliance does not know, and would send it all again).
        adopted = streamed and received > offset
        every = (offset // CHUNK) % PROGRESS_EVERY == PROGRESS_EVERY - 1
        if lost or adopted or (received and every):
            if received:
                self.store.uploads.sync(device, recording_id)  # synced before it is said
            # After an outage the appliance resumes from here.
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

    def _facts(self, device: str, recording_id: str, part: Path) -> dict[str, Any]:
        """What the index keeps of a recording: from its header (no key needed) and, with the
        collector's key, its metadata. NotARecording if it is not a sealed recording of this
        device under this id; one the key cannot open is kept, marked unreadable."""
        if part.stat().st_size == 0:
            raise NotARecording("damaged: an empty file")
        with open(part, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            # inspect() reads through slices and struct.unpack_from, which a map serves
            # without the whole file being read into memory first.
            try:
                inspected = inspect(cast(bytes, mm))
                header = inspected.header
                duration = round(inspected.duration, 3)
            except IntegrityError as exc:
                raise NotARecording(f"damaged: {exc}") from exc
            except (ValueError, TypeError, KeyError, ArithmeticError, AttributeError) as exc:
                raise NotARecording(f"damaged: {type(exc).__name__}: {exc}") from exc
            if inspected.state == OPEN:
                raise NotARecording("not sealed: no trailer and no cut marker")
            if header.get("device") != device or header.get("id") != recording_id:
                raise NotARecording(
                    f"the recording's header names {shown(str(header.get('device')))}/"
                    f"{shown(str(header.get('id')))}, not this topic's device and id"
                )
            facts: dict[str, Any] = {
                "device": device,
                "id": recording_id,
                "prev": header.get("prev"),
                "hash": inspected.header_hash.hex(),
                "seq": _header_field(header, "seq", int),
                "line": _header_field(header, "line", str),
                "started_at": _header_field(header, "started_at", str),
                "clock_synchronized": header.get("clock_synchronized") is True,
                "duration": duration,
                "state": inspected.state,
            }
            try:
                datetime.fromisoformat(facts["started_at"])
            except ValueError as exc:
                raise NotARecording(f"header field 'started_at' is not a time: {exc}") from exc
            if not 0 < facts["seq"] < 2**53:
                raise NotARecording(f"header field 'seq' is out of range ({facts['seq']})")
            try:
                metadata = read_metadata(inspected, self.settings.key)
            except (IntegrityError, ValueError, TypeError, KeyError, AttributeError) as exc:
                self._problem(
                    f"{part.name}: stored, but this collector's key cannot open it: {exc}"
                )
                return {**facts, "state": f"unreadable: {exc}"}
        numbers = {
            name: value if isinstance(value := metadata.get(name), str) else None
            for name in ("caller_number", "called_number")
        }
        return {**facts, **numbers}

    def _check_chain(self, device: str, recording_id: str, facts: dict[str, Any]) -> None:
        """Each device's recordings form a chain (seq, previous header hash): say where not."""
        problem = self.store.follow_chain(
            device, facts.get("seq"), facts.get("prev"), facts.get("hash")
        )
        if problem:
            self._problem(f"device {device}: {recording_id}: {problem}")

    def _reject(self, device: str, recording_id: str, digest: str, reason: str) -> None:
        """Tell the device this content will not be stored (it keeps it; it should not send
        it again unchanged)."""
        self._ack(
            device,
            {
                "kind": "rejected",
                "device": device,
                "id": recording_id,
                "sha256": digest,
                "reason": reason,
            },
        )

    def _ack(self, device: str, body: dict[str, Any]) -> None:
        """Sent when the message has been handled and what it says is committed."""
        self._acks.append((device, body))

    def _problem(self, message: str) -> None:
        log.warning("%s", message)
        self.problems.append(message)
        del self.problems[:-100]


def _leaves_out(event: dict[str, Any]) -> bool:
    """A recording the device discarded as it was written (opt-out): `_left_out`."""
    return event.get("event") == "recording_deleted" and event.get("reason") in LEFT_OUT


def _header_field(header: dict[str, Any], name: str, kind: type) -> Any:
    value = header.get(name)
    if type(value) is not kind:
        raise NotARecording(
            f"header field {name!r} is not a {kind.__name__} (got {shown(repr(value), 40)})"
        )
    return value


def _link_differs(body: dict[str, Any], *, seq: object, head: object) -> str:
    """How a recording_deleted event's chain link differs from the stored recording's: each
    field that differs, with what the event says and what is stored; '' if it matches."""
    differs = []
    for field, stored in (("recording_seq", seq), ("header_hash", head)):
        given = body.get(field)
        if type(given) is not type(stored) or given != stored:  # not bool for an int
            known = "not known here" if stored is None else str(stored)
            differs.append(f"{field} {shown(str(given), 70)} is not the stored one ({known})")
    return "; ".join(differs)
