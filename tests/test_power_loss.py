"""Power cuts at every point of a call, and real SIGKILLs of a recording process.

`CrashDisk` keeps files in memory the way a kernel and a card do: what is written sits in the
page cache until fdatasync makes it durable, and a new or removed name survives only once
its directory is synced. After every operation of a recorded call we take what would be on
the card if the power went then, plus the last write torn at 512 B and 4 KiB, lay it out in
a real directory, run recovery with the real file system, and check the promises:
no sealed recording lost, at most a second of the open one lost, nothing corrupt accepted,
and recovery idempotent.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from linerec.codec import Codec, decode, encode
from linerec.store.base import RecordingInfo
from linerec.store.disk import Disk
from linerec.store.format import SUFFIX
from linerec.store.keys import (
    CollectorPrivate,
    keygen,
    load_or_create_identity,
    load_private,
    load_public,
)
from linerec.store.reader import decrypt
from linerec.store.ring import RingStore

RATE = 8000


@dataclass
class _File:
    data: bytearray = field(default_factory=bytearray)  # what the OS has (page cache)
    durable: bytes = b""  # what the card has
    dirty: list[tuple[int, int]] = field(default_factory=list)  # written since the last sync
    lost: list[tuple[int, int]] = field(default_factory=list)  # a failed sync dropped these


def _without(ranges: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """`ranges` less the bytes start..end."""
    kept = []
    for a, b in ranges:
        if b <= start or a >= end:
            kept.append((a, b))
            continue
        if a < start:
            kept.append((a, start))
        if b > end:
            kept.append((end, b))
    return kept


class CrashDisk(Disk):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, _File] = {}  # by name; the live view
        self.durable_names: set[str] = set()  # names that survive a cut
        self.handles: dict[int, str] = {}
        self.crash_states: list[dict[str, bytes]] = []
        self.syncs: list[str] = []  # the file of each datasync, in order
        self.fail_sync: int | None = None  # this datasync (index into syncs) fails with EIO

    # the durable state if the power went now (plus a torn variant of a write)
    def _snapshot(self, torn: tuple[str, int, bytes] | None = None) -> None:
        state = {name: f.durable for name, f in self.files.items() if name in self.durable_names}
        if torn is not None:
            name, offset, data = torn
            if name in state:
                for size in (512, 4096):
                    if size < len(data):
                        part = bytearray(state[name])
                        end = offset + size
                        if len(part) < end:
                            part.extend(bytes(end - len(part)))
                        part[offset:end] = data[:size]
                        self.crash_states.append({**state, name: bytes(part)})
        self.crash_states.append(state)

    def _name(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def create(self, path: Path) -> int:
        name = self._name(path)
        assert name not in self.files, name
        self.files[name] = _File()
        handle = len(self.handles) + 100
        self.handles[handle] = name
        self._snapshot()
        return handle

    def open(self, path: Path) -> int:
        handle = len(self.handles) + 100
        self.handles[handle] = self._name(path)
        return handle

    def pwrite(self, handle: int, data: bytes, offset: int) -> None:
        file = self.files[self.handles[handle]]
        if len(file.data) < offset + len(data):
            file.data.extend(bytes(offset + len(data) - len(file.data)))
        file.data[offset : offset + len(data)] = data
        file.dirty.append((offset, offset + len(data)))
        file.lost = _without(file.lost, offset, offset + len(data))  # dirty again
        self._snapshot(torn=(self.handles[handle], offset, data))

    def allocate(self, handle: int, size: int) -> None:
        file = self.files[self.handles[handle]]
        if len(file.data) < size:
            file.data.extend(bytes(size - len(file.data)))
        self._snapshot()

    def truncate(self, handle: int, size: int) -> None:
        file = self.files[self.handles[handle]]
        del file.data[size:]
        file.lost = _without(file.lost, size, 1 << 62)
        self._snapshot()

    def datasync(self, handle: int) -> None:
        file = self.files[self.handles[handle]]
        self.syncs.append(self.handles[handle])
        if len(self.syncs) - 1 == self.fail_sync:
            # As Linux does (fsyncgate): the pages are marked clean although they never
            # reached the card; a later sync does not write them, reads still see them.
            file.lost += file.dirty
            file.dirty = []
            raise OSError(errno.EIO, "Input/output error")
        card = bytearray(file.data)
        for start, end in file.lost:
            old = file.durable[start:end]
            card[start:end] = old + bytes(max(0, min(end, len(card)) - start - len(old)))
        del card[len(file.data) :]
        file.durable = bytes(card)
        file.dirty = []
        self._snapshot()

    def close(self, handle: int) -> None:
        pass

    def sync_dir(self, path: Path) -> None:
        self.durable_names = set(self.files)
        self._snapshot()

    def read(self, path: Path) -> bytes:
        name = self._name(path)
        if name not in self.files:
            raise FileNotFoundError(path)
        return bytes(self.files[name].data)

    def unlink(self, path: Path) -> None:
        del self.files[self._name(path)]
        self._snapshot()

    def replace(self, source: Path, target: Path) -> None:
        self.files[self._name(target)] = self.files.pop(self._name(source))
        self._snapshot()

    def listdir(self, path: Path) -> list[str]:
        return [name for name in self.files if "/" not in name]

    def size(self, path: Path) -> int:
        return len(self.files[self._name(path)].data)


def speech_like(seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (5000 * np.sin(2 * np.pi * 300 * t) * np.sin(2 * np.pi * 2 * t)).astype(np.int16)


INFO = RecordingInfo(
    device_id="box1",
    line="line1",
    label="",
    direction="inbound",
    consent="notice",
    started_at=datetime(2026, 11, 25, 9, tzinfo=UTC),
    clock_synchronized=True,
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> CollectorPrivate:
    private, _ = keygen(tmp_path_factory.mktemp("keys"))
    return load_private(private)


def test_power_cut_at_every_point_of_two_calls(tmp_path: Path, keys: CollectorPrivate) -> None:
    ring_dir = tmp_path / "ring"
    ring_dir.mkdir()
    identity = load_or_create_identity(tmp_path / "identity.key")
    disk = CrashDisk(ring_dir)
    ring = RingStore(
        ring_dir,
        recipients=[load_public(keys.path.with_suffix(".pub"))],
        identity=identity,
        disk=disk,
    )
    first, second = speech_like(2.2), speech_like(3.1)
    expected = {}
    written_at: list[tuple[int, str, int]] = []  # (crash state index, recording, samples written)
    sealed_at: dict[str, int] = {}
    for audio in (first, second):
        writer = ring.begin(INFO)
        name = writer.path.name  # type: ignore[attr-defined]
        for i in range(0, len(audio), 160):
            writer.write(audio[i : i + 160])
            written_at.append((len(disk.crash_states), name, i + 160))
        writer.seal(ended_by="hang-up")
        sealed_at[name] = len(disk.crash_states)
        expected[name] = decode(Codec.ULAW, encode(Codec.ULAW, audio))
    states = disk.crash_states
    assert len(states) > 60

    checked_cut = 0
    for index, state in enumerate(states):
        crash_dir = tmp_path / f"crash{index}"
        crash_dir.mkdir()
        for name, data in state.items():
            (crash_dir / name).write_bytes(data)
        recover = RingStore(
            crash_dir, recipients=[load_public(keys.path.with_suffix(".pub"))], identity=identity
        )
        recover.recover()
        after_first = {p.name: p.read_bytes() for p in crash_dir.iterdir()}
        RingStore(
            crash_dir, recipients=[load_public(keys.path.with_suffix(".pub"))], identity=identity
        ).recover()
        assert {p.name: p.read_bytes() for p in crash_dir.iterdir()} == after_first  # idempotent
        for name, audio in expected.items():
            path = crash_dir / name
            if sealed_at[name] <= index:  # sealed before the cut: must be there, whole
                result = decrypt(path.read_bytes(), keys)
                assert result.inspected.state == "complete"
                assert np.array_equal(result.samples, audio)
            elif path.exists():  # open at the cut: a prefix, at most a second short
                result = decrypt(path.read_bytes(), keys)  # raises if anything is corrupt
                if result.inspected.state == "complete":  # the seal had reached the card
                    assert np.array_equal(result.samples, audio)
                    continue
                assert result.inspected.state == "cut"
                assert result.metadata["line"] == "line1"  # the header block's metadata
                kept = len(result.samples)
                assert np.array_equal(result.samples, audio[:kept])
                written = max((n for i, r, n in written_at if r == name and i <= index), default=0)
                assert written - kept <= RATE, (
                    f"crash point {index}: lost {(written - kept) / RATE:.2f} s"
                )
                checked_cut += 1
    assert checked_cut > 20


def lay_out(state: dict[str, bytes], directory: Path) -> Path:
    directory.mkdir()
    for name, data in state.items():
        (directory / name).write_bytes(data)
    return directory


def test_power_cut_around_discards_and_evictions(tmp_path: Path, keys: CollectorPrivate) -> None:
    """A discarded (opted-out) recording and evicted ones: at every cut, the deletion log on
    the card explains every number missing from the chain, and nothing whose deletion was
    logged comes back after recovery."""
    ring_dir = tmp_path / "ring"
    ring_dir.mkdir()
    identity = load_or_create_identity(tmp_path / "identity.key")
    public = load_public(keys.path.with_suffix(".pub"))
    disk = CrashDisk(ring_dir)
    deleted: list[str] = []
    ring = RingStore(
        ring_dir,
        recipients=[public],
        identity=identity,
        disk=disk,
        capacity=300 * 1024,  # two short recordings and an open one's reserve
        on_event=lambda event: deleted.append(getattr(event, "id", "")),
    )
    discarded_from = 0
    discarded = ""
    for n, seconds in enumerate((1.1, 0.9, 1.3, 1.0, 1.2)):
        writer = ring.begin(INFO)
        audio = speech_like(seconds)
        for i in range(0, len(audio), 160):
            writer.write(audio[i : i + 160])
        if n == 1:  # the caller opted out: nothing of it is kept
            discarded_from = len(disk.crash_states)
            discarded = writer.path.stem  # type: ignore[attr-defined]
            writer.discard()
        else:
            writer.seal(ended_by="hang-up")
    assert deleted, "the ring evicted nothing: the test would not cut around an eviction"
    assert "ring.log" in disk.files  # the deletion log went through the Disk
    from linerec.store.verify import verify_ring

    logged_states = 0
    for index, state in enumerate(disk.crash_states):
        crash_dir = lay_out(state, tmp_path / f"crash{index}")
        RingStore(crash_dir, recipients=[public], identity=identity).recover()
        _, problems = verify_ring(crash_dir)
        assert problems == [], f"crash point {index}: {problems}"
        log = (crash_dir / "ring.log").read_text() if (crash_dir / "ring.log").exists() else ""
        if index >= discarded_from and discarded in log:
            logged_states += 1
            assert not (crash_dir / f"{discarded}{SUFFIX}").exists(), (
                f"crash point {index}: the discarded recording came back"
            )
    assert logged_states > 5


def test_discard_takes_the_ring_lock(tmp_path: Path, keys: CollectorPrivate) -> None:
    """The uplink thread iterates the entries under the ring's lock; a discard on the main
    loop changes them only while holding it."""
    import threading

    from linerec.store.disk import OsDisk

    free_during: list[str] = []
    ring: RingStore

    class Watching(OsDisk):
        def _check(self, what: str) -> None:
            def try_lock() -> None:  # as the uplink thread would, at this very moment
                if ring._lock.acquire(blocking=False):
                    ring._lock.release()
                    free_during.append(what)

            other = threading.Thread(target=try_lock)
            other.start()
            other.join()

        def unlink(self, path: Path) -> None:
            self._check(f"unlink {path.name}")
            super().unlink(path)

        def sync_dir(self, path: Path) -> None:
            self._check("sync_dir")
            super().sync_dir(path)

    ring = RingStore(
        tmp_path / "ring",
        recipients=[load_public(keys.path.with_suffix(".pub"))],
        identity=load_or_create_identity(tmp_path / "identity.key"),
        disk=Watching(),
        background_sync=True,
    )
    writer = ring.begin(INFO)
    writer.write(speech_like(1.5))
    free_during.clear()
    writer.discard()
    assert free_during == []
    assert ring.entries == {}
    assert list((tmp_path / "ring").glob(f"*{SUFFIX}")) == []


def test_a_failed_sync_seals_what_is_on_the_card_as_cut(
    tmp_path: Path, keys: CollectorPrivate
) -> None:
    """fdatasync fails (EIO) at each sync of a recording in turn. The writer raises an OSError
    (the daemon reports a store fault) and closes the recording where the card provably
    holds it: what is on the card afterwards verifies, as cut, a prefix of the audio."""
    from linerec.store.verify import verify_ring

    public = load_public(keys.path.with_suffix(".pub"))
    identity = load_or_create_identity(tmp_path / "identity.key")
    audio = speech_like(2.5)
    spoken = decode(Codec.ULAW, encode(Codec.ULAW, audio))

    def call(directory: Path, fail_sync: int | None) -> tuple[CrashDisk, list[OSError]]:
        directory.mkdir()
        disk = CrashDisk(directory)
        disk.fail_sync = fail_sync
        ring = RingStore(directory, recipients=[public], identity=identity, disk=disk)
        writer = ring.begin(INFO)
        errors: list[OSError] = []
        try:  # as the daemon's line does: a store error ends the recording, then it seals
            for i in range(0, len(audio), 160):
                writer.write(audio[i : i + 160])
        except OSError as exc:
            errors.append(exc)
        try:
            writer.seal(ended_by="store-error" if errors else "hang-up")
        except OSError as exc:
            errors.append(exc)
        return disk, errors

    clean, _ = call(tmp_path / "clean", None)
    first = clean.syncs.index(next(name for name in clean.syncs if name.endswith(SUFFIX)))
    recording_syncs = [
        i for i, name in enumerate(clean.syncs) if name.endswith(SUFFIX) and i > first
    ]
    assert len(recording_syncs) >= 5  # every chunk, the final chunk and the trailer
    for fail in recording_syncs:
        disk, errors = call(tmp_path / f"fail{fail}", fail)
        assert errors and "Input/output error" in str(errors[0]), f"sync {fail}: no fault raised"
        card = lay_out(disk.crash_states[-1], tmp_path / f"card{fail}")
        (path,) = card.glob(f"*{SUFFIX}")
        result = decrypt(path.read_bytes(), keys)  # raises if the card holds anything damaged
        assert result.inspected.state == "cut", f"sync {fail}"
        assert result.inspected.end is not None
        assert result.inspected.end["reason"] == "store-error"
        assert result.metadata["ended_by"] == "store-error"
        kept = len(result.samples)
        assert np.array_equal(result.samples, spoken[:kept]), f"sync {fail}"
        assert verify_ring(card) == (1, []), f"sync {fail}"
        before = path.read_bytes()
        RingStore(card, recipients=[public], identity=identity).recover()
        assert path.read_bytes() == before  # closed already: recovery has nothing to do


def test_recovery_interrupted_half_way_finishes_next_time(
    tmp_path: Path, keys: CollectorPrivate
) -> None:
    ring = RingStore(
        tmp_path,
        recipients=[load_public(keys.path.with_suffix(".pub"))],
        identity=load_or_create_identity(tmp_path / "identity.key"),
    )
    writer = ring.begin(INFO)
    audio = speech_like(2.0)
    for i in range(0, len(audio), 160):
        writer.write(audio[i : i + 160])
    path: Path = writer.path  # type: ignore[attr-defined]
    cut_here = path.read_bytes()  # the process dies here: no seal
    # (a) recovery truncated the tail but died before writing its marker
    # (b) recovery's marker itself was torn
    ring.recover()
    whole = path.read_bytes()
    # What recovery kept of the cut file before it appended its marker (not rstrip: the last
    # chunk's tag may itself end in zero bytes).
    same = np.frombuffer(whole[: len(cut_here)], np.uint8) != np.frombuffer(
        cut_here[: len(whole)], np.uint8
    )
    truncated = whole[: int(np.argmax(same)) if same.any() else min(len(whole), len(cut_here))]
    for state in (truncated, whole[:-7]):
        path.write_bytes(state)
        RingStore(
            tmp_path,
            recipients=[load_public(keys.path.with_suffix(".pub"))],
            identity=load_or_create_identity(tmp_path / "identity.key"),
        ).recover()
        result = decrypt(path.read_bytes(), keys)
        assert result.inspected.state == "cut"
        assert len(result.samples) == len(decrypt(whole, keys).samples)


def test_sigkill_a_recording_process_many_times(tmp_path: Path, keys: CollectorPrivate) -> None:
    """A real process records; we kill -9 it at random moments, then recover each time.

    The moments are counted in what the recorder says it has done (a line every 10 frames
    written, and one per recording sealed), never guessed from the time it may need to start."""
    script = tmp_path / "recorder.py"
    script.write_text(
        "import sys, time, numpy as np\n"
        "from datetime import UTC, datetime\n"
        "from pathlib import Path\n"
        "from linerec.store.base import RecordingInfo\n"
        "from linerec.store.keys import load_public, load_or_create_identity\n"
        "from linerec.store.ring import RingStore\n"
        "ring = RingStore(Path(sys.argv[1]), recipients=[load_public(sys.argv[2])],\n"
        "                 identity=load_or_create_identity(Path(sys.argv[1]) / 'identity.key'))\n"
        "ring.recover()\n"
        "info = RecordingInfo(device_id='box1', line='line1', label='', direction='inbound',\n"
        "    consent='notice', started_at=datetime.now(UTC), clock_synchronized=False)\n"
        "t = np.arange(160) / 8000\n"
        "while True:\n"
        "    writer = ring.begin(info)\n"
        "    print('begun', flush=True)\n"
        "    for n in range(150):\n"
        "        writer.write((3000 * np.sin(2 * np.pi * 500 * (t + n * 0.02))).astype(np.int16))\n"
        "        if n % 10 == 9:\n"
        "            print('wrote', n + 1, flush=True)\n"
        "        time.sleep(0.002)\n"
        "    writer.seal(ended_by='hang-up')\n"
    )
    ring_dir = tmp_path / "ring"
    rng = np.random.default_rng(7)
    public = str(keys.path.with_suffix(".pub"))
    for _ in range(12):
        process = subprocess.Popen(
            [sys.executable, str(script), str(ring_dir), public],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        assert process.stdout is not None and process.stderr is not None
        # Into the first or the second recording, with frames still to write: killed open.
        said = 16 * int(rng.integers(0, 2)) + int(rng.integers(1, 14))
        for _ in range(said):
            ready, _, _ = select.select([process.stdout], [], [], 60)
            line = process.stdout.readline() if ready else b""
            assert line, f"the recorder stopped saying what it does: {process.stderr.read()!r}"
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        process.stdout.close()
        process.stderr.close()
    RingStore(
        ring_dir,
        recipients=[load_public(public)],
        identity=load_or_create_identity(ring_dir / "identity.key"),
    ).recover()
    recordings = sorted(ring_dir.glob(f"*{SUFFIX}"))
    assert len(recordings) >= 12
    states = [decrypt(p.read_bytes(), keys).inspected.state for p in recordings]
    assert set(states) <= {"complete", "cut"}
    assert states.count("cut") >= 10  # every kill left one recording open; all recovered
    from linerec.store.verify import verify_ring

    assert verify_ring(ring_dir) == (len(recordings), [])
