"""Streaming open recordings to the collector (issue 15), over a real mosquitto on loopback.

The appliance side is the real ring (background syncs), outbox and uplink; audio is written
into the ring as the daemon writes it, 20 ms at a time, so a test decides when a call is in
progress, paused or hung up. The collector is the real one, on the same broker.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from broker import Mosquitto
from linerec.broker import Broker
from linerec.codec import Samples
from linerec.collector.config import load_collector_config
from linerec.collector.service import Collector
from linerec.store.base import RecordingInfo
from linerec.store.keys import keygen, load_public
from linerec.store.ring import EncryptedWriter, RingStore
from linerec.uplink.client import Uplink, UplinkSettings
from linerec.uplink.outbox import EventOutbox

FRAME = 160  # 20 ms at 8 kHz


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Bounded wait on something another thread or process does."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def speech(seconds: float, seed: int = 1) -> Samples:
    """Loud, never-repeating audio: any misplaced chunk shows."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * 8000)) * 6000).clip(-32000, 32000).astype(np.int16)


@dataclass
class Site:
    root: Path
    broker: Mosquitto
    collector: Collector
    ring: RingStore
    uplink: Uplink

    def begin(self) -> EncryptedWriter:
        writer = self.ring.begin(
            RecordingInfo(
                device_id="box1",
                line="line1",
                label="",
                direction="inbound",
                consent="one-party",
                started_at=datetime.now(UTC),
                clock_synchronized=True,
            )
        )
        assert isinstance(writer, EncryptedWriter)
        return writer

    def on_card(self, writer: EncryptedWriter) -> int:
        """Bytes of the open recording the card provably holds (every sync requested done)."""
        assert self.ring.syncer is not None
        self.ring.syncer.settle(writer)
        return writer.written.offset

    def held(self, recording_id: str) -> bytes:
        """What the collector holds of a recording in progress, from byte 0 without a hole."""
        received = self.collector.store.uploads.received("box1", recording_id)
        part = self.collector.store.uploads.part("box1", recording_id)
        return part.read_bytes()[:received] if received else b""

    def in_progress(self) -> list[str]:
        return [str(row["id"]) for row in self.collector.store.uploads.in_progress()]


def write(writer: EncryptedWriter, samples: Samples) -> None:
    for start in range(0, len(samples), FRAME):
        writer.write(samples[start : start + FRAME])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    keygen(tmp_path / "keys")
    broker = Mosquitto(tmp_path).start()
    (tmp_path / "collector.toml").write_text(
        f'[collector]\nbroker = "{broker.url}"\nallow_plaintext = true\ndata_dir = "central"\n'
        'key = "keys/collector.key"\n'
    )
    collector = Collector(load_collector_config(tmp_path / "collector.toml"))
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    thread.start()
    assert collector.ready.wait(10)
    public = load_public(tmp_path / "keys" / "collector.pub")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    ring = RingStore(
        tmp_path / "ring",
        recipients=[public],
        identity=Ed25519PrivateKey.generate(),
        device_id="box1",
        background_sync=True,
    )
    outbox = EventOutbox(tmp_path / "ring" / "outbox", recipients=[public])
    uplink = Uplink(
        UplinkSettings(
            broker=Broker.parse(broker.url, allow_plaintext=True),
            device_id="box1",
            collector=public,
        ),
        ring,
        outbox,
    )
    uplink.start()
    wait_until(lambda: uplink.connected, "the uplink to connect")
    try:
        yield Site(tmp_path, broker, collector, ring, uplink)
    finally:
        uplink.stop()
        stop.set()
        thread.join(10)
        broker.stop()


def test_a_call_streams_while_in_progress_and_matches_the_card(site: Site) -> None:
    writer = site.begin()
    for second in range(3):
        write(writer, speech(1.0, seed=second))
        synced = site.on_card(writer)
        # the collector comes to hold exactly what the card holds, while the call goes on
        wait_until(lambda: len(site.held(writer.id)) >= synced, f"{synced} bytes streamed")
        card = writer.path.read_bytes()
        assert site.held(writer.id) == card[:synced]
        assert site.in_progress() == [writer.id]
        assert site.collector.store.recordings() == []
    listed = site.collector.store.uploads.in_progress()
    assert listed[0]["received"] == synced
    writer.seal(ended_by="hang-up")
    wait_until(lambda: site.ring.entries[writer.id].acknowledged, "the signed ack of the whole")
    (row,) = site.collector.store.recordings()
    assert row["id"] == writer.id
    assert site.in_progress() == []
    stored = site.collector.store.stored("box1", writer.id)
    assert stored is not None
    assert stored[1] == hashlib.sha256(writer.path.read_bytes()).hexdigest()
