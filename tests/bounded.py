"""Run code in a forked child under a memory limit: a reader that allocates without bound fails
the test instead of the machine.

`bounded(fn)` forks, caps the child's address space at what it already maps plus `memory`
bytes (RLIMIT_AS) and every file it writes at FILE_SIZE (RLIMIT_FSIZE), runs `fn` there and returns its (picklable) result; an exception in the child
comes back as an AssertionError carrying the child's traceback. One fork per batch of examples,
not per example: a forked child costs milliseconds, a batch of hundreds of examples no more.

`cli(argv)` runs the `linerec` command in such a child and returns its exit status and output,
or the traceback that escaped it.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import resource
import select
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
MEMORY = 768 << 20  # bytes a reader may map beyond what the test process already has
FILE_SIZE = 256 << 20  # no file a bounded child writes may grow past this (SIGXFSZ)
TIMEOUT = 120.0  # seconds: a bound for a hang, far above what any batch takes


def _mapped() -> int:
    """The address space this process maps now (VmSize)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize in /proc/self/status")


def bounded(fn: Callable[[], T], *, memory: int = MEMORY, timeout: float = TIMEOUT) -> T:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 0
        try:
            os.close(read_end)
            limit = _mapped() + memory
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE, FILE_SIZE))
            try:
                outcome: tuple[str, object] = ("ok", fn())
            except BaseException:
                outcome = ("raised", traceback.format_exc())
            payload = pickle.dumps(outcome)
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
        except BaseException:
            status = 3
        finally:
            os._exit(status)
    os.close(write_end)
    deadline = time.monotonic() + timeout
    payload = b""
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while True:
            ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:  # hung (a FIFO opened for reading waits for a writer for ever)
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError(f"the bounded child was still busy after {timeout} s")
            piece = pipe.read(1 << 16)
            if not piece:
                break
            payload += piece
    _, wait_status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(wait_status):
        name = signal.Signals(os.WTERMSIG(wait_status)).name
        raise AssertionError(f"the bounded child died of {name}")
    if not payload:
        raise AssertionError(
            f"the bounded child exited {os.WEXITSTATUS(wait_status)} with no result"
        )
    kind, value = pickle.loads(payload)
    if kind == "raised":
        raise AssertionError(f"in the bounded child:\n{value}")
    return value  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Run:
    status: int | None  # None: an exception escaped the command
    out: str
    err: str


def run_cli(argv: Sequence[str]) -> Run:
    """`linerec ARGV` in this process (call it inside `bounded`)."""
    from linerec.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status: int | None = main(list(argv))
        except SystemExit as exc:  # argparse's usage errors
            status = exc.code if isinstance(exc.code, int) else 2
        except Exception:
            traceback.print_exc()
            status = None
    return Run(status, out.getvalue(), err.getvalue())


def cli(argv: Sequence[str], *, memory: int = MEMORY) -> Run:
    return bounded(lambda: run_cli(argv), memory=memory)


def assert_refused(run: Run, *needles: str, status: int = 2) -> str:
    """The command failed with `status` and one line of error that names each of `needles`."""
    assert run.status == status, (run.status, run.err)
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in run.err
    return lines[0]
