"""The recorder's side of an update once RAUC has written the other slot.

- In the boot of the install: reboot as soon as every line is idle (no call ringing or on
  the line), or once `[update] max_wait_s` has passed; the reboot itself is done by root
  (linerec-update-reboot.path), the recorder only asks for it.
- In the next boot, on the new slot: it is on trial; once the recorder is READY (this runs
  from its main loop) and the uplink has connected (or, with no uplink, READY has held for
  `[update] trial_s`), mark the slot good and report the update completed.
- Back on the old slot instead (U-Boot gave up on the new one after its tries, or the power
  went before the new one was ever booted): report the update rolled back.
- Any other boot: mark the booted slot good once READY, as RAUC's U-Boot integration expects
  of every boot (the boot script counts each boot down from 3; only marking good restores it,
  or a box power-cycled three times would fall back to the older release).

Ticks are cheap: the pending file is looked at every POLL seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from linerec.call.events import CallEvent
from linerec.update.events import UpdateCompleted, UpdateFailed, UpdateRebooting, UpdateRolledBack
from linerec.update.state import Pending, UpdateState

log = logging.getLogger(__name__)

POLL = 2.0  # seconds between looks at the pending file


class UpdateSupervisor:
    def __init__(
        self,
        state: UpdateState,
        *,
        booted: str,
        running_version: str,
        boot_id: str,
        mark_good: Callable[[], None],
        mark_active: Callable[[], None],
        emit: Callable[[CallEvent], None],
        clock: Callable[[], float],
        max_wait: float,
        trial_wait: float,
    ) -> None:
        self.state = state
        self.booted = booted
        self.running_version = running_version
        self.boot_id = boot_id
        self._mark_good = mark_good
        self._mark_active = mark_active
        self._emit = emit
        self._clock = clock
        self.max_wait = max_wait
        self.trial_wait = trial_wait
        self._last_poll = float("-inf")
        self._ready_since: float | None = None
        self._installed_seen: float | None = None  # when a pending reboot was first seen
        self._rebooting = False
        self._mark_failed = ""
        self._marked = False  # this boot's slot marked good

    def tick(self, now: float, *, idle: bool, uplink: bool | None) -> None:
        """From the main loop (the recorder is READY): `idle` when no line has a call,
        `uplink` whether it is connected (None: no uplink configured)."""
        if self._ready_since is None:
            self._ready_since = now
        if now - self._last_poll < POLL or self._rebooting:
            return
        self._last_poll = now
        pending = self.state.pending()
        if pending is None:
            self._installed_seen = None
            if not self._marked:
                self._marked = self._try_mark_good("")
        elif pending.boot_id == self.boot_id:
            self._await_reboot(pending, now, idle)
        elif pending.slot == self.booted:
            self._on_trial(pending, now, uplink)
        else:
            self._rolled_back(pending)

    def health(self) -> dict[str, object]:
        pending = self.state.pending()
        return {
            "slot": self.booted,
            "version": self.running_version,
            "pending": pending.version if pending else None,
        }

    def _await_reboot(self, pending: Pending, now: float, idle: bool) -> None:
        if self._installed_seen is None:
            self._installed_seen = now
            log.info("update %s installed: rebooting once every line is idle", pending.version)
        waited = now - self._installed_seen
        if not idle and waited < self.max_wait:
            return
        self.state.request_reboot()
        self._rebooting = True
        log.warning("update %s: rebooting into slot %s", pending.version, pending.slot)
        self._emit(
            UpdateRebooting(
                t=self._clock(),
                line="",
                version=pending.version,
                waited=round(waited, 1),
                forced=not idle,
            )
        )

    def _on_trial(self, pending: Pending, now: float, uplink: bool | None) -> None:
        assert self._ready_since is not None
        if uplink is False or (uplink is None and now - self._ready_since < self.trial_wait):
            return
        if not self._try_mark_good(pending.version):
            return
        self._marked = True
        self.state.clear_pending()
        log.info("update %s: slot %s marked good", pending.version, self.booted)
        self._emit(
            UpdateCompleted(
                t=self._clock(),
                line="",
                version=pending.version,
                slot=self.booted,
                previous=pending.previous,
            )
        )

    def _try_mark_good(self, version: str) -> bool:
        """Mark the booted slot good; on failure say so once (an update's as UpdateFailed)
        and let the next poll try again."""
        try:
            self._mark_good()
        except Exception as exc:
            if str(exc) != self._mark_failed:
                self._mark_failed = str(exc)
                log.error("cannot mark slot %s good: %s", self.booted, exc)
                if version:
                    self._emit(
                        UpdateFailed(
                            t=self._clock(),
                            line="",
                            version=version,
                            reason=f"slot {self.booted} could not be marked good: {exc}",
                        )
                    )
            return False
        return True

    def _rolled_back(self, pending: Pending) -> None:
        try:
            self._mark_active()
        except Exception as exc:  # the boot order stays RAUC's; the report matters more
            log.error("cannot make slot %s first in the boot order: %s", self.booted, exc)
        self.state.clear_pending()
        log.error(
            "update %s failed: slot %s did not come up; back on slot %s (%s)",
            pending.version,
            pending.slot,
            self.booted,
            self.running_version,
        )
        self._emit(
            UpdateRolledBack(
                t=self._clock(),
                line="",
                version=pending.version,
                slot=pending.slot,
                running=self.running_version,
                booted=self.booted,
            )
        )
