"""A site as `linerec collector enroll` sets it up: a real mosquitto with TLS, client
certificates and per-device ACLs, two enrolled devices (box1, box2) and a collector.

`enrol_site` and `TlsBroker` do the slow part once (keys, CSRs, certificates); a test starts its
own `Collector` on a fresh data directory against them. `DeviceLink` is one device on the wire:
a raw MQTT client holding that device's certificate (what a reprogrammed box can do), and
`HonestDevice` is a device running the real appliance code (ring + uplink)."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import databases
from broker import free_port
from calls import record_call
from linerec.collector.config import load_collector_config
from linerec.collector.service import Collector
from linerec.config import load_config
from linerec.daemon.storage import open_store, open_uplink
from linerec.mqttapi import CHUNK, verify
from linerec.store.keys import keygen, load_public
from linerec.store.ring import RingStore
from linerec.uplink.client import Uplink

LINEREC = [sys.executable, "-m", "linerec.cli"]
DEVICES = ("box1", "box2")


@dataclass(frozen=True, slots=True, kw_only=True)
class Site:
    root: Path
    site: Path  # the CA, broker and collector certificates, mosquitto.conf, acl
    port: int
    configs: dict[str, Path]  # device -> its linerec.toml

    def collector_config(self, data_dir: Path, extra: str = "") -> Path:
        """A collector's configuration; its database on the test's engine (tests/databases.py)
        unless `extra` names one."""
        path = data_dir.with_suffix(".toml")
        if "database" not in extra:
            extra = databases.selected.config_line(data_dir) + extra
        path.write_text(
            f'[collector]\nbroker = "mqtts://127.0.0.1:{self.port}"\ndata_dir = "{data_dir}"\n'
            f'key = "{self.root / "keys" / "collector.key"}"\nca = "{self.site / "ca.crt"}"\n'
            f'cert = "{self.site / "linerec-collector.crt"}"\n'
            f'client_key = "{self.site / "linerec-collector.key"}"\n{extra}'
        )
        return path

    def sim_box_config(self, device: str, directory: Path, extra: str = "") -> Path:
        """`device`'s enrolled configuration for `linerec run` on the simulated line (no
        calls), its ring in `directory`, with `extra` sections (TOML) before [uplink]."""
        text = self.configs[device].read_text()
        text = text.replace(f'dir = "{device}-ring"', f'dir = "{directory / "ring"}"')
        text = text.replace(
            "[uplink]", f'[hardware]\nbackend = "sim"\n[sim]\ncalls = []\n{extra}[uplink]'
        )
        text = text.replace(
            'recipients = ["keys/collector.pub"]',
            f'recipients = ["{self.root / "keys" / "collector.pub"}"]',
        )
        config = directory / f"{device}.toml"
        config.write_text(text)
        return config


def enrol_device(root: Path, name: str, site: Path, port: int) -> Path:
    config = root / f"{name}.toml"
    config.write_text(
        f'[device]\nid = "{name}"\n[store]\ndir = "{name}-ring"\n'
        'recipients = ["keys/collector.pub"]\n'
    )
    out = subprocess.run(
        [*LINEREC, "uplink", "csr", "--config", str(config), "--out", str(root / name)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    enrolled = subprocess.run(
        [
            *LINEREC,
            "collector",
            "enroll",
            str(root / name / f"{name}.csr"),
            "--site",
            str(site),
            "--broker-name",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        capture_output=True,
        text=True,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    config.write_text(
        config.read_text() + f'[uplink]\nbroker = "mqtts://127.0.0.1:{port}"\n'
        f'ca = "{site / "ca.crt"}"\ncert = "{site / "devices" / f"{name}.crt"}"\n'
        f'key = "{root / name / "device.key"}"\n'
    )
    return config


def enrol_site(root: Path) -> Site:
    keygen(root / "keys")
    site, port = root / "site", free_port()
    configs = {name: enrol_device(root, name, site, port) for name in DEVICES}
    conf = site / "mosquitto.conf"
    assert conf.read_text().count("require_certificate true") == 1
    # The tests run as root and pytest's temporary directory is root's alone, so the broker
    # must not drop to the mosquitto user here (on a site it does, and owns its key).
    conf.write_text(conf.read_text() + "user root\n")
    return Site(root=root, site=site, port=port, configs=configs)


class TlsBroker:
    """mosquitto started with the configuration `linerec collector enroll` wrote."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> TlsBroker:
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(self.site.site / "mosquitto.conf")], stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.site.port)) == 0:
                    return self
            assert self.process.poll() is None, self.process.stderr.read()  # type: ignore[union-attr]
            time.sleep(0.05)
        raise AssertionError("the TLS broker did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


class RunningCollector:
    """A Collector in its own thread, on a data directory of its own."""

    def __init__(
        self,
        site: Site,
        data_dir: Path,
        extra_config: str = "",
        clock: Callable[[], float] | None = None,
    ) -> None:
        settings = load_collector_config(site.collector_config(data_dir, extra_config))
        self.collector = Collector(
            settings, client_id=f"collector-{time.monotonic_ns()}", clock=clock or time.time
        )
        self.data_dir = data_dir
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.collector.run, args=(self._stop,), daemon=True)

    def __enter__(self) -> Collector:
        self._thread.start()
        assert self.collector.ready.wait(10), self.collector.problems
        return self.collector

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


