"""Installing bundles with the real RAUC: `rauc service` on a private D-Bus bus, two root slots
that are files, booted from A. A good bundle lands in slot B and leaves a pending update on the
data partition; a refused one changes nothing; a bundle fetched over HTTP (loopback) goes the
same way. Then the recorder's side: reboot only when every line is idle (or max_wait_s ran
out), the slot marked good on trial once READY and connected, a rollback reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from linerec.call.events import CallEvent
from linerec.update import rauc
from linerec.update.events import (
    UpdateCompleted,
    UpdateInstalled,
    UpdateProgress,
    UpdateRebooting,
    UpdateRefused,
    UpdateRolledBack,
)
from linerec.update.installer import Updater
from linerec.update.state import Pending, UpdateState, current_boot_id
from linerec.update.supervisor import UpdateSupervisor
from linerec.update.system import read_system
from rauc_system import SLOT_BYTES, RaucService, Signer, make_bundle
from update_fixtures import service, signers, web  # noqa: F401


def updater(service: RaucService, store: Path, events: list[CallEvent]) -> Updater:
    store.mkdir(exist_ok=True)
    return Updater(
        system=read_system(service.conf),
        state=UpdateState(store),
        running_version="1.2.0",
        emit=events.append,
        clock=lambda: 0.0,
    )


def slot(service: RaucService, name: str) -> bytes:
    return (service.directory / f"root{name}.img").read_bytes()


def test_a_good_bundle_is_installed_into_the_other_slot(
    tmp_path: Path, service: RaucService, signers: tuple[Signer, Signer]
) -> None:
    bundle = make_bundle(tmp_path, signers[0], version="1.3.0")
    events: list[CallEvent] = []
    pending = updater(service, tmp_path / "store", events).install_file(bundle)
    assert pending == Pending(
        version="1.3.0",
        slot="B",
        previous="1.2.0",
        previous_slot="A",
        boot_id=current_boot_id(),
    )
    assert slot(service, "B").startswith(b"linerec root 1.3.0\n")
    assert slot(service, "A") == b"\0" * SLOT_BYTES  # the booted slot is never written
    assert UpdateState(tmp_path / "store").pending() == pending
    progress = [e for e in events if isinstance(e, UpdateProgress)]
    assert progress[0].percent == 0 and progress[-1].percent == 100
    assert any("Copying image to rootfs.1" in e.step for e in progress)
    assert isinstance(events[-1], UpdateInstalled)
    assert (events[-1].version, events[-1].slot) == ("1.3.0", "B")


@pytest.mark.parametrize("case", ["stranger", "older", "other-board", "altered"])
def test_a_refused_bundle_changes_nothing(
    tmp_path: Path, service: RaucService, signers: tuple[Signer, Signer], case: str
) -> None:
    release, stranger = signers
    if case == "stranger":
        bundle = make_bundle(tmp_path, stranger, version="1.3.0")
    elif case == "older":
        bundle = make_bundle(tmp_path, release, version="1.1.0")
    elif case == "other-board":
        bundle = make_bundle(tmp_path, release, version="1.3.0", compatible="linerec-x86-64")
    else:
        bundle = make_bundle(tmp_path, release, version="1.3.0")
        data = bytearray(bundle.read_bytes())
        data[len(data) // 3] ^= 0x40
        bundle.write_bytes(bytes(data))
    events: list[CallEvent] = []
    assert updater(service, tmp_path / "store", events).install_file(bundle) is None
    assert slot(service, "B") == b"\0" * SLOT_BYTES and slot(service, "A") == b"\0" * SLOT_BYTES
    assert UpdateState(tmp_path / "store").pending() is None
    refused = events[-1]
    assert isinstance(refused, UpdateRefused)
    kind = {"stranger": "untrusted", "older": "older", "other-board": "incompatible"}
    assert refused.kind == kind.get(case, "altered")
    assert str(bundle) in refused.reason
    # RAUC itself refuses it too, when asked directly (the check before it is not the only one)
    if case in ("stranger", "altered"):
        with pytest.raises(rauc.RaucFailed):
            rauc.install(bundle, lambda percent, step: None)
        assert slot(service, "B") == b"\0" * SLOT_BYTES


def test_a_bundle_is_fetched_over_http_and_installed(
    tmp_path: Path,
    service: RaucService,
    signers: tuple[Signer, Signer],
    web: tuple[str, Path],
) -> None:
    url, root = web
    make_bundle(root, signers[0], version="1.4.0", name="linerec-1.4.0.raucb")
    events: list[CallEvent] = []
    update = updater(service, tmp_path / "store", events)
    pending = update.install_url(f"{url}/linerec-1.4.0.raucb")
    assert pending is not None and pending.version == "1.4.0"
    assert slot(service, "B").startswith(b"linerec root 1.4.0\n")
    assert not update.state.download.exists()  # the download does not stay on the card
    assert any(isinstance(e, UpdateProgress) and e.step == "fetching" for e in events)

    events.clear()
    assert update.install_url(f"{url}/absent.raucb") is None
    refused = events[-1]
    assert isinstance(refused, UpdateRefused) and refused.kind == "fetch"
    assert "absent.raucb: could not fetch the bundle (HTTP Error 404" in refused.reason
    events.clear()
    assert update.install_url("file:///etc/passwd") is None
    assert isinstance(events[-1], UpdateRefused) and "must be http:// or https://" in str(
        events[-1].reason
    )


# -- the recorder's side after the install ----------------------------------------------------


class Box:
    """An UpdateSupervisor over a real state directory, with the clock in the test's hand."""

    def __init__(self, store: Path, *, booted: str, boot_id: str, mark_good: object = None):
        self.events: list[CallEvent] = []
        self.marked = 0
        self.activated = 0
        self.state = UpdateState(store)

        def mark() -> None:
            self.marked += 1

        def activate() -> None:
            self.activated += 1

        self.supervisor = UpdateSupervisor(
            self.state,
            booted=booted,
            running_version="1.3.0" if booted == "B" else "1.2.0",
            boot_id=boot_id,
            mark_good=mark_good if callable(mark_good) else mark,
            mark_active=activate,
            emit=self.events.append,
            clock=lambda: 0.0,
            max_wait=600.0,
            trial_wait=120.0,
        )


