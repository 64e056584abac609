"""The durable event outbox: events wait on the card until the collector has acknowledged them.

paho keeps unacknowledged messages in memory only; a reboot or a broker outage of days must
not lose an event. Each event is one small file, `<seq>.json` (mode 0600, in a 0700
directory), holding exactly the payload that is published: the clear envelope (`seq`,
`device`, `at`, `t`, `event`, `line`) and every other field sealed to the collector's keys
(docs/mqtt-api.md, "Sealed fields"), so neither the card nor the broker shows a caller's
number. The sequence number is per device and never reused: while an event waits its file
holds its number, and before acknowledged files go the highest number is kept in `seq`. Only
the collector's signed ack removes events.

Threads: `append` (the daemon's main loop) only numbers the event and queues it. One writer
thread, owned by the outbox, seals, writes and syncs queued events in order (a batch with one
directory sync), and runs the jobs handed to it with `submit` (the uplink's acks and commands,
which sync files and hash recordings) in the same order. An event is published only once it
is durable: `pending` lists only those. `close` writes what is queued before it returns.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linerec.atomic import remove_temps
from linerec.mqttapi import EVENT_ENVELOPE, event_envelope
from linerec.store.keys import CollectorPublic
from linerec.store.private import private_dir, sync_dir, tighten, write_private
from linerec.store.seal import seal_fields

log = logging.getLogger(__name__)

RETRY_AFTER = 1.0  # seconds before writing again after the card refused a write


@dataclass(frozen=True, slots=True)
class _Event:
    seq: int
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Job:
    run: Callable[[], None]
    done: threading.Event


class EventOutbox:
    def __init__(
        self,
        directory: Path,
        *,
        recipients: Sequence[CollectorPublic] = (),
        on_durable: Callable[[], None] = lambda: None,
    ) -> None:
        self.dir = directory
        self._recipients = [r.encryption for r in recipients]
        self.on_durable = on_durable  # events became publishable (the uplink wakes its sender)
        private_dir(directory)
        self._tidy()
        self._lock = threading.Condition()
        self._queue: deque[_Event | _Job] = deque()
        self._inflight: set[int] = set()  # numbered, not yet durable: not to be published
        self._closing = False
        self._stopped = False  # the writer thread has finished (after close)
        self._seq = self._load_seq()
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def _tidy(self) -> None:
        """Whatever an earlier run left: a torn temporary file goes (an older version's
        `*.tmp`, and `atomic_file`'s of the events, the counters and `seq`, logged); modes
        become private."""
        for path in self.dir.glob("*.tmp"):
            path.unlink()
        for temp in remove_temps(self.dir):
            log.warning("removed %s: a file replacement a power cut or kill cut short", temp)
        tighten(self.dir)
        sync_dir(self.dir)  # what is listed from now on is on the card

    def _load_seq(self) -> int:
        return max([self._load_seq_file(), *(int(p.stem) for p in self.dir.glob("*.json"))])

    def _load_seq_file(self) -> int:
        try:
            return int((self.dir / "seq").read_text())
        except (OSError, ValueError):
            return 0

    def set_recipients(self, recipients: Sequence[CollectorPublic]) -> None:
        """Seal the events queued from now on to `recipients` (a new key epoch)."""
        with self._lock:
            self._recipients = [r.encryption for r in recipients]

    # -- the main loop's side: no I/O ------------------------------------------------------------

    def append(self, record: dict[str, Any]) -> int:
        """Queue an event; returns its sequence number. It is sealed and written durably by
        the writer thread, and published only then."""
        if not self._recipients and set(record) - set(EVENT_ENVELOPE):
            raise ValueError(
                f"event {record.get('event')!r}: no collector key to seal its fields to "
                "(they are never written in clear)"
            )
        with self._lock:
            if self._closing:
                raise RuntimeError(f"{self.dir}: the outbox is closed")
            self._seq += 1
            self._inflight.add(self._seq)
            self._queue.append(_Event(self._seq, dict(record)))
            self._lock.notify_all()
            return self._seq

    def submit(self, job: Callable[[], None]) -> threading.Event:
        """Run `job` on the writer thread after everything queued before it; the event is set
        when it has run. After `close`, it runs at once on the caller's thread."""
        done = threading.Event()
        with self._lock:
            if not self._stopped:
                self._queue.append(_Job(job, done))
                self._lock.notify_all()
                return done
        job()
        done.set()
        return done

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event appended so far is durable (or `timeout` passes)."""
        if threading.current_thread() is self._thread:
            return True
        return self.submit(lambda: None).wait(timeout)

    def close(self) -> None:
        """A clean stop: everything queued is written first."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        self._thread.join()

    # -- any thread --------------------------------------------------------------------------

    def pending(self) -> list[tuple[int, bytes]]:
        """(seq, payload) of every durable event not yet acknowledged, oldest first."""
        with self._lock:
            inflight = set(self._inflight)
        events = []
        for path in sorted(self.dir.glob("*.json")):
            seq = int(path.stem)
            if seq in inflight:
                continue
            try:
                events.append((seq, path.read_bytes()))
            except FileNotFoundError:  # acknowledged meanwhile (on the writer thread)
                continue
        return events

    def acknowledge(self, upto: int) -> int:
        """The collector has every event up to `upto`: forget them. Returns how many went.
        Runs on the writer thread (after the events queued before it)."""
        if threading.current_thread() is self._thread:
            return self._acknowledge(upto)
        gone: list[int] = []
        self.submit(lambda: gone.append(self._acknowledge(upto))).wait()
        return gone[0] if gone else 0

    # -- the writer thread -----------------------------------------------------------------------

    def _acknowledge(self, upto: int) -> int:
        going = [p for p in sorted(self.dir.glob("*.json")) if int(p.stem) <= upto]
        if going:  # the numbers they held must outlive them, or a restart would reuse them
            kept = max(int(going[-1].stem), self._load_seq_file())
            write_private(self.dir / "seq", str(kept).encode())
            sync_dir(self.dir)
        for path in going:
            path.unlink()
        return len(going)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._lock.wait()
                if not self._queue:
                    self._stopped = True  # closing, and everything is written
                    return
                head = self._queue[0]
                if isinstance(head, _Job):
                    self._queue.popleft()
                    batch: list[_Event] = []
                else:
                    batch = []
                    while self._queue and isinstance(self._queue[0], _Event):
                        event = self._queue.popleft()
                        assert isinstance(event, _Event)
                        batch.append(event)
            if not batch:
                assert isinstance(head, _Job)
                try:
                    head.run()
                except Exception:  # one bad job (a malformed ack) must not stop the writer
                    log.exception("store writer: a job failed")
                head.done.set()
                continue
            self._write_batch(batch)

    def _write_batch(self, batch: list[_Event]) -> None:
        """Seal and write events, one fsync each and one directory sync for the batch; only
        then they count as durable. A card that refuses keeps them queued (never dropped)."""
        while True:
            try:
                for event in batch:
                    write_private(self.dir / f"{event.seq:012d}.json", self._payload(event))
                sync_dir(self.dir)
            except OSError:
                log.exception("outbox: could not write %d event(s); trying again", len(batch))
                with self._lock:
                    if self._closing:
                        log.error("outbox: stopping with %d event(s) not written", len(batch))
                        return
                    self._lock.wait(RETRY_AFTER)
                continue
            break
        with self._lock:
            self._inflight.difference_update(event.seq for event in batch)
        self.on_durable()

    def _payload(self, event: _Event) -> bytes:
        body = {**event.record, "seq": event.seq}
        clear = {key: body[key] for key in EVENT_ENVELOPE if key in body}
        personal = {key: value for key, value in body.items() if key not in EVENT_ENVELOPE}
        if personal:
            clear["sealed"] = seal_fields(self._recipients, personal, event_envelope(clear))
        return json.dumps(clear, sort_keys=True).encode()
