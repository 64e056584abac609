"""systemd's notify protocol: READY, STATUS, WATCHDOG, STOPPING (sd_notify through python-systemd).

Outside systemd (no NOTIFY_SOCKET) every call is a no-op, so the daemon runs the same way from
a shell. The watchdog interval comes from WATCHDOG_USEC (set by `WatchdogSec=` in the unit);
the daemon pings at half of it, and only while every capture thread is alive.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


class Notifier:
    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self.enabled = bool(environ.get("NOTIFY_SOCKET"))
        self.watchdog_interval: float | None = None
        usec = environ.get("WATCHDOG_USEC")
        pid = environ.get("WATCHDOG_PID")
        if self.enabled and usec and usec.isdigit() and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1_000_000

    def _send(self, message: str) -> None:
        if self.enabled:
            import systemd.daemon  # only under systemd: keeps start-up lean elsewhere

            systemd.daemon.notify(message)

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def stopping(self, status: str) -> None:
        self._send(f"STOPPING=1\nSTATUS={status}")
