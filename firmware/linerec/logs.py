"""Logging: structured records to the journal under systemd, plain lines on stderr otherwise.

The journal gets each record over its native protocol (systemd.journal-fields(7): one
datagram of fields to /run/systemd/journal/socket), written here: python-systemd's handler
would load libsystemd with its compression and crypto libraries, 2 MB of the recorder's
memory, to send the same datagram.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import struct
import sys

JOURNAL_SOCKET = "/run/systemd/journal/socket"

# A field the caller adds with `extra=` is one whose name is a journal field name (LINE, EVENT).
_FIELD_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


def _stderr_is_journal() -> bool:
    # systemd sets JOURNAL_STREAM to the device:inode of the stream it connected stderr to.
    stream = os.environ.get("JOURNAL_STREAM", "")
    if not stream:
        return False
    try:
        info = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{info.st_dev}:{info.st_ino}"


def _priority(level: int) -> int:
    """syslog's priority for a logging level (lower is more severe)."""
    if level >= logging.CRITICAL:
        return 2
    if level >= logging.ERROR:
        return 3
    if level >= logging.WARNING:
        return 4
    if level >= logging.INFO:
        return 6
    return 7


def journal_datagram(fields: dict[str, str]) -> bytes:
    """The native protocol's encoding: NAME=value lines; a value with a newline in it as the
    name, a newline, its length (64-bit little-endian) and the value."""
    parts = []
    for name, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            parts.append(name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            parts.append(name.encode() + b"=" + data + b"\n")
    return b"".join(parts)


class JournalHandler(logging.Handler):
    """Each record as one journal entry: MESSAGE (with its traceback), PRIORITY,
    SYSLOG_IDENTIFIER, the logger, thread and code location, and the `extra` fields whose
    names are journal field names (`extra={"LINE": "line1"}`: `journalctl LINE=line1`)."""

    def __init__(self, identifier: str, address: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.identifier = identifier
        self.address = address
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            fields = {
                name: str(value)
                for name, value in vars(record).items()
                if _FIELD_NAME.fullmatch(name)
            }
            fields.update(
                MESSAGE=message,
                PRIORITY=str(_priority(record.levelno)),
                SYSLOG_IDENTIFIER=self.identifier,
                LOGGER=record.name,
                THREAD_NAME=record.threadName or "",
                CODE_FILE=record.pathname,
                CODE_LINE=str(record.lineno),
                CODE_FUNC=record.funcName,
            )
            try:
                self.socket.sendto(journal_datagram(fields), self.address)
            except OSError:
                # Too large for one datagram (the socket's buffer, some 200 KB) or no journald
                # listening: stderr, which systemd connects to the journal too.
                sys.stderr.write(f"{message}\n")
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.socket.close()
        super().close()


def setup_logging(verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level)
    if _stderr_is_journal():
        root.addHandler(JournalHandler("linerec"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
