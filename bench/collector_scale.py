"""Part 3 of bench/collector.py: 1 against 2 collector processes (issue 14). Prints figures.

Everything runs on this machine: mosquitto, the collector processes and the publishers (four
MQTT connections in this process standing in for the appliances), so the figures are of one
machine shared by all three. CPU per stored event is the collectors' own (user + system time of
their processes over the burst), what a projection to a bigger machine needs.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker import Mosquitto
from collectors import CollectorProcess
from linerec.codec import RATE
from linerec.collector.enroll import MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES
from linerec.mqttapi import CHUNK, topic
from linerec.store.base import RecordingInfo
from linerec.store.keys import load_or_create_identity, load_public
from linerec.store.ring import RingStore

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Upload:
    device: str
    rid: str
    data: bytes
    digest: str


def recordings(root: Path, device: str, count: int, seconds: int) -> list[Upload]:
    """`count` real sealed recordings of `device`, `seconds` long each (G.711, 8000 B/s)."""
    ring = RingStore(
        root / "rings" / f"{device}-{seconds}",
        recipients=[load_public(root / "keys" / "collector.pub")],
        identity=load_or_create_identity(root / "identity.key"),
        device_id=device,
        capacity=(count + 1) * (RATE * seconds + 65536) * 2,
    )
    audio = (np.random.default_rng(0).normal(0, 3000, RATE * seconds)).astype(np.int16)
    made = []
    for _ in range(count):
        writer = ring.begin(
            RecordingInfo(
                device_id=device,
                line="line1",
                label="",
                direction="inbound",
                consent="notice",
                started_at=datetime.now(UTC),
                clock_synchronized=True,
            )
        )
        for start in range(0, len(audio), 160):
            writer.write(audio[start : start + 160])
        entry = writer.seal(ended_by="hang-up")
        data = entry.path.read_bytes()
        made.append(Upload(device, entry.id, data, hashlib.sha256(data).hexdigest()))
    return made


class Central:
    """A fresh mosquitto, data directory and `processes` collector processes."""

    def __init__(self, root: Path, name: str, processes: int, database: str | None) -> None:
        work = root / name
        work.mkdir()
        self.data_dir = work / "central"
        self.database = database
        # queued as `collector enroll` configures a broker, not mosquitto's default 1000
        queues = f"max_queued_messages {MAX_QUEUED_MESSAGES}\nmax_queued_bytes {MAX_QUEUED_BYTES}\n"
        self.broker = Mosquitto(work, extra=queues).start()
        config = work / "collector.toml"
        extra = f"database = {json.dumps(database)}\n" if database else ""
        config.write_text(
            f'[collector]\nbroker = "{self.broker.url}"\nallow_plaintext = true\n'
            f'data_dir = "{self.data_dir}"\nkey = "{root / "keys" / "collector.key"}"\n{extra}'
        )
        self.collectors = [CollectorProcess(config) for _ in range(processes)]
        for collector in self.collectors:
            collector.wait_for("collector subscribed", timeout=60)
        self.clients = []
        for index in range(4):
            client = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                protocol=mqtt.MQTTv5,
                client_id=f"bench-{name}-{index}",
            )
            client.max_queued_messages_set(0)
            client.connect("127.0.0.1", self.broker.port)
            client.loop_start()
            self.clients.append(client)

    def piece(self, n: int, upload: Upload, offset: int, length: int) -> None:
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.UserProperty = [
            ("offset", str(offset)),
            ("size", str(len(upload.data))),
            ("sha256", upload.digest),
        ]
        self.clients[n % 4].publish(
            topic(upload.device, "upload", upload.rid),
            upload.data[offset : offset + length],
            qos=1,
            properties=properties,
        )

    def event(self, n: int, device: str, seq: int) -> None:
        body = {"seq": seq, "device": device, "event": "ringing", "line": "line1", "t": seq}
        self.clients[n % 4].publish(topic(device, "event"), json.dumps(body), qos=1)

    def stored(self) -> tuple[int, int]:
        """(events, recordings) in the collectors' database."""
        query = "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM recordings)"
        if self.database and self.database.startswith(("postgres://", "postgresql://")):
            psycopg: Any = importlib.import_module("psycopg")
            with psycopg.connect(self.database) as db:
                row = db.execute(query).fetchone()
        else:
            path = Path(self.database) if self.database else self.data_dir / "collector.db"
            try:
                with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
                    row = db.execute(query).fetchone()
            except sqlite3.OperationalError:
                return 0, 0
        return int(row[0]), int(row[1])

    def wait_stored(self, events: int, recordings: int, timeout: float) -> tuple[int, int]:
        deadline = time.monotonic() + timeout
        while True:
            now = self.stored()
            if (now[0] >= events and now[1] >= recordings) or time.monotonic() > deadline:
                return now
            time.sleep(0.1)

    def cpu(self) -> float:
        """User + system seconds of the collector processes so far."""
        total = 0
        for collector in self.collectors:
            fields = Path(f"/proc/{collector.process.pid}/stat").read_text().rsplit(")", 1)[1]
            utime, stime = fields.split()[11:13]
            total += int(utime) + int(stime)
        return total / TICK

    def close(self) -> None:
        for client in self.clients:
            client.loop_stop()
            client.disconnect()
        for collector in self.collectors:
            collector.stop()
        self.broker.stop()


