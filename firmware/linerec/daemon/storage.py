"""Opening the ring store from the configuration, and reporting what it does."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from linerec.atomic import remove_temps
from linerec.call.events import CallEvent
from linerec.config import Config
from linerec.daemon.callnotes import NOTES
from linerec.daemon.events import Fault, RecordingDeleted, StoreFilling
from linerec.daemon.report import event_record
from linerec.errors import ConfigError
from linerec.store import keys
from linerec.store.private import private_dir, sync_dir, tighten, write_private
from linerec.store.ring import QUARANTINE, RecordingQuarantined, RingStore, StoreEvent
from linerec.store.ring import RecordingDeleted as Deleted

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # MQTT (paho) is loaded only when the configuration has an [uplink]
    from linerec.uplink.client import Uplink
    from linerec.uplink.commands import Command, Refusal
    from linerec.uplink.outbox import EventOutbox


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
    from linerec.uplink.expiry import current_cert

    assert config.uplink is not None
    settings = UplinkSettings(
        broker=config.uplink.broker,
        device_id=config.uplink.device_id,
        collector=keys.load_public(config.uplink.collector),
        ca=config.uplink.ca,
        cert=current_cert(config.uplink.cert, config.store.dir),
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
    from linerec.uplink.outbox import EventOutbox  # its envelope is MQTT's: only with [uplink]

    paths = recipients if recipients is not None else list(config.store.recipients)
    public = keys.with_epoch([keys.load_public(path) for path in paths], config.store.dir)
    return EventOutbox(private_dir(config.store.dir) / "outbox", recipients=public)


def rekeying(
    config: Config, ring: RingStore, outbox: EventOutbox
) -> Callable[[dict[str, str]], None]:
    """What a checked `rekey` command does: keep the collector's new epoch key on the card
    (synced), then encrypt the next recording and seal the next event to it. The command is
    signed with the collector's Ed25519 key; that key names which recipient it replaces."""
    assert config.uplink is not None
    collector = keys.load_public(config.uplink.collector)

    def rekey(arguments: dict[str, str]) -> None:
        text = arguments["epoch"]
        epoch = int(text) if text.isdigit() else 0
        if not 1 <= epoch <= keys.MAX_EPOCH:
            raise ValueError(f"epoch must be an integer from 1 to {keys.MAX_EPOCH} (got {text!r})")
        raw = keys.unb64(arguments["x25519"], "x25519", Path("rekey"))
        signer = keys.raw_public(collector.signing)
        current = [r for r in ring.recipients if keys.raw_public(r.signing) == signer]
        if not current:
            raise ValueError("no recipient of this collector to replace")
        if epoch <= max(r.epoch for r in current):
            raise ValueError(
                f"epoch {epoch} is not above the current epoch {max(r.epoch for r in current)}"
            )
        public = keys.CollectorPublic(
            encryption=X25519PublicKey.from_public_bytes(raw),
            signing=collector.signing,
            path=config.store.dir / keys.EPOCH_FILE,
            epoch=epoch,
        )
        keys.save_epoch(config.store.dir, public)
        recipients = keys.with_epoch(list(ring.recipients), config.store.dir)
        ring.set_recipients(recipients)
        outbox.set_recipients(recipients)

    return rekey


def recertifying(config: Config) -> Callable[[dict[str, str]], None]:
    """What a checked `cert` command does: keep the renewed certificate on the card (synced)
    once it is this device's own; the uplink presents it from its next start."""
    assert config.uplink is not None
    uplink = config.uplink

    def recertify(arguments: dict[str, str]) -> None:
        from linerec.uplink import tls  # X.509: loaded when a certificate comes (issue 19)

        if uplink.key is None:
            raise ValueError("this device has no TLS key of its own ([uplink] key)")
        pem = arguments["pem"].encode()
        tls.check_renewed(pem, device_id=uplink.device_id, key=uplink.key, ca=uplink.ca)
        write_private(config.store.dir / keys.RENEWED_CERT, pem)
        sync_dir(config.store.dir)

    return recertify


def cert_expiry(config: Config) -> str | None:
    """When the certificate the uplink presents expires (ISO 8601), for the health telemetry."""
    if config.uplink is None:
        return None
    from linerec.uplink.expiry import current_cert, expires

    path = current_cert(config.uplink.cert, config.store.dir)
    try:
        return expires(path).isoformat() if path is not None else None
    except (OSError, ValueError):
        return None


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


def _remove_cut_files(store_dir: Path) -> None:
    """A replacement that a power cut or kill cut short left its temporary file: a renewed
    certificate's, an epoch key's or the calls in progress's (calls.json) in the store
    directory, a quarantined recording's reason beside it. It goes (logged); nothing else
    there is touched."""
    ours = {keys.RENEWED_CERT, keys.EPOCH_FILE, NOTES}
    cut = [
        *remove_temps(store_dir, lambda target: target in ours),
        *remove_temps(store_dir / QUARANTINE, lambda target: target.endswith(".why")),
    ]
    for temp in cut:
        log.warning("removed %s: a file replacement a power cut or kill cut short", temp)


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
    public = keys.with_epoch([keys.load_public(path) for path in paths], config.store.dir)
    _remove_cut_files(config.store.dir)
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
                    recording_seq=event.seq,
                    reason=event.reason,
                    acknowledged=event.acknowledged,
                    header_hash=event.header_hash,
                    prev=event.prev,
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
