"""Part 3 of bench/collector.py: SQLite against PostgreSQL, 1 against 2 collector processes
(issue 14), side by side in one run. Prints figures.

Everything runs on this machine: mosquitto, the collector processes, PostgreSQL and the load
generator (four MQTT connections in this process standing in for the appliances), so the
figures are of one machine shared by all of them. What each part cost is printed beside the
figures (CPU seconds of the collectors, of PostgreSQL's processes, of mosquitto and of the
generator), so it shows which of them the machine's two cores went to, and the collectors'
own CPU per stored event is what a projection to a bigger machine needs.

Each measured run gets a fresh database: a new SQLite file in a new data directory, or a new
database on the PostgreSQL server (one started here with `initdb`/`pg_ctl`, durable as a
deployment is: fsync and synchronous_commit on, so an ack follows a commit that is on disk;
or, with --database, the server that URL names, on which the bench creates and drops its
own databases).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker import Mosquitto
from collectors import LINEREC, CollectorProcess
from linerec.codec import RATE
from linerec.collector.enroll import MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES
from linerec.mqttapi import CHUNK, topic
from linerec.store.base import RecordingInfo
from linerec.store.keys import load_or_create_identity, load_public
from linerec.store.ring import RingStore
from postgres import PostgresServer

TICK = os.sysconf("SC_CLK_TCK")
# A server as a deployment runs it: a commit is on disk before it returns (the tests' server
# turns that off for speed; an ack must never follow a commit a crash could undo).
DURABLE = "-c fsync=on -c synchronous_commit=on -c full_page_writes=on -c shared_buffers=128MB"


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
        writer.write(audio)
        entry = writer.seal(ended_by="hang-up")
        data = entry.path.read_bytes()
        made.append(Upload(device, entry.id, data, hashlib.sha256(data).hexdigest()))
    return made


def cpu_of(pid: int) -> float:
    """User + system seconds of one process (all its threads) so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


class Engine:
    """Where the collectors' metadata goes: `fresh()` gives each measured run its own."""

    def __init__(self, name: str, root: Path, url: str | None = None) -> None:
        self.name = name
        self.server: PostgresServer | None = None
        self.url = url
        self._made: list[str] = []
        if name == "postgresql" and url is None:
            self.server = PostgresServer(settings=DURABLE)
            self.server.start()

    def fresh(self) -> str | None:
        """A new, empty database (None: SQLite, a new file in the run's data directory)."""
        if self.name == "sqlite":
            return None
        name = f"bench_{os.getpid()}_{len(self._made) + 1}"
        if self.server is not None:
            self.server.admin(f"CREATE DATABASE {name} TEMPLATE template0")
            uri = self.server.uri(name)
        else:
            assert self.url is not None
            with psycopg.connect(self.url, autocommit=True) as admin:
                admin.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
            uri = urlsplit(self.url)._replace(path=f"/{name}").geturl()
        self._made.append(uri)
        return uri

    def drop(self, uri: str | None) -> None:
        if uri is None:
            return
        name = uri.rpartition("/")[2].split("?")[0]
        admin_uri = self.server.uri("postgres") if self.server else self.url
        assert admin_uri is not None
        with psycopg.connect(admin_uri, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]
        self._made.remove(uri)

    def server_cpu(self) -> float:
        """CPU seconds of the PostgreSQL server's processes alive now (0 when not ours)."""
        if self.server is None:
            return 0.0
        pid = int((self.server.data / "postmaster.pid").read_text().split()[0])
        return cpu_of(pid) + sum(cpu_of(child) for child in children_of(pid))

    def close(self) -> None:
        for uri in list(self._made):
            self.drop(uri)
        if self.server is not None:
            self.server.stop()


@dataclass
class Costs:
    """CPU seconds each part spent over one measured stretch."""

    collectors: float = 0.0
    database: float = 0.0
    broker: float = 0.0
    generator: float = 0.0
    seconds: float = 0.0

    def shown(self) -> str:
        return (
            f"CPU s: collectors {self.collectors:.1f}, database {self.database:.1f}, "
            f"mosquitto {self.broker:.1f}, generator {self.generator:.1f} "
            f"(over {self.seconds:.1f} s)"
        )


