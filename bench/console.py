"""Benchmark of the web console: prints figures, asserts nothing.

    .venv/bin/python bench/console.py [--recordings 100000] [--searches 200] [--plays 5]

* Search latency (p50, p95) over N recordings in the default SQLite store, through the JSON
  API as a script calls it (bearer token; the audit entry each search leaves included), for a
  mix of the console's filters. Target: p95 <= 100 ms at 100,000 recordings.
* Time to the first audio byte of a one-hour recording (µ-law, sealed by a real RingStore,
  kept in the collector's vault): a range request for its first 64 KiB, from sending the
  request to the first byte of the answer, over a real HTTP connection to uvicorn. A new play:
  nothing of the recording opened by the server yet; just arrived: not catalogued either
  (the console's first look at it); a seek: a request in a play already opened.
  Target: <= 300 ms.

The recordings beyond the one-hour call are index rows (their files are not read by a search).
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import numpy as np
import uvicorn

from linerec.codec import RATE, Codec
from linerec.collector.store import CollectorStore
from linerec.collector.web.app import build_app
from linerec.collector.web.service import ConsoleService
from linerec.store.base import RecordingInfo
from linerec.store.disk import OsDisk
from linerec.store.keys import keygen, load_or_create_identity, load_private, load_public
from linerec.store.ring import RingStore

START = datetime(2026, 1, 1, tzinfo=UTC)


class NoSyncDisk(OsDisk):
    """Making the hour-long fixture need not wait for the disk."""

    def datasync(self, handle: int) -> None:
        pass


def one_hour_call(root: Path, public: Path) -> tuple[Path, str, float]:
    ring = RingStore(
        root / "ring",
        recipients=[load_public(public)],
        identity=load_or_create_identity(root / "identity.key"),
        codec=Codec.ULAW,
        disk=NoSyncDisk(),
    )
    info = RecordingInfo(
        device_id="bench",
        line="line1",
        label="sales",
        direction="inbound",
        consent="notice",
        started_at=START,
        clock_synchronized=True,
    )
    rng = np.random.default_rng(7)
    writer = ring.begin(info)
    for _ in range(60):  # one minute at a time
        t = np.arange(60 * RATE) / RATE
        writer.write((3000 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 500, t.size)).astype(
            np.int16
        ))  # fmt: skip
    sealed = writer.seal(ended_by="hang-up")
    return sealed.path, sealed.id, sealed.duration


def fill(store: CollectorStore, count: int) -> None:
    """`count` index rows over a year, 40 devices of 4 lines, numbers and labels."""
    rng = random.Random(1)
    rows, catalog, holds = [], [], []
    for n in range(count):
        device = f"box{n % 40}"
        line = f"line{n % 4 + 1}"
        started = START + timedelta(seconds=rng.randrange(365 * 86400))
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        rid = f"{device}-{n + 10:08d}-{stamp}-{line}"
        caller = f"555{rng.randrange(10**7):07d}"
        called = f"{rng.randrange(10**9):09d}"
        rows.append((device, rid, n + 10, line, started.isoformat(timespec="milliseconds"),
                     rng.uniform(5, 900), "complete", caller, called, f"/nonexistent/{rid}",
                     "0" * 64, 0.0, 1))  # fmt: skip
        catalog.append((device, rid, ("sales", "support", "")[n % 3] or None,
                        ("inbound", "outbound")[n % 2], "notice", 1))  # fmt: skip
        if n % 500 == 0:
            holds.append((device, rid))
    with store.db.transaction():
        store.db.executemany(
            "INSERT INTO recordings (device, id, seq, line, started_at, duration, state, "
            "caller_number, called_number, path, sha256, received_at, clock_synchronized) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        store.db.executemany(
            "INSERT INTO console_catalog (device, id, label, direction, consent, "
            "clock_synchronized) VALUES (?, ?, ?, ?, ?, ?)",
            catalog,
        )
        store.db.executemany("INSERT INTO holds (device, id) VALUES (?, ?)", holds)


QUERIES = [
    {},
    {"number": "5551"},
    {"number": "55512"},
    {"caller": "555123"},
    {"device": "box7"},
    {"device": "box7", "line": "line2"},
    {"label": "sales"},
    {"direction": "outbound", "sort": "-duration"},
    {"since": "2026-03-01T00:00", "until": "2026-03-08T00:00"},
    {"since": "2026-06-01", "device": "box3", "sort": "started_at"},
    {"min_duration": "600", "max_duration": "700"},
    {"held": "yes"},
    {"review": "unreviewed", "page": "20"},
]


class Server:
    def __init__(self, service: ConsoleService) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(build_app(service), log_level="warning"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=100_000)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--plays", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        private, public = keygen(root / "keys")
        store = CollectorStore(root / "central", root / "central" / "collector.db")
        began = time.perf_counter()
        path, rid, duration = one_hour_call(root, public)
        part = root / "upload.part"
        part.write_bytes(path.read_bytes())
        kept = store.keep("bench", rid, part)
        store.index("bench", rid, kept, "0" * 64,
                    {"seq": 1, "line": "line1", "started_at": START.isoformat(),
                     "duration": duration, "state": "complete"}, 0.0)  # fmt: skip
        fill(store, args.recordings - 1)
        print(f"fixture: {args.recordings} recordings, one of {duration / 60:.0f} min "
              f"({kept.stat().st_size / 2**20:.1f} MiB in the vault), "
              f"made in {time.perf_counter() - began:.0f} s")  # fmt: skip
        service = ConsoleService(store, load_private(private))
        service.accounts.add("bench", "admin", "bench password 1")
        token = service.accounts.issue_token("bench", "admin")
        server = Server(service)
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with httpx2.Client(base_url=f"http://127.0.0.1:{server.port}", headers=headers) as web:
                assert web.get("/api/recordings", params={"limit": "1"}).status_code == 200
                times: dict[str, list[float]] = {}
                for n in range(args.searches):
                    query = QUERIES[n % len(QUERIES)]
                    start = time.perf_counter()
                    answer = web.get("/api/recordings", params=query)
                    elapsed = time.perf_counter() - start
                    assert answer.status_code == 200, answer.text
                    times.setdefault(str(query), []).append(elapsed)
                every = [t for ts in times.values() for t in ts]
                p50, p95 = percentile(every, 0.5) * 1000, percentile(every, 0.95) * 1000
                print(f"search over {args.recordings} recordings, {len(every)} requests: "
                      f"p50 {p50:.1f} ms, p95 {p95:.1f} ms (target p95 <= 100 ms)")  # fmt: skip
                for query_text, ts in times.items():
                    print(f"  {query_text:60} median {statistics.median(ts) * 1000:7.1f} ms")
                cold, warm, arrived = [], [], []
                audio = f"/api/recordings/{rid}/audio"

                def first_byte(bucket: list[float]) -> None:
                    start = time.perf_counter()
                    with web.stream("GET", audio, params={"reason": "bench"},
                                    headers={"Range": "bytes=0-65535"}) as answer:  # fmt: skip
                        first = next(answer.iter_raw(1))
                        bucket.append(time.perf_counter() - start)
                        assert answer.status_code == 206 and first[:1] == b"R"

                for _ in range(args.plays):
                    service.forget_audio()  # a new play: nothing of it decrypted or opened yet
                    first_byte(cold)
                    first_byte(warm)
                    # Just arrived: not yet catalogued either (its first look by the console).
                    service.forget_audio()
                    store.db.execute("DELETE FROM console_catalog WHERE id = ?", (rid,))
                    service._catalogued_upto = -1
                    first_byte(arrived)
                print(f"first audio byte of a {duration / 60:.0f}-minute recording "
                      f"(target <= 300 ms), {args.plays} plays: new play median "
                      f"{statistics.median(cold) * 1000:.0f} ms, max {max(cold) * 1000:.0f} ms; "
                      f"just arrived (catalogued by that request) median "
                      f"{statistics.median(arrived) * 1000:.0f} ms, max "
                      f"{max(arrived) * 1000:.0f} ms; a seek in a play median "
                      f"{statistics.median(warm) * 1000:.0f} ms")  # fmt: skip
        finally:
            server.stop()


if __name__ == "__main__":
    main()
