"""One appliance and the collector on a real mosquitto on loopback (plaintext), both in this
process: box1's real ring (background syncs), outbox and uplink, and the real collector
receiving from it on a thread. The set-up of the tests that follow recordings from the card
to the collector while they are written (streaming, the console's live page, a database
outage)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker import Mosquitto
from calls import begin_call
from linerec.broker import Broker
from linerec.collector.config import load_collector_config
from linerec.collector.service import Collector
from linerec.store.keys import keygen, load_public
from linerec.store.ring import EncryptedWriter, RingStore
from linerec.uplink.client import Uplink, UplinkSettings
from linerec.uplink.outbox import EventOutbox


@dataclass
class StreamedSite:
    root: Path
    broker: Mosquitto
    collector: Collector
    ring: RingStore
    outbox: EventOutbox
    uplink: Uplink  # a test may start another in its place: the one here at the end is stopped

    @property
    def collector_toml(self) -> Path:
        return self.root / "collector.toml"

    def begin(self) -> EncryptedWriter:
        """A call on box1's line1 begins: its recording opens on the card."""
        return begin_call(self.ring)

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


def collector_toml(root: Path, broker: Mosquitto, database: str = "") -> Path:
    """root/collector.toml for a collector on `broker` (plaintext), its key made in root/keys
    and its data in root/central; `database` is its database line, if any."""
    keygen(root / "keys")
    config = root / "collector.toml"
    config.write_text(
        f'[collector]\nbroker = "{broker.url}"\nallow_plaintext = true\ndata_dir = "central"\n'
        f'key = "keys/collector.key"\n{database}'
    )
    return config


@contextmanager
def streamed_site(
    root: Path, database: str = "", client_id: str | None = None
) -> Iterator[StreamedSite]:
    """The site under `root`, its uplink started (not waited on); `database` is the
    collector.toml line that names the collector's database (none: SQLite in its data dir)."""
    broker = Mosquitto(root).start()
    config = collector_toml(root, broker, database)
    collector = Collector(load_collector_config(config), client_id=client_id)
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert collector.ready.wait(10)
        public = load_public(root / "keys" / "collector.pub")
        ring = RingStore(
            root / "ring",
            recipients=[public],
            identity=Ed25519PrivateKey.generate(),
            device_id="box1",
            background_sync=True,
        )
        outbox = EventOutbox(root / "ring" / "outbox", recipients=[public])
        settings = UplinkSettings(
            broker=Broker.parse(broker.url, allow_plaintext=True),
            device_id="box1",
            collector=public,
        )
        site = StreamedSite(root, broker, collector, ring, outbox, Uplink(settings, ring, outbox))
        site.uplink.start()
        try:
            yield site
        finally:
            site.uplink.stop()
    finally:
        stop.set()
        thread.join(10)
        broker.stop()