class Central:
    """A fresh mosquitto, data directory, database and `processes` collector processes."""

    def __init__(
        self, root: Path, name: str, processes: int, engine: Engine, tree: str | None = None
    ) -> None:
        work = root / name
        work.mkdir()
        self.data_dir = work / "central"
        self.engine = engine
        self.database = engine.fresh()
        # queued as `collector enroll` configures a broker, not mosquitto's default 1000
        queues = f"max_queued_messages {MAX_QUEUED_MESSAGES}\nmax_queued_bytes {MAX_QUEUED_BYTES}\n"
        self.broker = Mosquitto(work, extra=queues).start()
        config = work / "collector.toml"
        extra = f"database = {json.dumps(self.database)}\n" if self.database else ""
        config.write_text(
            f'[collector]\nbroker = "{self.broker.url}"\nallow_plaintext = true\n'
            f'data_dir = "{self.data_dir}"\nkey = "{root / "keys" / "collector.key"}"\n{extra}'
        )
        run = ["collector", "run", "--config", str(config)]
        # another checkout's collector (its firmware/ first on the path), for before/after
        command = [*(["env", f"PYTHONPATH={tree}"] if tree else []), *LINEREC, *run]
        self.collectors = [CollectorProcess(config, command) for _ in range(processes)]
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
        try:
            if self.database:
                with psycopg.connect(self.database) as db:
                    row = db.execute(query).fetchone()
            else:
                path = self.data_dir / "collector.db"
                with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
                    row = db.execute(query).fetchone()
        except (sqlite3.OperationalError, psycopg.errors.UndefinedTable):
            return 0, 0
        assert row is not None
        return int(row[0]), int(row[1])

    def wait_stored(self, events: int, recordings: int, timeout: float) -> tuple[int, int]:
        deadline = time.monotonic() + timeout
        while True:
            now = self.stored()
            if (now[0] >= events and now[1] >= recordings) or time.monotonic() > deadline:
                return now
            time.sleep(0.1)

    def costs(self) -> Costs:
        """CPU seconds of each part so far (subtract two to get a stretch's)."""
        assert self.broker.process is not None
        me = os.times()
        return Costs(
            collectors=sum(cpu_of(c.process.pid) for c in self.collectors),
            database=self.engine.server_cpu(),
            broker=cpu_of(self.broker.process.pid),
            generator=me.user + me.system,
            seconds=time.monotonic(),
        )

    def close(self) -> None:
        for client in self.clients:
            client.loop_stop()
            client.disconnect()
        for collector in self.collectors:
            try:
                log = collector.stop()
            except subprocess.TimeoutExpired:
                collector.kill()
                log = collector.text() + "\n(did not stop within 30 s of SIGTERM: killed)"
            if "Traceback" in log or "killed" in log:
                print(f"    (a collector's log: {log[-3000:]})")
        self.broker.stop()
        self.engine.drop(self.database)


def spent(before: Costs, after: Costs) -> Costs:
    return Costs(
        collectors=after.collectors - before.collectors,
        database=after.database - before.database,
        broker=after.broker - before.broker,
        generator=after.generator - before.generator,
        seconds=after.seconds - before.seconds,
    )


@dataclass
class LinesRun:
    ok: bool
    stored: tuple[int, int]
    want: tuple[int, int]
    late: float  # seconds the generator finished its last second late
    costs: Costs