PENDING = Pending(version="1.3.0", slot="B", previous="1.2.0", previous_slot="A", boot_id="boot-1")


def test_every_boot_marks_its_slot_good_once_ready(tmp_path: Path) -> None:
    # U-Boot counts every boot down: without this, three power cuts would switch releases
    box = Box(tmp_path, booted="A", boot_id="boot-1")
    box.supervisor.tick(0.0, idle=False, uplink=False)
    assert box.marked == 1 and box.events == []
    box.supervisor.tick(10.0, idle=True, uplink=True)
    assert box.marked == 1


def test_the_reboot_waits_until_every_line_is_idle(tmp_path: Path) -> None:
    box = Box(tmp_path, booted="A", boot_id="boot-1")
    box.supervisor.tick(0.0, idle=True, uplink=True)
    assert not box.state.reboot_requested()  # nothing installed yet
    box.state.set_pending(PENDING)
    for t in (10.0, 20.0, 300.0):  # a call goes on
        box.supervisor.tick(t, idle=False, uplink=True)
    assert not box.state.reboot_requested() and box.events == []
    box.supervisor.tick(320.0, idle=True, uplink=True)  # hung up
    assert box.state.reboot_requested()
    (event,) = box.events
    assert isinstance(event, UpdateRebooting) and not event.forced
    assert event.waited == 310.0


def test_the_reboot_waits_no_longer_than_max_wait(tmp_path: Path) -> None:
    box = Box(tmp_path, booted="A", boot_id="boot-1")
    box.state.set_pending(PENDING)
    box.supervisor.tick(0.0, idle=False, uplink=None)
    box.supervisor.tick(599.0, idle=False, uplink=None)
    assert not box.state.reboot_requested()
    box.supervisor.tick(601.0, idle=False, uplink=None)
    assert box.state.reboot_requested()
    (event,) = box.events
    assert isinstance(event, UpdateRebooting) and event.forced


def test_the_new_slot_is_marked_good_once_the_uplink_connects(tmp_path: Path) -> None:
    box = Box(tmp_path, booted="B", boot_id="boot-2")
    box.state.set_pending(PENDING)
    box.supervisor.tick(0.0, idle=True, uplink=False)
    box.supervisor.tick(500.0, idle=True, uplink=False)
    assert box.marked == 0 and box.events == []  # READY is not enough with an uplink
    box.supervisor.tick(510.0, idle=True, uplink=True)
    assert box.marked == 1
    (event,) = box.events
    assert isinstance(event, UpdateCompleted)
    assert (event.version, event.slot, event.previous) == ("1.3.0", "B", "1.2.0")
    assert box.state.pending() is None
    box.supervisor.tick(600.0, idle=True, uplink=True)
    assert box.marked == 1  # once


def test_without_an_uplink_the_slot_is_marked_good_after_trial_s(tmp_path: Path) -> None:
    box = Box(tmp_path, booted="B", boot_id="boot-2")
    box.state.set_pending(PENDING)
    box.supervisor.tick(1000.0, idle=True, uplink=None)
    box.supervisor.tick(1119.0, idle=True, uplink=None)
    assert box.marked == 0
    box.supervisor.tick(1121.0, idle=True, uplink=None)
    assert box.marked == 1 and isinstance(box.events[-1], UpdateCompleted)


def test_a_rollback_is_reported_once(tmp_path: Path) -> None:
    box = Box(tmp_path, booted="A", boot_id="boot-5")  # U-Boot gave up on B
    box.state.set_pending(PENDING)
    box.supervisor.tick(0.0, idle=True, uplink=True)
    box.supervisor.tick(10.0, idle=True, uplink=True)
    (event,) = box.events
    assert isinstance(event, UpdateRolledBack)
    assert (event.version, event.slot, event.running, event.booted) == ("1.3.0", "B", "1.2.0", "A")
    assert box.activated == 1  # A first in the boot order again
    assert box.state.pending() is None


def test_marking_good_through_the_real_rauc_service(tmp_path: Path, service: RaucService) -> None:
    box = Box(tmp_path, booted="A", boot_id="boot-2", mark_good=rauc.mark_good)
    box.state.set_pending(
        Pending(version="1.3.0", slot="A", previous="1.2.0", previous_slot="B", boot_id="boot-1")
    )
    box.supervisor.tick(0.0, idle=True, uplink=True)
    assert isinstance(box.events[-1], UpdateCompleted)
    assert "marked slot rootfs.0 as good" in (service.directory / "rauc-service.log").read_text()
