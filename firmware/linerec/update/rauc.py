"""The `rauc` tool, run as a program: the only place that knows its command lines and output.

On the box `rauc install`, `rauc status` and `rauc status mark-good` talk to `rauc.service`
over the system D-Bus (the recorder's user may, by /etc/dbus-1/system.d/linerec-rauc.conf);
`rauc info` reads a bundle by itself. The environment is passed on, so a test points the
tools at a private bus with DBUS_SYSTEM_BUS_ADDRESS.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RAUC = "rauc"
INFO_TIMEOUT = 300.0  # a plain bundle's signature covers all of it: hashing 1 GiB on a Pi 3
STATUS_TIMEOUT = 60.0
_PROGRESS = re.compile(r"^\s*(\d{1,3})% (.*)$")


class RaucFailed(Exception):
    """rauc said no: `message` is its own last words on stderr."""


@dataclass(frozen=True, slots=True)
class Failure:
    returncode: int
    stderr: str

    def reason(self) -> str:
        """rauc's own error lines, without its informational `rauc-Message:` chatter."""
        lines = [
            line.strip()
            for line in self.stderr.splitlines()
            if line.strip() and not line.startswith("rauc-Message:") and "WARNING" not in line
        ]
        return "; ".join(lines) or f"rauc exited with status {self.returncode}"


def info(bundle: Path, keyring: Path) -> dict[str, Any] | Failure:
    """The manifest of `bundle` once its signature checked out against `keyring`."""
    done = subprocess.run(
        [RAUC, "info", f"--keyring={keyring}", "--output-format=json", str(bundle)],
        capture_output=True,
        text=True,
        timeout=INFO_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        return Failure(done.returncode, done.stderr)
    try:
        manifest = json.loads(done.stdout)
    except ValueError:
        return Failure(done.returncode, f"rauc info printed no JSON: {done.stdout[:200]!r}")
    if not isinstance(manifest, dict):
        return Failure(done.returncode, "rauc info printed no manifest")
    return manifest


def install(bundle: Path, on_progress: Callable[[int, str], None]) -> None:
    """Install `bundle` into the other slot through rauc.service, reporting each step as
    (percent, what); RaucFailed if it did not succeed (the booted slot is never written)."""
    with subprocess.Popen(
        [RAUC, "install", str(bundle)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        for line in process.stdout:
            step = _PROGRESS.match(line)
            if step is not None:
                on_progress(int(step.group(1)), step.group(2).strip())
        stderr = process.stderr.read()
        if process.wait() != 0:
            raise RaucFailed(Failure(process.returncode, stderr).reason())


def status() -> dict[str, Any]:
    """`rauc status` as JSON: the booted slot's bootname in "booted", each slot's state."""
    done = subprocess.run(
        [RAUC, "status", "--output-format=json"],
        capture_output=True,
        text=True,
        timeout=STATUS_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RaucFailed(Failure(done.returncode, done.stderr).reason())
    try:
        body = json.loads(done.stdout)
    except ValueError as exc:
        raise RaucFailed(f"rauc status printed no JSON: {done.stdout[:200]!r}") from exc
    if not isinstance(body, dict):
        raise RaucFailed("rauc status printed no status")
    return body


def mark_good() -> None:
    """The booted slot works: reset its boot counter (BOOT_x_LEFT) so it stays."""
    _mark("mark-good")


def mark_active() -> None:
    """The booted slot boots first again (BOOT_ORDER), with all its tries: after a rollback,
    so the abandoned slot is only tried once this one has used up its own tries."""
    _mark("mark-active")


def _mark(action: str) -> None:
    done = subprocess.run(
        [RAUC, "status", action, "booted"],
        capture_output=True,
        text=True,
        timeout=STATUS_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RaucFailed(Failure(done.returncode, done.stderr).reason())
