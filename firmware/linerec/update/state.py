"""An update between its install and its verdict, kept on the data partition (which no update
touches): which release went into which slot, from which, and in which boot.

    <store dir>/update/pending.json       written (synced) once RAUC installed a bundle
    <store dir>/update/reboot-requested   the recorder's request; linerec-update-reboot.path
                                          (root) removes it and reboots

The boot id (/proc/sys/kernel/random/boot_id) tells a restart of the recorder in the boot of
the install (still to reboot) from the boots after it (on trial, or back on the old slot).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from linerec.atomic import write_atomic

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
PENDING = "pending.json"
REBOOT = "reboot-requested"
DOWNLOAD = "download.raucb"


def current_boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Pending:
    version: str  # the release installed
    slot: str  # the slot it went into (bootname)
    previous: str  # the release running when it was installed
    previous_slot: str
    boot_id: str  # the boot it was installed in


class UpdateState:
    def __init__(self, store_dir: Path) -> None:
        self.dir = store_dir / "update"
        self._owner = store_dir  # files made by root (the CLI) stay the recorder's to remove

    @property
    def download(self) -> Path:
        return self.dir / DOWNLOAD

    def prepare(self) -> None:
        if not self.dir.is_dir():
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._give(self.dir)

    def pending(self) -> Pending | None:
        try:
            body = json.loads((self.dir / PENDING).read_text())
            return Pending(**{k: str(body[k]) for k in Pending.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError):
            return None  # none, or cut by a power loss before it was whole (then not installed)

    def set_pending(self, pending: Pending) -> None:
        self.prepare()
        path = self.dir / PENDING
        write_atomic(path, json.dumps(asdict(pending), sort_keys=True).encode(), sync_dir=True)
        self._give(path)

    def clear_pending(self) -> None:
        for name in (PENDING, DOWNLOAD):
            (self.dir / name).unlink(missing_ok=True)

    def request_reboot(self) -> None:
        self.prepare()
        path = self.dir / REBOOT
        write_atomic(path, b"update\n", sync_dir=True)
        self._give(path)

    def reboot_requested(self) -> bool:
        return (self.dir / REBOOT).exists()

    def _give(self, path: Path) -> None:
        if os.geteuid() == 0:
            owner = self._owner.stat()
            os.chown(path, owner.st_uid, owner.st_gid)
