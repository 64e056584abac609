"""Errors that say what is wrong and where.

Every error a user can cause names the place (file, key path, line; call-file step; byte
offset) as well as the expectation and the value found, so an operator can fix it without
reading our source.
"""

from __future__ import annotations

from pathlib import Path


def one_line(text: str) -> str:
    """`text` as one line of a terminal or log: line breaks and other characters that do not
    print (a file name may hold any of them) written as escapes."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


class LinerecError(Exception):
    """Base of the errors linerec reports to a user (exit status 2 from the CLI)."""


class ConfigError(LinerecError, ValueError):
    """A configuration value is missing, unknown, of the wrong type or impossible."""

    def __init__(self, path: Path | str, key: str, message: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.key = key
        self.message = message
        self.line = line
        where = f"{self.path}:{line}" if line else str(self.path)
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


class HardwareError(LinerecError, RuntimeError):
    """A device or pin could not be opened or used as configured."""


class PinInUse(HardwareError):
    """A GPIO pin was claimed twice."""


class WavError(LinerecError, ValueError):
    """A WAV file is unreadable or of a kind we do not handle."""

    def __init__(self, path: Path | str, message: str, offset: int | None = None) -> None:
        self.path = Path(path)
        self.offset = offset
        where = f"{self.path} (byte {offset})" if offset is not None else str(self.path)
        super().__init__(f"{where}: {message}")
