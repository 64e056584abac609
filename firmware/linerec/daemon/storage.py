"""Opening the ring store from the configuration, and reporting what it does."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from linerec.call.events import CallEvent
from linerec.config import Config
from linerec.daemon.events import Fault, RecordingDeleted, StoreFilling
from linerec.daemon.report import event_record
from linerec.errors import ConfigError
from linerec.store import keys
from linerec.store.private import private_dir, tighten
from linerec.store.ring import RecordingDeleted as Deleted
from linerec.store.ring import RecordingQuarantined, RingStore, StoreEvent
from linerec.uplink.outbox import EventOutbox

if TYPE_CHECKING:  # MQTT (paho) is loaded only when the configuration has an [uplink]
    from linerec.uplink.client import Uplink
    from linerec.uplink.commands import Command, Refusal


def open_uplink(
    config: Config,
    ring: RingStore,
    on_problem: Callable[[str], None] = lambda message: None,
    on_command: Callable[[Command | Refusal], None] = lambda command: None,
    role: str = "",
    outbox: EventOutbox | None = None,
) -> Uplink:
    """The uplink of `[uplink]`, over the ring's own outbox directory (`outbox`: the one the
    daemon queues its events in; one per process, so only durable events are published).
    Stopping the uplink closes the outbox."""
    from linerec.uplink.client import Uplink, UplinkSettings

    assert config.uplink is not None
    settings = UplinkSettings(
        broker=config.uplink.broker,
        device_id=config.uplink.device_id,
        collector=keys.load_public(config.uplink.collector),
        ca=config.uplink.ca,
        cert=config.uplink.cert,
        key=config.uplink.key,
        stream=config.uplink.stream,
    )
    return Uplink(
        settings,
        ring,
        outbox or open_outbox(config),
        on_problem=on_problem,
        on_command=on_command,
        role=role,
    )


def open_outbox(config: Config, recipients: list[Path] | None = None) -> EventOutbox:
    """The event outbox in the store directory; events' fields are sealed to the store's
    recipients (or `recipients`), like the recordings."""
    paths = recipients if recipients is not None else list(config.store.recipients)
    return EventOutbox(
        private_dir(config.store.dir) / "outbox",
        recipients=[keys.load_public(path) for path in paths],
    )


def queueing(
    emit: Callable[[CallEvent], None],
    outbox: EventOutbox,
    *,
    device_id: str,
    t0: float,
) -> Callable[[CallEvent], None]:
    """`emit`, plus each event queued for the collector. No I/O here (the main loop calls it):
    the outbox's writer thread seals and syncs it, then wakes the uplink."""

    def report(event: CallEvent) -> None:
        emit(event)
        record = {
            "device": device_id,
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            **event_record(event, t0),
        }
        outbox.append(record)

    return report


def open_store(
    config: Config,
    *,
    emit: Callable[[CallEvent], None],
    clock: Callable[[], float],
    recipients: list[Path] | None = None,
) -> RingStore:
    """The ring at `[store] dir`, encrypting to `[store] recipients` (or `recipients`)."""
    paths = recipients if recipients is not None else list(config.store.recipients)
    if not paths:
        raise ConfigError(
            config.path,
            "store.recipients",
            "no recipient: name at least one collector .pub file (made by `linerec keygen`); "
            "the appliance records only what it cannot read itself",
        )
    public = [keys.load_public(path) for path in paths]
    tighten(config.store.dir)  # also what an earlier version made with the umask's modes
    capacity = config.store.capacity
    if not capacity:
        stats = os.statvfs(config.store.dir)
        capacity = int(stats.f_blocks * stats.f_frsize * 0.9)

    def report(event: StoreEvent) -> None:
        if isinstance(event, Deleted):
            emit(
                RecordingDeleted(
                    t=clock(),
                    line="",
                    id=event.id,
                    seq=event.seq,
                    reason=event.reason,
                    acknowledged=event.acknowledged,
                )
            )
        elif isinstance(event, RecordingQuarantined):  # a person must look at it
            emit(
                Fault(
                    t=clock(),
                    line="",
                    kind="store",
                    message=f"moved {event.path.name} to {event.path.parent}: {event.reason}",
                )
            )
        else:
            emit(StoreFilling(t=clock(), line="", percent=round(100 * event.fill, 1)))

    return RingStore(
        config.store.dir,
        recipients=public,
        identity=keys.load_or_create_identity(config.store.identity),
        codec=config.store.codec,
        capacity=capacity,
        when_full=config.store.when_full,
        warn_fill=config.store.warn_fill,
        max_age_days=config.store.max_age_days,
        device_id=config.device_id,
        on_event=report,
        background_sync=True,  # the audio loop never waits for the card
    )
