"""The recorder's update room wired in: an Updater for the signed `update` command (run in its
own thread, so recording goes on) and the UpdateSupervisor the main loop ticks.

Updates are on where RAUC is set up (`[update] system_conf` exists: the image); elsewhere (a
development machine, the tests of other rooms) the `update` command is refused as not set up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from linerec import __version__
from linerec.call.events import CallEvent
from linerec.config import Config

if TYPE_CHECKING:
    from linerec.update.installer import Updater
    from linerec.update.supervisor import UpdateSupervisor

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Updating:
    updater: Updater
    supervisor: UpdateSupervisor
    worker: list[threading.Thread]  # the install under way, if any

    def command(self, arguments: dict[str, str]) -> None:
        """A checked `update` command: fetch, check and install in the background."""
        if self.worker and self.worker[0].is_alive():
            raise ValueError("an update is already under way")
        url = arguments["url"]
        thread = threading.Thread(
            target=self.updater.install_url, args=(url,), name="update", daemon=True
        )
        self.worker[:] = [thread]
        thread.start()


def open_updating(
    config: Config,
    *,
    report: Callable[[CallEvent], None],
    emit: Callable[[CallEvent], None],
    clock: Callable[[], float],
) -> Updating | None:
    """`report` takes events from the install thread; `emit` from the main loop."""
    if not config.update.system_conf.exists():
        return None
    # Only now: where RAUC is not set up, the update room (subprocess, configparser, the
    # installer) would be memory and start-up spent on nothing.
    from linerec.update import rauc
    from linerec.update.installer import Updater
    from linerec.update.state import UpdateState, current_boot_id
    from linerec.update.supervisor import UpdateSupervisor
    from linerec.update.system import UpdateSetupError, read_system

    try:
        system = read_system(config.update.system_conf)
        booted = str(rauc.status().get("booted") or "")
    except (UpdateSetupError, rauc.RaucFailed, OSError) as exc:
        log.error("updates are off: %s", exc)
        return None
    state = UpdateState(config.store.dir)
    updater = Updater(
        system=system, state=state, running_version=__version__, emit=report, clock=clock
    )
    supervisor = UpdateSupervisor(
        state,
        booted=booted,
        running_version=__version__,
        boot_id=current_boot_id(),
        mark_good=rauc.mark_good,
        mark_active=rauc.mark_active,
        emit=emit,
        clock=clock,
        max_wait=config.update.max_wait,
        trial_wait=config.update.trial_wait,
    )
    log.info("updates: running %s from slot %s", __version__, booted)
    return Updating(updater, supervisor, [])
