"""A file replacement cut off mid-write, as a power cut or SIGKILL leaves it: a child process
writes `path` through `atomic_file` and is killed with SIGKILL while its temporary file is half
written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

_WRITER = """
import sys
from pathlib import Path
from linerec.atomic import atomic_file
with atomic_file(Path(sys.argv[1])) as out:
    out.write(b"half of the new cont")
    out.flush()
    print("written", flush=True)
    sys.stdin.read()  # until killed
"""


def killed_mid_write(path: Path) -> Path:
    """Leave the temporary file of a replacement of `path` cut off mid-write; returns it."""
    before = set(os.listdir(path.parent))
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"written\n"
    child.send_signal(signal.SIGKILL)
    assert child.wait(10) == -signal.SIGKILL
    (left,) = set(os.listdir(path.parent)) - before
    return path.parent / left
