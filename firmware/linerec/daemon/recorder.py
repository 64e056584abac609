"""A running recorder, wired once: store, event outbox, uplink and the daemon over a backend.

`linerec run`, `linerec simulate` and the benches all build their recorder here, so what
runs on a Pi is what the simulation and the benchmarks measure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from linerec.call.events import CallEvent
from linerec.config import Config
from linerec.daemon.notify import Notifier
from linerec.daemon.service import Daemon
from linerec.daemon.storage import (
    cert_expiry,
    open_outbox,
    open_store,
    open_uplink,
    queueing,
    recertifying,
    rekeying,
)
from linerec.daemon.updating import open_updating
from linerec.hardware.backend import Backend
from linerec.store.ring import RingStore

if TYPE_CHECKING:  # MQTT (paho) is loaded only when the configuration has an [uplink]
    from linerec.uplink.client import Uplink
    from linerec.uplink.outbox import EventOutbox


@dataclass(slots=True)
class Recorder:
    config: Config
    backend: Backend
    store: RingStore
    daemon: Daemon
    uplink: Uplink | None  # None: no [uplink], or one that only queues (simulate)
    outbox: EventOutbox | None  # the events waiting on the card for the collector

    def run(self, stop: threading.Event, *, until: float | None = None) -> None:
        """Start, run until `stop` (or every line has reached `until`), then stop in order:
        recordings sealed before the uplink goes."""
        if self.uplink is not None:
            self.uplink.start()
        try:
            self.daemon.start()
            try:
                self.daemon.run(stop, until=until)
            finally:
                self.daemon.shutdown()
        finally:
            if self.uplink is not None:
                self.uplink.stop()  # which closes the outbox
            elif self.outbox is not None:
                self.outbox.close()  # every event on the card before we return


def build_recorder(
    config: Config,
    backend: Backend,
    *,
    emit: Callable[[CallEvent], None],
    recipients: list[Path] | None = None,
    connect: bool = True,
    notifier: Notifier | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    t0: float | None = None,
) -> Recorder:
    """The recorder of `config` on `backend`.

    Every event goes to `emit`; with an `[uplink]` section each is also queued durably on the
    card for the collector, and with `connect` the uplink sends it (and the recordings).
    `t0` is the backend time event times count from (default: now).
    """
    start = backend.clock() if t0 is None else t0
    sinks: list[Callable[[CallEvent], None]] = [emit]  # the store reports through it too
    store = open_store(
        config, emit=lambda event: sinks[0](event), clock=backend.clock, recipients=recipients
    )
    uplink, outbox = None, None
    daemons: list[Daemon] = []
    if config.uplink is not None:
        outbox = open_outbox(config, recipients)  # one per process: the uplink sends from it
        if connect:
            uplink = open_uplink(
                config,
                store,
                on_command=lambda command: daemons[0].submit_command(command),
                outbox=outbox,
            )
        sinks[0] = queueing(emit, outbox, device_id=config.uplink.device_id, t0=start)

    updating = open_updating(
        config,
        report=lambda event: daemons[0].report(event),
        emit=lambda event: sinks[0](event),
        clock=backend.clock,
    )

    def on_tick(now: float, idle: bool) -> None:
        if updating is not None:
            updating.supervisor.tick(now, idle=idle, uplink=uplink.connected if uplink else None)

    def update_health() -> dict[str, object]:
        return {"update": updating.supervisor.health()} if updating is not None else {}

    key_actions: dict[str, Callable[[dict[str, str]], None]] = {}
    if outbox is not None:
        key_actions.update(rekey=rekeying(config, store, outbox), cert=recertifying(config))
    if updating is not None:
        key_actions["update"] = updating.command

    def expiry() -> str | None:  # the certificate may be renewed while the box runs
        return cert_expiry(config)

    daemon = Daemon(
        config,
        backend,
        store,
        emit=sinks[0],
        notifier=notifier,
        monotonic=monotonic,
        on_status_request=uplink.publish_status if uplink else lambda: None,
        on_health=(
            (
                lambda health: uplink.publish_health(
                    {**health, "tls_cert_expires": expiry(), **update_health()}
                )
            )
            if uplink
            else lambda health: None
        ),
        uplink_connected=(lambda: uplink.connected) if uplink else None,
        key_actions=key_actions,
        on_tick=on_tick,
    )
    daemons.append(daemon)
    return Recorder(
        config=config, backend=backend, store=store, daemon=daemon, uplink=uplink, outbox=outbox
    )