def lines_run(central: Central, uploads: list[Upload], seconds: int, drain: float) -> bool:
    """Each line: its recording a piece a second and an event a second; all stored in time?"""
    start = time.monotonic()
    for second in range(seconds):
        for n, upload in enumerate(uploads):
            step = -(-len(upload.data) // seconds)  # the whole file in `seconds` pieces
            central.piece(n, upload, second * step, step)
            central.event(n, upload.device, second + 1)
        pause = start + second + 1 - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    want = (len(uploads) * seconds, len(uploads))
    return central.wait_stored(*want, timeout=drain) >= want


def scale_out(
    root: Path,
    *,
    processes: list[int],
    lines: list[int],
    seconds: int,
    drain: float,
    events: int,
    backlog: int,
    database: str | None,
) -> None:
    engine = database.split(":", 1)[0] if database else "sqlite"
    print(f"scale-out ({engine}; this machine: {os.cpu_count()} cores, shared):")
    line_uploads = [recordings(root, f"line{n:04d}", 1, seconds)[0] for n in range(max(lines))]
    per_device = max(1, backlog // 10)
    backlog_uploads = [
        upload for d in range(10) for upload in recordings(root, f"back{d:02d}", per_device, 60)
    ]
    for count in processes:
        sustained = 0
        for tried in lines:
            central = Central(root, f"lines-{count}-{tried}", count, database)
            try:
                ok = lines_run(central, line_uploads[:tried], seconds, drain)
            finally:
                central.close()
            if not ok:
                break
            sustained = tried
        central = Central(root, f"burst-{count}", count, database)
        try:
            devices = 20
            cpu = central.cpu()
            start = time.perf_counter()
            for seq in range(1, events // devices + 1):
                for d in range(devices):
                    central.event(d, f"burst{d:02d}", seq)
            got, _ = central.wait_stored(events // devices * devices, 0, timeout=300)
            elapsed = time.perf_counter() - start
            cpu_per_event = (central.cpu() - cpu) / max(got, 1)
            start = time.perf_counter()
            for n, upload in enumerate(backlog_uploads):
                for offset in range(0, len(upload.data), CHUNK):
                    central.piece(n, upload, offset, CHUNK)
            _, kept = central.wait_stored(0, len(backlog_uploads), timeout=600)
            backlog_elapsed = time.perf_counter() - start
        finally:
            central.close()
        print(
            f"  {count} process(es): lines sustained {sustained} (of {lines}; {seconds} s, "
            f"drain {drain:g} s); events {got / elapsed:.0f}/s ({got} in {elapsed:.1f} s); "
            f"backlog {kept / backlog_elapsed:.2f} recordings/s ({kept} of "
            f"{len(backlog_uploads)} one-minute ones in {backlog_elapsed:.1f} s); "
            f"CPU {cpu_per_event * 1000:.2f} ms per stored event"
        )
