"""Logging: structured records to the journal under systemd, plain lines on stderr otherwise."""

from __future__ import annotations

import logging
import os
import sys


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


def setup_logging(verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level)
    if _stderr_is_journal():
        from systemd.journal import JournalHandler

        root.addHandler(JournalHandler(SYSLOG_IDENTIFIER="linerec"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
