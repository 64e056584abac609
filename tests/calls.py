"""A test call put on the appliance's ring by hand, the same way in every test that does so
(the daemon's own calls come from the simulated line instead): the header such a call
begins with, loud audio to fill it, and a bounded wait for what other threads do with it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from linerec.codec import Samples
from linerec.store.base import RecordingInfo, SealedRecording
from linerec.store.ring import EncryptedWriter, RingStore

FRAME = 160  # 20 ms at 8 kHz: what the daemon writes at a time


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Bounded wait on something another thread or process does."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def speech(seconds: float, seed: int = 1) -> Samples:
    """Loud, never-repeating audio: any misplaced chunk shows."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * 8000)) * 6000).clip(-32000, 32000).astype(np.int16)


def call_info(
    device: str = "box1",
    *,
    consent: str = "one-party",
    label: str = "",
    started_at: datetime | None = None,
) -> RecordingInfo:
    """An inbound call on `device`'s line1, its clock synchronised; started now unless said."""
    return RecordingInfo(
        device_id=device,
        line="line1",
        label=label,
        direction="inbound",
        consent=consent,
        started_at=started_at or datetime.now(UTC),
        clock_synchronized=True,
    )


def begin_call(
    ring: RingStore, device: str = "box1", *, consent: str = "one-party"
) -> EncryptedWriter:
    """A call on `device`'s line1 begins: its recording opens on the card."""
    writer = ring.begin(call_info(device, consent=consent))
    assert isinstance(writer, EncryptedWriter)
    return writer


def write(writer: EncryptedWriter, samples: Samples) -> None:
    """Audio into an open recording a frame at a time, as the daemon writes it."""
    for start in range(0, len(samples), FRAME):
        writer.write(samples[start : start + FRAME])


def record_call(
    ring: RingStore,
    seconds: float,
    device: str = "box1",
    *,
    consent: str = "one-party",
    seed: int = 7,
) -> SealedRecording:
    """A whole call of `seconds` of speech on `device`'s line1, hung up and sealed."""
    writer = begin_call(ring, device, consent=consent)
    write(writer, speech(seconds, seed))
    return writer.seal(ended_by="hang-up")


def run_simulated(
    root: Path, steps: list[str], line: str = ""
) -> tuple[subprocess.Popen[bytes], list[str]]:
    """`linerec run` in `root` (keys in root/keys, ring in root/ring, no uplink) on the simulated
    line playing `steps` as one call, `line` its [[line]] table if any; the lines of its log as
    they come."""
    call = root / "call.toml"
    call.write_text("[[call]]\n" + "".join(f"[[call.step]]\n{step}\n" for step in steps))
    config = root / "linerec.toml"
    config.write_text(
        '[device]\nid = "box1"\n[store]\ndir = "ring"\nrecipients = ["keys/collector.pub"]\n'
        f'[hardware]\nbackend = "sim"\n[sim]\ncalls = ["{call}"]\nspeed = 2.0\n{line}'
    )
    command = [sys.executable, "-m", "linerec.cli", "run", "--config", str(config)]
    daemon = subprocess.Popen(command, stderr=subprocess.PIPE)
    lines: list[str] = []
    stream = daemon.stderr
    assert stream is not None

    def gather() -> None:
        for raw in stream:
            lines.append(raw.decode(errors="replace"))

    threading.Thread(target=gather, daemon=True).start()
    return daemon, lines
