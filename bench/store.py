"""Benchmark of the encrypted ring store: prints figures, asserts nothing.

    .venv/bin/python bench/store.py [--minutes 60] [--runs 5]

Per codec, an hour of 8 kHz audio written 20 ms at a time through RingStore (encode,
ChaCha20-Poly1305, 4 KiB records, fdatasync per record) to a real directory:

* bytes on card per recorded hour, against the codec payload (target: within 1 %);
* CPU of encode + encrypt + write as a real-time factor (target: >= 2000x on this machine),
  median of the runs, and the same with fdatasync left out (to show what the syncs cost);
* fdatasyncs per minute of recording, counted at the Disk interface.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from linerec.codec import RATE, Codec
from linerec.store.base import RecordingInfo
from linerec.store.disk import OsDisk
from linerec.store.keys import keygen, load_or_create_identity, load_public
from linerec.store.ring import RingStore

FRAME = 160


class CountingDisk(OsDisk):
    def __init__(self, sync: bool = True) -> None:
        self.syncs = 0
        self.sync = sync

    def datasync(self, handle: int) -> None:
        self.syncs += 1
        if self.sync:
            super().datasync(handle)


def audio(minutes: float) -> np.ndarray:
    rng = np.random.default_rng(3)
    n = round(minutes * 60 * RATE)
    t = np.arange(n) / RATE
    return (4000 * np.sin(2 * np.pi * 330 * t) + rng.normal(0, 800, n)).astype(np.int16)


def one_run(
    directory: Path, public: Path, codec: Codec, samples: np.ndarray, sync: bool
) -> dict[str, float]:
    disk = CountingDisk(sync)
    ring = RingStore(
        directory,
        recipients=[load_public(public)],
        identity=load_or_create_identity(directory / "identity.key"),
        codec=codec,
        disk=disk,
    )
    info = RecordingInfo(
        device_id="bench",
        line="line1",
        label="",
        direction="inbound",
        consent="notice",
        started_at=datetime.now(UTC),
        clock_synchronized=True,
    )
    frames = [samples[i : i + FRAME] for i in range(0, len(samples), FRAME)]
    start = time.process_time()
    writer = ring.begin(info)
    for frame in frames:
        writer.write(frame)
    sealed = writer.seal(ended_by="hang-up")
    cpu = time.process_time() - start
    size = sealed.path.stat().st_size
    sealed.path.unlink()
    return {"cpu": cpu, "bytes": size, "syncs": disk.syncs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    seconds = args.minutes * 60
    samples = audio(args.minutes)
    print(
        f"linerec bench/store.py: {args.minutes:g} min of audio per run, {args.runs} runs, "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        _, public = keygen(Path(tmp) / "keys")
        for codec in Codec:
            payload = len(samples) * codec.bytes_per_sample
            results = [
                one_run(Path(tmp) / f"{codec.value}{i}", public, codec, samples, True)
                for i in range(args.runs)
            ]
            unsynced = [
                one_run(Path(tmp) / f"{codec.value}n{i}", public, codec, samples, False)
                for i in range(args.runs)
            ]
            size = results[0]["bytes"]
            overhead = 100 * (size - payload) / payload
            factor = seconds / statistics.median(r["cpu"] for r in results)
            factor_nosync = seconds / statistics.median(r["cpu"] for r in unsynced)
            per_hour = size * 3600 / seconds
            print(
                f"{codec.value:6} {per_hour / 1e6:7.2f} MB per recorded hour on card, payload "
                f"{payload * 3600 / seconds / 1e6:7.2f} MB: "
                f"overhead {overhead:.2f} % (target <= 1 %)"
            )
            print(
                f"       encode+encrypt+write real-time x{factor:6.0f} (median; target >= 2000), "
                f"x{factor_nosync:6.0f} without fdatasync; "
                f"{results[0]['syncs'] / args.minutes:.0f} fdatasyncs per minute"
            )


if __name__ == "__main__":
    main()
