"""systemd's notify protocol: READY, STATUS, WATCHDOG, STOPPING.

A message is one datagram to the AF_UNIX socket named in NOTIFY_SOCKET (sd_notify(3); a name
starting with "@" is in the abstract namespace). Sent here directly: python-systemd would load
libsystemd and its compression and crypto libraries, 1.7 MB of the daemon's memory, for it.
Outside systemd (no NOTIFY_SOCKET) every call is a no-op, so the daemon runs the same way from
a shell. The watchdog interval comes from WATCHDOG_USEC (set by `WatchdogSec=` in the unit);
the daemon pings at half of it, and only while every capture thread is alive.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.enabled = bool(address)
        self.watchdog_interval: float | None = None
        self._socket: socket.socket | None = None
        self._failed = False
        usec = environ.get("WATCHDOG_USEC")
        pid = environ.get("WATCHDOG_PID")
        if self.enabled and usec and usec.isdigit() and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1_000_000

    def _send(self, message: str) -> None:
        if not self.enabled:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # not inherited
            self._socket.sendto(message.encode(), self.address)
        except OSError as exc:
            # As sd_notify: systemd not listening is no reason to stop recording. Said once.
            if not self._failed:
                log.warning("cannot notify systemd at %s: %s", self.address, exc)
            self._failed = True

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def stopping(self, status: str) -> None:
        self._send(f"STOPPING=1\nSTATUS={status}")
