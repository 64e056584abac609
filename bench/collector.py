"""Benchmark of what one device's upload costs the collector: prints figures, asserts nothing.

    .venv/bin/python bench/collector.py [--mib 200] [--holes 1000,10000,30000]
    .venv/bin/python bench/collector.py --search 1000000 [--repeat 20] [--database URI]
        [--engine sqlite|postgresql|both] [--keep DIR]

With --search, only the search bench (bench/search.py): the console's queries over N
recordings on SQLite and PostgreSQL side by side (--keep DIR keeps the SQLite file there and
a database named by --database, once filled, is used again rather than filled again).

1. Peak memory: a real sealed recording of about MIB MiB is uploaded in 32 KiB pieces to a
   collector running as its own process (`linerec collector run`) on a real mosquitto; its
   peak resident memory (VmHWM) once the recording is acknowledged.
2. Cost of a piece when an upload already has H holes (one-byte pieces two bytes apart), in
   the collector's store on SQLite: mean over 200 more such pieces.

Run against another checkout (PYTHONPATH=<checkout>/firmware) for a before/after comparison;
it uses only the wire and the store's piece entry point, whichever that checkout has.

3. Scale-out (issue 14), side by side in one run: SQLite against PostgreSQL and 1 against 2
   collector processes (`linerec collector run`, one shared database and data directory, one
   MQTT 5 shared subscription) on one mosquitto, a fresh database for every measured run:
   lines sustained (each line uploads a real sealed recording at 64 kbit/s, a piece a second,
   and sends an event a second, for --seconds; sustained if every event and every recording
   is stored within --drain seconds after the last; the line counts of --lines are tried in
   turn, each by every configuration not yet past its limit, until one is not), events/s (a
   burst of --events events from 20 devices), recordings/s of a backlog (--backlog one-minute
   recordings from 10 devices, published at once), the collectors' CPU time per stored event
   in the burst and per line, and beside each figure the CPU of the database server, of
   mosquitto and of the load generator, and the load average. PostgreSQL is a server started
   here (initdb and pg_ctl in a temporary directory, durable: fsync and synchronous_commit
   on), or with `--database URL` the server that URL names (the bench creates a database
   there for each run and drops it). `--engines sqlite` or `--engines postgresql` runs one
   only; `--before OTHER/firmware` adds another checkout's collector, taking turns with this
   one's (a before/after comparison in one run). `--only-scale` runs this part alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).parent))
from broker import Mosquitto
from linerec.codec import RATE
from linerec.store.base import RecordingInfo
from linerec.store.keys import keygen, load_or_create_identity, load_public
from linerec.store.ring import RingStore

PIECE = 32 * 1024
DEVICE = "bench"


def big_recording(root: Path, mib: int) -> Path:
    ring = RingStore(
        root / "ring",
        recipients=[load_public(root / "keys" / "collector.pub")],
        identity=load_or_create_identity(root / "identity.key"),
        device_id=DEVICE,
        capacity=4 * mib * 1024 * 1024,
    )
    writer = ring.begin(
        RecordingInfo(
            device_id=DEVICE,
            line="line1",
            label="",
            direction="inbound",
            consent="notice",
            started_at=datetime.now(UTC),
            clock_synchronized=True,
        )
    )
    minute = (np.random.default_rng(0).normal(0, 3000, RATE * 60)).astype(np.int16)
    for _ in range(mib * 1024 * 1024 // (RATE * 60) + 1):  # µ-law: one byte a sample
        writer.write(minute)
    return writer.seal(ended_by="hang-up").path


def peak_rss(root: Path, mib: int) -> tuple[int, float, int]:
    path = big_recording(root, mib)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    broker = Mosquitto(root).start()
    config = root / "collector.toml"
    limits = ""
    try:
        import linerec.collector.uploads  # noqa: F401  (a checkout with upload limits)

        limits = f"max_recording_bytes = {len(data) + 1}\n"
    except ImportError:
        pass
    config.write_text(
        f'[collector]\nbroker = "{broker.url}"\nallow_plaintext = true\ndata_dir = "central"\n'
        f'key = "keys/collector.key"\n{limits}'
    )
    collector = subprocess.Popen(
        [sys.executable, "-m", "linerec.cli", "collector", "run", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
    )
    acked = threading.Event()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: (
        acked.set() if json.loads(m.payload).get("kind") == "recording" else None
    )
    try:
        client.connect("127.0.0.1", broker.port)
        client.subscribe(f"linerec/v1/{DEVICE}/ack", qos=1)
        client.loop_start()
        time.sleep(1.5)  # the collector subscribes (a benchmark, not a test)
        name = f"linerec/v1/{DEVICE}/upload/{path.stem}"
        start = time.perf_counter()
        for offset in range(0, len(data), PIECE):
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.UserProperty = [
                ("offset", str(offset)),
                ("size", str(len(data))),
                ("sha256", digest),
            ]
            info = client.publish(name, data[offset : offset + PIECE], 1, properties=properties)
            if offset // PIECE % 64 == 63:
                info.wait_for_publish(30)
        ok = acked.wait(600)
        elapsed = time.perf_counter() - start
        status = Path(f"/proc/{collector.pid}/status").read_text()
        hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
        if not ok:
            raise SystemExit("the collector did not acknowledge the upload")
        return hwm * 1024, elapsed, len(data)
    finally:
        client.loop_stop()
        collector.terminate()
        collector.wait(30)
        broker.stop()


def piece_cost(root: Path, holes: int, pieces: int = 200) -> float:
    from linerec.collector import store as collector_store

    size = 4 * (holes + pieces) + 16
    uploads = getattr(collector_store, "Uploads", None)
    if uploads is not None:  # ranges one row each
        from linerec.collector.uploads import Piece, UploadLimits

        db = root / f"holes-{holes}.db"
        store = collector_store.CollectorStore(
            root / f"data-{holes}", db, UploadLimits(max_holes=10 * (holes + pieces))
        )
        rid = f"{DEVICE}-00000001-20260101T120000Z-line1"
        store.db.execute(
            "INSERT INTO uploads (device, id, size, sha256, ranges, touched_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (DEVICE, rid, size, "0" * 64, holes, time.time()),
        )
        store.db.executemany(
            'INSERT INTO upload_ranges (device, id, start, "end") VALUES (?, ?, ?, ?)',
            [(DEVICE, rid, 2 + 2 * i, 3 + 2 * i) for i in range(holes)],
        )

        def add(offset: int) -> None:
            store.uploads.add(
                Piece(
                    device=DEVICE,
                    recording_id=rid,
                    offset=offset,
                    size=size,
                    sha256="0" * 64,
                    data=b"x",
                ),
                time.time(),
            )
    else:  # the received ranges as one JSON list
        Piece = collector_store.Piece  # type: ignore[attr-defined]
        store = collector_store.CollectorStore(root / f"data-{holes}", root / f"holes-{holes}.db")
        rid = "x"
        received = json.dumps([[2 + 2 * i, 3 + 2 * i] for i in range(holes)])
        store.db.execute(
            "INSERT INTO uploads (device, id, size, sha256, received) VALUES (?, ?, ?, ?, ?)",
            (DEVICE, rid, size, "0" * 64, received),
        )
        (root / f"data-{holes}" / "incoming" / DEVICE).mkdir(parents=True)

        def add(offset: int) -> None:
            store.add_piece(  # type: ignore[attr-defined]
                Piece(
                    device=DEVICE,
                    recording_id=rid,
                    offset=offset,
                    size=size,
                    sha256="0" * 64,
                    data=b"x",
                )
            )

    start = time.perf_counter()
    for i in range(pieces):
        add(2 + 2 * (holes + i))
    return (time.perf_counter() - start) / pieces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--holes", default="1000,10000,30000")
    parser.add_argument("--only-scale", action="store_true", help="part 3 alone")
    parser.add_argument("--processes", default="1,2", help="collector processes to compare")
    parser.add_argument("--lines", default="100,200,300,400,600,800,1000")
    parser.add_argument("--engines", default="sqlite,postgresql", help="engines to compare")
    parser.add_argument(
        "--before",
        metavar="FIRMWARE_DIR",
        help="scale-out: also run another checkout's collector (its firmware/ directory), "
        "taking turns with this one's",
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--drain", type=float, default=10.0)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--backlog", type=int, default=40)
    parser.add_argument(
        "--database",
        metavar="URL",
        help="a PostgreSQL server's URL: for the scale-out, where its databases are made (the "
        "user may CREATE DATABASE; default: a server started here); for --search, an empty "
        "PostgreSQL database (default: one started here)",
    )
    parser.add_argument("--search", type=int, metavar="N", help="search over N recordings only")
    parser.add_argument("--repeat", type=int, default=20, help="runs of each search shape")
    parser.add_argument(
        "--engine", choices=("sqlite", "postgresql", "both"), default="both", help="for --search"
    )
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="for --search: keep the SQLite database in DIR and use it again next time",
    )
    args = parser.parse_args()
    if args.search:
        from search import run as search_bench

        engines = ("sqlite", "postgresql") if args.engine == "both" else (args.engine,)
        with tempfile.TemporaryDirectory() as tmp:
            root = args.keep or Path(tmp)
            search_bench(args.search, args.repeat, args.database, root, engines)
        return
    import logging

    logging.getLogger("linerec").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        keygen(root / "keys")
        if not args.only_scale:
            for holes in (int(h) for h in args.holes.split(",")):
                cost = piece_cost(root, holes)
                print(f"one-byte piece into an upload with {holes} holes: {cost * 1000:.2f} ms")
            hwm, elapsed, size = peak_rss(root, args.mib)
            print(
                f"upload of a {size / 2**20:.0f} MiB recording: collector peak RSS "
                f"{hwm / 2**20:.0f} MiB, acknowledged after {elapsed:.1f} s"
            )
        from collector_scale import scale_out

        scale_out(
            root,
            processes=[int(n) for n in args.processes.split(",")],
            lines=[int(n) for n in args.lines.split(",")],
            seconds=args.seconds,
            drain=args.drain,
            events=args.events,
            backlog=args.backlog,
            database=args.database,
            engines=args.engines.split(","),
            before=args.before,
        )


if __name__ == "__main__":
    main()