class DeviceLink:
    """One device's certificate on a raw MQTT client: sends anything, reads its own acks."""

    def __init__(self, site: Site, name: str) -> None:
        self.site, self.name = site, name
        self.acks: list[dict[str, object]] = []
        self.payloads: list[bytes] = []  # the acks as signed and sent
        self._new = threading.Condition()
        self._collector = load_public(site.root / "keys" / "collector.pub")
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            protocol=mqtt.MQTTv5,
            client_id=f"{name}-raw-{time.monotonic_ns()}",
        )
        client.tls_set(
            ca_certs=str(site.site / "ca.crt"),
            certfile=str(site.site / "devices" / f"{name}.crt"),
            keyfile=str(site.root / name / "device.key"),
        )
        client.on_message = self._on_message
        self.client = client

    def __enter__(self) -> DeviceLink:
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", self.site.port)
        self.client.subscribe(f"linerec/v1/{self.name}/ack", qos=1)
        self.client.loop_start()
        assert subscribed.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        body = verify(self._collector.signing, bytes(message.payload), message.topic)
        with self._new:
            self.payloads.append(bytes(message.payload))
            self.acks.append(body)
            self._new.notify_all()

    def publish(self, topic: str, payload: bytes, properties: Properties | None = None) -> None:
        info = self.client.publish(topic, payload, qos=1, properties=properties)
        info.wait_for_publish(10)

    def upload(self, recording_id: str, data: bytes, *, size: int | None = None) -> str:
        """Publish `data` as the pieces of an upload under this device; returns its SHA-256."""
        digest = hashlib.sha256(data).hexdigest()
        for offset in range(0, len(data), CHUNK) or [0]:
            self.piece(
                recording_id, offset, data[offset : offset + CHUNK], size or len(data), digest
            )
        return digest

    def piece(self, recording_id: str, offset: int, data: bytes, size: int, digest: str) -> None:
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.UserProperty = [
            ("offset", str(offset)),
            ("size", str(size)),
            ("sha256", digest),
        ]
        self.publish(f"linerec/v1/{self.name}/upload/{recording_id}", data, properties)

    def wait_ack(self, timeout: float = 10, count: int = 1, **fields: object) -> dict[str, object]:
        """The `count`th ack whose fields include `fields` (AssertionError after `timeout` s)."""
        deadline = time.monotonic() + timeout
        with self._new:
            while True:
                found = [a for a in self.acks if all(a.get(k) == v for k, v in fields.items())]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                assert left > 0, f"no ack with {fields} for {self.name}; got {self.acks}"
                self._new.wait(left)


class HonestDevice:
    """A device running the real appliance code: its ring and its uplink, connected."""

    def __init__(self, site: Site, name: str) -> None:
        config = load_config(site.configs[name])
        self.name = name
        self.ring: RingStore = open_store(config, emit=lambda e: None, clock=time.monotonic)
        self.problems: list[str] = []
        self.uplink: Uplink = open_uplink(config, self.ring, on_problem=self.problems.append)

    def __enter__(self) -> HonestDevice:
        self.uplink.start()
        deadline = time.monotonic() + 10
        while not self.uplink.connected:
            assert time.monotonic() < deadline, self.problems
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.uplink.stop()

    def record(self, seconds: float = 1.0) -> str:
        """A short call, sealed in the ring; returns its id."""
        return record_call(self.ring, seconds, self.name, consent="notice").id

    def upload_and_wait(self, timeout: float = 20) -> str:
        """Record a call and wait until the collector's signed ack has reached the ring."""
        recording_id = self.record()
        self.uplink.kick()
        deadline = time.monotonic() + timeout
        while recording_id in {e.id for e in self.ring.sealed()}:
            assert time.monotonic() < deadline, f"{recording_id} not acked: {self.problems}"
            time.sleep(0.02)
        return recording_id


def event(seq: object, **fields: object) -> bytes:
    return json.dumps({"seq": seq, "event": "ringing", "line": "line1", **fields}).encode()
