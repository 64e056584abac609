"""Logging to the journal over its native protocol, read back from a real datagram socket."""

from __future__ import annotations

import logging
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from linerec.logs import JournalHandler, journal_datagram


def parse_datagram(data: bytes) -> dict[str, str]:
    """The journal's reading of a native-protocol datagram (systemd.journal-fields(7))."""
    fields: dict[str, str] = {}
    while data:
        line, _, rest = data.partition(b"\n")
        if b"=" in line:
            name, _, value = line.partition(b"=")
            fields[name.decode()] = value.decode()
            data = rest
        else:
            (size,) = struct.unpack("<Q", rest[:8])
            fields[line.decode()] = rest[8 : 8 + size].decode()
            assert rest[8 + size : 9 + size] == b"\n"
            data = rest[9 + size :]
    return fields


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[socket.socket]:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "journal.sock"))
    listener.settimeout(10)
    yield listener
    listener.close()


@pytest.fixture
def logger(tmp_path: Path, journal: socket.socket) -> Iterator[logging.Logger]:
    handler = JournalHandler("linerec", address=str(tmp_path / "journal.sock"))
    log = logging.getLogger("linerec.test_logs")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    log.removeHandler(handler)
    handler.close()


def test_a_record_reaches_the_journal_with_its_fields(
    journal: socket.socket, logger: logging.Logger
) -> None:
    logger.info("line1 off hook at %.2f s", 1.5, extra={"LINE": "line1", "EVENT": "off_hook"})
    fields = parse_datagram(journal.recv(65536))
    assert fields["MESSAGE"] == "line1 off hook at 1.50 s"
    assert fields["PRIORITY"] == "6"
    assert fields["SYSLOG_IDENTIFIER"] == "linerec"
    assert fields["LOGGER"] == "linerec.test_logs"
    assert fields["LINE"] == "line1" and fields["EVENT"] == "off_hook"
    assert fields["CODE_FILE"] == __file__
    assert fields["CODE_FUNC"] == "test_a_record_reaches_the_journal_with_its_fields"
    assert int(fields["CODE_LINE"]) > 0
    assert fields["THREAD_NAME"] == "MainThread"


def test_a_traceback_is_one_multi_line_field(
    journal: socket.socket, logger: logging.Logger
) -> None:
    try:
        raise ValueError("card full\nsecond line")
    except ValueError:
        logger.exception("sealing failed")
    fields = parse_datagram(journal.recv(65536))
    assert fields["PRIORITY"] == "3"
    message = fields["MESSAGE"]
    assert message.startswith("sealing failed\nTraceback (most recent call last):\n")
    assert message.endswith("ValueError: card full\nsecond line")


@pytest.mark.parametrize(
    ("level", "priority"),
    [
        (logging.DEBUG, "7"),
        (logging.INFO, "6"),
        (logging.WARNING, "4"),
        (logging.ERROR, "3"),
        (logging.CRITICAL, "2"),
    ],
)
def test_levels_become_syslog_priorities(
    journal: socket.socket, logger: logging.Logger, level: int, priority: str
) -> None:
    logger.log(level, "x")
    assert parse_datagram(journal.recv(65536))["PRIORITY"] == priority


def test_a_value_with_a_newline_is_sent_with_its_length() -> None:
    data = journal_datagram({"MESSAGE": "a\nb", "LINE": "line1"})
    assert data == b"MESSAGE\n" + struct.pack("<Q", 3) + b"a\nb\nLINE=line1\n"


def test_under_the_journal_python_systemd_is_not_loaded(tmp_path: Path) -> None:
    # The recorder's logging under systemd (JOURNAL_STREAM names stderr) loads no libsystemd.
    code = (
        "import os, sys\n"
        "info = os.fstat(sys.stderr.fileno())\n"
        "os.environ['JOURNAL_STREAM'] = f'{info.st_dev}:{info.st_ino}'\n"
        "from linerec.logs import setup_logging\n"
        "import logging\n"
        "setup_logging()\n"
        "print(type(logging.getLogger().handlers[0]).__name__,\n"
        "      sorted(m for m in sys.modules if m.split('.')[0] == 'systemd'))\n"
    )
    with open(tmp_path / "stderr", "w") as stderr:
        done = subprocess.run(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    assert done.returncode == 0, (tmp_path / "stderr").read_text()
    assert done.stdout.strip() == "JournalHandler []"


def test_a_record_too_large_for_a_datagram_goes_to_stderr(
    journal: socket.socket, logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    huge = "x" * (4 << 20)
    logger.warning("dump %s", huge)
    logger.info("after")
    assert capsys.readouterr().err == f"dump {huge}\n"
    assert parse_datagram(journal.recv(65536))["MESSAGE"] == "after"  # the next one as before
