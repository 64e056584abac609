"""A collector holding real recordings for the console's tests, and the console over it.

Two calls are recorded by the simulated appliance (an inbound call with caller ID on line1,
label "sales"; an outbound call on line2, label "support"), encrypted to the collector's
key, and delivered through a real mosquitto broker and `linerec uplink flush`, so the
console serves real sealed recordings from the real collector store.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyotp
import uvicorn

import databases
from broker import Mosquitto
from linerec.broker import Broker
from linerec.collector.accounts import Accounts
from linerec.collector.config import load_collector_config
from linerec.collector.database import connect
from linerec.collector.service import Collector
from linerec.collector.store import CollectorStore
from linerec.collector.web.app import build_app
from linerec.collector.web.service import ConsoleService
from linerec.config import load_config
from linerec.daemon.simulate import example_call, simulate
from linerec.mqttapi import make_client
from linerec.store.keys import keygen

LINEREC = [sys.executable, "-m", "linerec.cli"]
PASSWORD = "correct horse battery"


@dataclass
class Clock:
    """The console's clock, moved by the test (sessions, lockouts, TOTP steps)."""

    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now


def deliver(root: Path, calls: list[Path] | None = None) -> Path:
    """Record two calls (or `calls`) and deliver them to a collector; returns its
    collector.toml."""
    root.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(root).start()
    try:
        keygen(root / "keys")
        appliance = root / "linerec.toml"
        appliance.write_text(
            '[device]\nid = "box1"\n[store]\ndir = "ring"\nrecipients = ["keys/collector.pub"]\n'
            f'[uplink]\nbroker = "{broker.url}"\nallow_plaintext = true\n'
            '[[line]]\nname = "line1"\nlabel = "sales"\n'
            '[[line]]\nname = "line2"\nlabel = "support"\n'
        )
        collector_toml = root / "collector.toml"
        collector_toml.write_text(
            f'[collector]\nbroker = "{broker.url}"\nallow_plaintext = true\ndata_dir = "central"\n'
            'key = "keys/collector.key"\n'
        )
        outbound = root / "outbound-line2.toml"
        outbound.write_text(
            example_call("outbound.toml").read_text().replace('line = "line1"', 'line = "line2"')
        )
        simulate(
            calls or [example_call("inbound.toml"), outbound],
            config=load_config(appliance),
            store_dir=None,
            emit=lambda e: None,
        )
        collector = Collector(
            load_collector_config(collector_toml), client_id=f"collector-{time.monotonic_ns()}"
        )
        stop = threading.Event()
        thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
        thread.start()
        assert collector.ready.wait(10)
        try:
            flush = subprocess.run(
                [*LINEREC, "uplink", "flush", "--config", str(appliance)],
                capture_output=True,
                text=True,
            )
            assert flush.returncode == 0, flush.stderr
        finally:
            stop.set()
            thread.join(10)
        assert len(collector.store.recordings()) == (len(calls) if calls else 2)
    finally:
        broker.stop()
    return collector_toml


def copy_site(delivered: Path, to: Path) -> Path:
    """A private copy of a delivered collector (its data and keys), for a test that changes it."""
    shutil.copytree(delivered.parent, to, ignore=shutil.ignore_patterns("mosquitto-*", "ring"))
    copy = to / delivered.name
    database = load_collector_config(copy).database
    if databases.selected.engine != "sqlite":  # the test's engine: the rows copied onto it
        target = databases.selected.location(to / "central" / "collector.db")
        databases.copy_rows(database, target)
        copy.write_text(copy.read_text() + databases.selected.config_line(to / "central"))
        database = target
    db = connect(database)  # the index names files by absolute path: the copy's
    db.execute("UPDATE recordings SET path = replace(path, ?, ?)", (str(delivered.parent), str(to)))
    db.close()
    return copy


def console(collector_toml: Path, clock: Clock, idle_seconds: float = 900.0) -> ConsoleService:
    settings = load_collector_config(collector_toml)
    store = CollectorStore(settings.data_dir, settings.database)
    return ConsoleService(store, settings.key, idle_seconds=idle_seconds, clock=clock)


def add_user(service: ConsoleService, name: str, role: str, *grants: tuple[str, str]) -> pyotp.TOTP:
    """An account with PASSWORD; returns its authenticator (codes computed by the test)."""
    accounts: Accounts = service.accounts
    account = accounts.add(name, role, PASSWORD)
    for kind, value in grants:
        accounts.grant(name, kind, value)
    return pyotp.TOTP(account.secret)


class Server:
    """The console app served by uvicorn in a thread on a free loopback port. The socket is
    listening before the thread starts, so a request made at once waits in its backlog."""

    def __init__(self, service: ConsoleService) -> None:
        self.service = service
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(build_app(service), log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class FleetFeed:
    """A collector receiving from a fresh mosquitto, over the same store as a delivered site,
    and a device's client that publishes its retained status and health there. `publish`
    returns once the collector has committed (or refused) the message: it waits on the collector's
    own store call or problem report, with a bounded timeout."""

    def __init__(self, site: Path) -> None:
        import re

        self.broker = Mosquitto(site.parent).start()
        config = site.with_name("collector-fleet.toml")
        config.write_text(
            re.sub(r'broker = "[^"]*"', f'broker = "{self.broker.url}"', site.read_text())
        )
        self.collector = Collector(
            load_collector_config(config), client_id=f"fleet-{time.monotonic_ns()}"
        )
        self.kept = threading.Event()
        store = self.collector.store
        keep = store.keep_status

        def keep_and_tell(*args: object, **kwargs: object) -> None:
            keep(*args, **kwargs)  # type: ignore[arg-type]
            # Told once the batch it is in commits: the console reads on its own connection.
            store.db.after_commit(self.kept.set)

        store.keep_status = keep_and_tell  # type: ignore[method-assign]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.collector.run, args=(self.stop,), daemon=True)
        self.device = make_client(
            f"device-{time.monotonic_ns()}",
            Broker(host="127.0.0.1", port=self.broker.port, tls=False),
        )

    def __enter__(self) -> FleetFeed:
        self.thread.start()
        assert self.collector.ready.wait(10)
        self.device.connect("127.0.0.1", self.broker.port)
        self.device.loop_start()
        return self

    def publish(self, device: str, kind: str, body: object) -> None:
        problems = len(self.collector.problems)
        self.kept.clear()
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        info = self.device.publish(f"linerec/v1/{device}/{kind}", payload, qos=1, retain=True)
        info.wait_for_publish(10)
        deadline = time.monotonic() + 10
        while not self.kept.wait(0.05):  # a refusal is reported, not kept
            if len(self.collector.problems) > problems:
                return
            assert time.monotonic() < deadline, f"the collector did not take {kind} of {device}"

    def __exit__(self, *exc: object) -> None:
        self.device.loop_stop()
        self.device.disconnect()
        self.stop.set()
        self.thread.join(10)
        self.broker.stop()