def lines_run(central: Central, uploads: list[Upload], seconds: int, drain: float) -> LinesRun:
    """Each line: its recording a piece a second and an event a second; all stored in time?"""
    before = central.costs()
    start = time.monotonic()
    late = 0.0
    for second in range(seconds):
        for n, upload in enumerate(uploads):
            step = -(-len(upload.data) // seconds)  # the whole file in `seconds` pieces
            central.piece(n, upload, second * step, step)
            central.event(n, upload.device, second + 1)
        pause = start + second + 1 - time.monotonic()
        late = max(late, -pause)
        if pause > 0:
            time.sleep(pause)
    want = (len(uploads) * seconds, len(uploads))
    got = central.wait_stored(*want, timeout=drain)
    costs = spent(before, central.costs())
    return LinesRun(got >= want, got, want, late, costs)


@dataclass
class Setup:
    """One of the configurations compared: an engine and a number of collector processes."""

    engine: Engine
    processes: int
    tree: str | None = None  # another checkout's firmware/ (--before), or this one's
    sustained: int = 0
    failed: bool = False
    runs: list[str] = field(default_factory=list)
    per_line_cpu: list[float] = field(default_factory=list)  # collectors' CPU s per line-second

    @property
    def name(self) -> str:
        which = "before, " if self.tree else ""
        plural = "es" if self.processes > 1 else ""
        return f"{which}{self.engine.name}, {self.processes} process{plural}"


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
    engines: list[str],
    before: str | None = None,
) -> None:
    print(
        f"scale-out ({', '.join(engines)} x {processes} collector processes; this machine: "
        f"{os.cpu_count()} cores, shared; load average {_load()})"
    )
    made: dict[str, Engine] = {}
    try:
        for name in engines:
            made[name] = Engine(name, root, database if name == "postgresql" else None)
        trees = [None, before] if before else [None]
        setups = [
            Setup(made[name], count, tree)
            for count in processes
            for name in engines
            for tree in trees
        ]
        line_uploads = [recordings(root, f"line{n:04d}", 1, seconds)[0] for n in range(max(lines))]
        per_device = max(1, backlog // 10)
        backlog_uploads = [
            upload for d in range(10) for upload in recordings(root, f"back{d:02d}", per_device, 60)
        ]
        _lines(root, setups, lines, line_uploads, seconds, drain)
        results = [_burst(root, setup, events, backlog_uploads) for setup in _turns(setups, 0)]
        print("  summary:")
        for setup, (rate, backlog_rate, cpu_event, costs) in zip(
            _turns(setups, 0), results, strict=True
        ):
            line_cpu = sorted(setup.per_line_cpu)
            per_line = f"{line_cpu[len(line_cpu) // 2] * 1000:.2f} ms" if line_cpu else "-"
            print(
                f"    {setup.name}: lines sustained {setup.sustained}; events {rate:.0f}/s; "
                f"backlog {backlog_rate:.2f} recordings/s; CPU {cpu_event * 1000:.2f} ms per "
                f"stored event (collectors; the database's own "
                f"{costs.database / max(rate * costs.seconds, 1) * 1000:.2f} ms); "
                f"collectors' CPU per line per second (median of the runs) {per_line}"
            )
        for name in engines:
            for tree in trees:
                same = [s for s in setups if s.engine.name == name and s.tree == tree]
                one = next((s for s in same if s.processes == 1), None)
                two = next((s for s in same if s.processes == 2), None)
                if one and two and one.sustained:
                    print(
                        f"    {two.name.replace(', 2 processes', '')}: 2 processes / 1 = "
                        f"{two.sustained / one.sustained:.2f}x lines"
                    )
        print(f"  load average at the end: {_load()}")
    finally:
        for engine in made.values():
            engine.close()


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _turns(setups: list[Setup], round_: int) -> list[Setup]:
    """The setups in turn, the order reversed every other round (neither always goes first)."""
    return setups if round_ % 2 == 0 else setups[::-1]


def _lines(
    root: Path,
    setups: list[Setup],
    lines: list[int],
    uploads: list[Upload],
    seconds: int,
    drain: float,
) -> None:
    """Each line count in turn for every setup not yet past its limit (side by side)."""
    for round_, count in enumerate(lines):
        for setup in _turns(setups, round_):
            if setup.failed:
                continue
            central = Central(
                root, f"lines-{setup.engine.name}-{setup.processes}-{count}-{id(setup)}",
                setup.processes, setup.engine, setup.tree,
            )  # fmt: skip
            try:
                run = lines_run(central, uploads[:count], seconds, drain)
            finally:
                central.close()
            setup.per_line_cpu.append(run.costs.collectors / (count * seconds))
            if run.ok:
                setup.sustained = count
            else:
                setup.failed = True
            generator = " (the generator ran late: it limits this figure)" if run.late > 1 else ""
            print(
                f"  {setup.name}: {count} lines: {'sustained' if run.ok else 'NOT sustained'}, "
                f"stored {run.stored[0]}/{run.want[0]} events, {run.stored[1]}/{run.want[1]} "
                f"recordings; generator late {run.late:.2f} s{generator}; "
                f"{run.costs.shown()}; load {_load()}",
                flush=True,
            )


def _burst(
    root: Path, setup: Setup, events: int, backlog_uploads: list[Upload]
) -> tuple[float, float, float, Costs]:
    """(events/s, backlog recordings/s, collectors' CPU s per stored event, costs of the
    burst): a burst of events from 20 devices, then a backlog of one-minute recordings."""
    central = Central(root, f"burst-{setup.engine.name}-{setup.processes}-{id(setup)}",
                      setup.processes, setup.engine, setup.tree)  # fmt: skip
    try:
        devices = 20
        before = central.costs()
        for seq in range(1, events // devices + 1):
            for d in range(devices):
                central.event(d, f"burst{d:02d}", seq)
        got, _ = central.wait_stored(events // devices * devices, 0, timeout=300)
        costs = spent(before, central.costs())
        start = time.monotonic()
        for n, upload in enumerate(backlog_uploads):
            for offset in range(0, len(upload.data), CHUNK):
                central.piece(n, upload, offset, CHUNK)
        _, kept = central.wait_stored(0, len(backlog_uploads), timeout=600)
        backlog_elapsed = time.monotonic() - start
    finally:
        central.close()
    print(
        f"  {setup.name}: events {got / costs.seconds:.0f}/s ({got} in {costs.seconds:.1f} s; "
        f"{costs.shown()}); backlog {kept / backlog_elapsed:.2f} recordings/s ({kept} of "
        f"{len(backlog_uploads)} one-minute ones in {backlog_elapsed:.1f} s); load {_load()}",
        flush=True,
    )
    return got / costs.seconds, kept / backlog_elapsed, costs.collectors / max(got, 1), costs
