"""Installing one bundle: fetch it (from a URL), check it, have RAUC write the other slot,
then record the pending update on the data partition for the reboot and the trial.

Every outcome is an event: progress while it runs, then exactly one of UpdateRefused (a check
failed: nothing changed), UpdateFailed (RAUC could not write the other slot: the booted one is
as it was) or UpdateInstalled (the new release boots next). Runs beside the recorder (its own
thread in the daemon, or `linerec update install`): recording goes on meanwhile.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from linerec.call.events import CallEvent
from linerec.update import rauc
from linerec.update.bundle import Bundle, BundleRefused, check_bundle
from linerec.update.events import UpdateFailed, UpdateInstalled, UpdateProgress, UpdateRefused
from linerec.update.state import Pending, UpdateState, current_boot_id
from linerec.update.system import RaucSystem

log = logging.getLogger(__name__)

FETCH_TIMEOUT = 60.0  # seconds without a byte before a download is given up
RESERVE = 64 << 20  # bytes left free on the data partition after a download: the ring's
BLOCK = 1 << 16


@dataclass(frozen=True, slots=True, kw_only=True)
class Updater:
    system: RaucSystem
    state: UpdateState
    running_version: str
    emit: Callable[[CallEvent], None]
    clock: Callable[[], float]

    def install_url(self, url: str) -> Pending | None:
        """Download `url` onto the data partition, then install it as `install_file` does."""
        try:
            path = self._fetch(url)
        except (OSError, ValueError) as exc:  # urllib's URLError is an OSError
            reason = f"{url}: could not fetch the bundle ({exc})"
            log.error("update refused: %s", reason)
            self.emit(
                UpdateRefused(t=self.clock(), line="", kind="fetch", reason=reason, source=url)
            )
            return None
        try:
            return self.install_file(path, source=url)
        finally:
            path.unlink(missing_ok=True)

    def install_file(self, path: Path, *, source: str | None = None) -> Pending | None:
        """Check `path` and install it; the pending update, or None if refused or failed."""
        source = source or str(path)
        self._progress(0, "checking the bundle's signature, board and version", source)
        try:
            bundle = check_bundle(path, self.system, self.running_version)
        except BundleRefused as exc:
            log.error("update refused: %s", exc)
            self.emit(
                UpdateRefused(
                    t=self.clock(), line="", kind=exc.kind, reason=str(exc), source=source
                )
            )
            return None
        return self._install(bundle, source)

    def _install(self, bundle: Bundle, source: str) -> Pending | None:
        try:
            booted = str(rauc.status().get("booted") or "")
            others = [slot for slot in self.system.slots if slot != booted]
            if booted not in self.system.slots or len(others) != 1:
                raise rauc.RaucFailed(
                    f"booted slot {booted!r} is not one of the two root slots "
                    f"{sorted(self.system.slots)} in {self.system.conf}"
                )
            rauc.install(bundle.path, lambda percent, step: self._progress(percent, step, source))
            pending = Pending(
                version=bundle.version,
                slot=others[0],
                previous=self.running_version,
                previous_slot=booted,
                boot_id=current_boot_id(),
            )
            self.state.set_pending(pending)
        except (rauc.RaucFailed, OSError, ValueError) as exc:
            log.error("update %s failed: %s", bundle.version, exc)
            self.emit(
                UpdateFailed(t=self.clock(), line="", version=bundle.version, reason=str(exc))
            )
            return None
        log.info("update %s installed in slot %s; boots next", bundle.version, pending.slot)
        self.emit(
            UpdateInstalled(t=self.clock(), line="", version=bundle.version, slot=pending.slot)
        )
        return pending

    def _fetch(self, url: str) -> Path:
        import urllib.request  # here: http.client and ssl cost the recorder 2 MB it rarely needs

        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"the URL must be http:// or https:// (got {scheme or 'none'}://)")
        self.state.prepare()
        target = self.state.download
        self._progress(0, "fetching", url)
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response:
            length = int(response.headers.get("Content-Length") or 0)
            free = shutil.disk_usage(self.state.dir).free
            if length and length + RESERVE > free:
                raise ValueError(
                    f"{length} bytes do not fit on the data partition ({free} free, "
                    f"{RESERVE} kept for recordings)"
                )
            done, shown = 0, -1
            with target.open("wb") as out:
                while block := response.read(BLOCK):
                    done += len(block)
                    if done + RESERVE > free:
                        raise ValueError(
                            f"the bundle outgrew the room on the data partition at {done} bytes"
                        )
                    out.write(block)
                    if length and done * 10 // length != shown:
                        shown = done * 10 // length
                        self._progress(shown * 10, f"fetched {done} of {length} bytes", url)
                out.flush()
                os.fsync(out.fileno())
        if length and done != length:
            raise ValueError(f"the download ended at {done} of {length} bytes")
        return target

    def _progress(self, percent: int, step: str, source: str) -> None:
        log.info("update: %d%% %s", percent, step)
        self.emit(
            UpdateProgress(t=self.clock(), line="", percent=percent, step=step, source=source)
        )
