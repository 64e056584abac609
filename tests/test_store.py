"""The encrypted ring: round trips, tampering, the chain, the ring rules, and the tools."""

from __future__ import annotations

import base64
import errno
import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calls import call_info
from linerec.codec import Codec, decode, encode
from linerec.store.base import RecordingInfo
from linerec.store.disk import OsDisk
from linerec.store.format import BLOCK, FINAL, RecordType, chunk_aad, chunk_nonce, scan
from linerec.store.keys import (
    CollectorPrivate,
    KeyFileError,
    keygen,
    load_or_create_identity,
    load_private,
    load_public,
)
from linerec.store.reader import IntegrityError, decrypt, inspect
from linerec.store.ring import RESERVE_STEP, RecordingDeleted, RingStore, StoreFilling, StoreFull
from linerec.store.seal import unwrap_entry
from linerec.store.verify import verify_ring

RATE = 8000
LINEREC = [sys.executable, "-m", "linerec.cli"]


class Wall:
    """A wall clock the test moves."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def keys(tmp_path: Path) -> CollectorPrivate:
    private, _ = keygen(tmp_path / "keys")
    return load_private(private)


def make_ring(tmp_path: Path, keys: CollectorPrivate, **options: object) -> RingStore:
    return RingStore(
        tmp_path / "ring",
        recipients=[load_public(keys.path.with_suffix(".pub"))],
        identity=load_or_create_identity(tmp_path / "ring" / "identity.key"),
        device_id="box1",
        **options,  # type: ignore[arg-type]
    )


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    wave = 6000 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + rng.normal(
        0, 500, len(t)
    )
    return np.clip(wave, -32768, 32767).astype(np.int16)


def record(
    ring: RingStore,
    audio: np.ndarray,
    *,
    line: str = "line1",
    start: datetime | None = None,
    ended_by: str = "hang-up",
    synchronized: bool = True,
) -> Path:
    info = RecordingInfo(
        device_id="box1",
        line=line,
        label="sales",
        direction="inbound",
        consent="notice",
        started_at=start or datetime(2026, 11, 25, 9, 0, tzinfo=UTC),
        clock_synchronized=synchronized,
    )
    writer = ring.begin(info)
    for i in range(0, len(audio), 160):
        writer.write(audio[i : i + 160])
    writer.mark("notice played; conversation follows")
    return writer.seal(ended_by=ended_by).path


@pytest.mark.parametrize("codec", list(Codec))
def test_round_trip(tmp_path: Path, keys: CollectorPrivate, codec: Codec) -> None:
    audio = speech_like(3.3)
    path = record(make_ring(tmp_path, keys, codec=codec), audio)
    result = decrypt(path.read_bytes(), keys)
    assert result.inspected.state == "complete"
    assert np.array_equal(result.samples, decode(codec, encode(codec, audio)))
    meta = result.metadata
    assert (meta["line"], meta["label"], meta["direction"], meta["consent"]) == (
        "line1",
        "sales",
        "inbound",
        "notice",
    )
    assert meta["started_at"] == "2026-11-25T09:00:00.000+00:00"
    assert meta["clock_synchronized"] is True
    assert meta["duration"] == 3.3
    assert meta["markers"] == [{"at": 3.3, "label": "notice played; conversation follows"}]


def test_every_chunk_but_the_last_fills_one_aligned_block(
    tmp_path: Path, keys: CollectorPrivate
) -> None:
    path = record(make_ring(tmp_path, keys), speech_like(5.0))
    chunks = [r for r in scan(path.read_bytes()) if r.type is RecordType.CHUNK]
    assert all(r.offset % BLOCK == 0 and r.end - r.offset == BLOCK for r in chunks[:-1])
    assert [bool(r.flags & FINAL) for r in chunks] == [False] * (len(chunks) - 1) + [True]


def test_only_routing_fields_are_in_the_clear(tmp_path: Path, keys: CollectorPrivate) -> None:
    path = record(make_ring(tmp_path, keys), speech_like(1.0))
    header = inspect(path.read_bytes()).header
    assert set(header) == {
        "v",
        "id",
        "device",
        "seq",
        "prev",
        "line",
        "started_at",
        "clock_synchronized",
        "retention_days",
        "codec",
        "rate",
        "device_key",
        "recipients",
    }
    assert b"sales" not in path.read_bytes()  # the label, like all call metadata, is encrypted
    assert b"inbound" not in path.read_bytes()


def test_two_recipients_can_each_decrypt(tmp_path: Path, keys: CollectorPrivate) -> None:
    second_private, second_public = keygen(tmp_path / "backup")
    ring = RingStore(
        tmp_path / "ring",
        recipients=[load_public(keys.path.with_suffix(".pub")), load_public(second_public)],
        identity=load_or_create_identity(tmp_path / "id.key"),
    )
    path = record(ring, speech_like(1.0))
    assert np.array_equal(
        decrypt(path.read_bytes(), keys).samples,
        decrypt(path.read_bytes(), load_private(second_private)).samples,
    )


def test_appliance_files_hold_no_key_that_decrypts(tmp_path: Path, keys: CollectorPrivate) -> None:
    ring = make_ring(tmp_path, keys)
    path = record(ring, speech_like(1.2))
    data = path.read_bytes()
    inspected = inspect(data)
    first = inspected.chunks[0]
    aad = chunk_aad(inspected.header_hash, 0, bool(first.flags & FINAL))
    entry = inspected.header["recipients"][0]
    # Every 32-byte window of every file the appliance keeps, raw and base64-decoded.
    candidates: set[bytes] = set()
    for file in (tmp_path / "ring").iterdir():
        blob = file.read_bytes()
        candidates.update(blob[i : i + 32] for i in range(len(blob) - 31))
        for token in blob.replace(b'"', b" ").split():
            try:
                decoded = base64.b64decode(token, validate=True)
            except ValueError:
                continue
            candidates.update(decoded[i : i + 32] for i in range(len(decoded) - 31))
    assert len(candidates) > 10_000
    for candidate in candidates:
        with pytest.raises(InvalidTag):
            ChaCha20Poly1305(candidate).decrypt(chunk_nonce(0), first.body[4:], aad)
    for candidate in list(candidates)[:3000] + [c for c in candidates if c[:1] == b"\0"][:100]:
        with pytest.raises((InvalidTag, ValueError)):
            candidate_key = replace(keys, encryption=X25519PrivateKey.from_private_bytes(candidate))
            unwrap_entry(candidate_key, {**entry, "kid": candidate_key.kid}, 2)


def flip(path: Path, offset: int) -> bytes:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    return bytes(data)


def test_tampering_is_named(tmp_path: Path, keys: CollectorPrivate) -> None:
    path = record(make_ring(tmp_path, keys), speech_like(2.0))
    data = path.read_bytes()
    records = list(scan(data))
    chunk1 = next(r for r in records if r.type is RecordType.CHUNK and r.offset > BLOCK)
    trailer = records[-1]
    cases = {
        100: r"damaged at byte 0: checksum mismatch",
        chunk1.offset + 200: rf"damaged at byte {chunk1.offset}: checksum mismatch",
        trailer.offset + 30: rf"damaged at byte {trailer.offset}: checksum mismatch",
    }
    for offset, message in cases.items():
        with pytest.raises(IntegrityError, match=message):
            decrypt(flip(path, offset), keys)


def test_a_consistently_forged_chunk_fails_authentication(
    tmp_path: Path, keys: CollectorPrivate
) -> None:
    # Someone who rewrites a chunk and fixes its CRC, the digest and... cannot fix the signature.
    path = record(make_ring(tmp_path, keys), speech_like(2.0))
    data = bytearray(path.read_bytes())
    chunk = [r for r in scan(bytes(data)) if r.type is RecordType.CHUNK][1]
    data[chunk.offset + 20] ^= 0xFF
    body = bytes(data[chunk.offset + 8 : chunk.end - 4])
    import zlib

    data[chunk.end - 4 : chunk.end] = zlib.crc32(
        bytes(data[chunk.offset + 2 : chunk.offset + 8]) + body
    ).to_bytes(4, "little")
    with pytest.raises(
        IntegrityError, match=r"trailer at byte \d+: the file before it does not match its digest"
    ):
        decrypt(bytes(data), keys)


def test_swapped_chunks(tmp_path: Path, keys: CollectorPrivate) -> None:
    path = record(make_ring(tmp_path, keys), speech_like(3.0))
    data = bytearray(path.read_bytes())
    a, b = [r for r in scan(bytes(data)) if r.type is RecordType.CHUNK][1:3]
    data[a.offset : a.end], data[b.offset : b.end] = data[b.offset : b.end], data[a.offset : a.end]
    with pytest.raises(
        IntegrityError,
        match=rf"chunk 1 at byte {a.offset}: has index 2 \(chunks missing, swapped or repeated\)",
    ):
        decrypt(bytes(data), keys)


def test_chunk_spliced_from_another_recording(tmp_path: Path, keys: CollectorPrivate) -> None:
    ring = make_ring(tmp_path, keys)
    one, two = record(ring, speech_like(2.0, 1)), record(ring, speech_like(2.0, 2))
    # Same index, same place, valid framing: only the AEAD can tell. Check the chunk alone.
    target = bytearray(one.read_bytes())
    a = [r for r in scan(bytes(target)) if r.type is RecordType.CHUNK][1]
    b = [r for r in scan(two.read_bytes()) if r.type is RecordType.CHUNK][1]
    target[a.offset : a.end] = two.read_bytes()[b.offset : b.end]
    records = list(scan(bytes(target)))
    assert len(records) == len(list(scan(one.read_bytes())))  # framing is intact
    with pytest.raises(IntegrityError):
        decrypt(bytes(target), keys)


def test_truncation_is_an_integrity_error(tmp_path: Path, keys: CollectorPrivate) -> None:
    path = record(make_ring(tmp_path, keys), speech_like(3.0))
    data = path.read_bytes()
    chunks = [r for r in scan(data) if r.type is RecordType.CHUNK]
    with pytest.raises(
        IntegrityError, match=rf"byte {chunks[2].end}: the recording stops with no trailer"
    ):
        decrypt(data[: chunks[2].end], keys)
    with pytest.raises(
        IntegrityError,
        match=rf"damaged at byte {chunks[2].offset}: record of \d+ bytes runs past the end",
    ):
        decrypt(data[: chunks[2].offset + 100], keys)


def test_foreign_recipient(tmp_path: Path, keys: CollectorPrivate) -> None:
    path = record(make_ring(tmp_path, keys), speech_like(1.0))
    other = load_private(keygen(tmp_path / "other")[0])
    with pytest.raises(
        IntegrityError,
        match=rf"kid {other.kid}\) is not a recipient of this recording \(recipients: {keys.kid}\)",
    ):
        decrypt(path.read_bytes(), other)
    # A recipient's key id is the hash of its public key, so a key that is not the recipient's
    # is always named as foreign before anything is tried with it.
    assert other.kid != keys.kid


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.tuples(st.integers(0, 40000), st.integers(1, 255)), min_size=1, max_size=4),
    st.integers(0, 40000),
)
def test_reader_never_crashes_on_damaged_input(
    tmp_path: Path, keys: CollectorPrivate, flips: list[tuple[int, int]], cut: int
) -> None:
    path = tmp_path / "fuzz-sample.lrec"
    if not path.exists():
        ring = RingStore(
            tmp_path / "fuzz-ring",
            recipients=[load_public(keys.path.with_suffix(".pub"))],
            identity=load_or_create_identity(tmp_path / "fuzz-id.key"),
        )
        path.write_bytes(record(ring, speech_like(2.5)).read_bytes())
    data = bytearray(path.read_bytes())
    for offset, mask in flips:
        data[offset % len(data)] ^= mask
    damaged = bytes(data[: max(cut, 1)] if cut < len(data) else data)
    if damaged == path.read_bytes():  # the flips cancelled out: it must still read
        assert decrypt(damaged, keys).inspected.state == "complete"
        return
    with pytest.raises(IntegrityError):
        decrypt(damaged, keys)


def test_chain_verifies_and_catches_insertions_and_deletions(
    tmp_path: Path, keys: CollectorPrivate
) -> None:
    ring = make_ring(tmp_path, keys)
    paths = [record(ring, speech_like(0.5, i)) for i in range(4)]
    assert verify_ring(ring.dir) == (4, [])
    headers = [inspect(p.read_bytes()).header for p in paths]
    assert [h["seq"] for h in headers] == [1, 2, 3, 4]
    assert headers[0]["prev"] == ""
    # Deleted by hand (not by the ring): a gap nobody logged.
    moved = tmp_path / paths[1].name
    paths[1].rename(moved)
    _count, problems = verify_ring(ring.dir)
    assert problems == [
        f"{paths[2].name}: recordings 2..2 before it are missing and ring.log does not say they were deleted"
    ]
    moved.rename(paths[1])
    # A recording from another device slipped in.
    other = RingStore(
        tmp_path / "other",
        recipients=[load_public(keys.path.with_suffix(".pub"))],
        identity=load_or_create_identity(tmp_path / "other-id.key"),
    )
    foreign = record(other, speech_like(0.5))
    (ring.dir / "box1-00000009-x.lrec").write_bytes(foreign.read_bytes())
    _, problems = verify_ring(ring.dir)
    assert any("signed by another device" in p for p in problems)


def test_eviction_order_acknowledged_then_oldest_never_held(
    tmp_path: Path, keys: CollectorPrivate
) -> None:
    events: list[object] = []
    # Room for the reservation of a recording in progress and three sealed 8 s recordings.
    ring = make_ring(tmp_path, keys, capacity=RESERVE_STEP + 3 * 72_000, on_event=events.append)
    ids = [record(ring, speech_like(8.0, i)).name.removesuffix(".lrec") for i in range(3)]
    ring.hold(ids[0])
    ring.acknowledge(ids[2], b"signed ack")
    for i in range(4):
        record(ring, speech_like(8.0, 10 + i))
    deleted = [e for e in events if isinstance(e, RecordingDeleted)]
    assert [(e.id, e.reason, e.acknowledged) for e in deleted][:2] == [
        (ids[2], "evicted", True),
        (ids[1], "evicted", False),
    ]
    assert ids[0] in ring.entries  # held: never evicted
    assert ring.used() <= ring.capacity
    assert any(isinstance(e, StoreFilling) for e in events)
    log = [json.loads(line) for line in (ring.dir / "ring.log").read_text().splitlines()]
    assert [entry["id"] for entry in log][:2] == [ids[2], ids[1]]
    assert verify_ring(ring.dir)[1] == []  # the chain still verifies: deletions are logged


def test_when_full_stop_raises_instead_of_evicting(tmp_path: Path, keys: CollectorPrivate) -> None:
    ring = make_ring(tmp_path, keys, capacity=2 * RESERVE_STEP, when_full="stop")
    record(ring, speech_like(8.0))
    with pytest.raises(StoreFull, match="when_full = 'stop'"):
        record(ring, speech_like(40.0))
    assert len([e for e in ring.entries.values() if e.state == "sealed"]) >= 1


def test_retention_deletes_old_recordings_unless_held(
    tmp_path: Path, keys: CollectorPrivate
) -> None:
    wall = Wall()
    ring = make_ring(tmp_path, keys, max_age_days=30, wall=wall)
    old = record(ring, speech_like(0.5), start=wall.now - timedelta(days=31)).name.removesuffix(
        ".lrec"
    )
    held = record(ring, speech_like(0.5), start=wall.now - timedelta(days=40)).name.removesuffix(
        ".lrec"
    )
    new = record(ring, speech_like(0.5), start=wall.now - timedelta(days=29)).name.removesuffix(
        ".lrec"
    )
    ring.hold(held)
    assert ring.enforce_retention() == [old]
    assert set(ring.entries) == {held, new}
    wall.now += timedelta(days=2)
    assert ring.enforce_retention() == [new]
    ring.release(held)
    assert ring.enforce_retention() == [held]


def test_retention_keeps_an_unsent_recording_whose_clock_was_never_set(
    tmp_path: Path, keys: CollectorPrivate
) -> None:
    # A Pi has no RTC: before NTP its date may read 1970, so "old" is not to be trusted.
    wall = Wall()
    ring = make_ring(tmp_path, keys, max_age_days=30, wall=wall)
    unset = record(
        ring, speech_like(0.5), start=wall.now - timedelta(days=60), synchronized=False
    ).name.removesuffix(".lrec")
    assert ring.enforce_retention() == []
    ring.acknowledge(unset, b"signed ack")  # the collector holds a copy: this one may go
    assert ring.enforce_retention() == [unset]


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    result = subprocess.run(
        [*LINEREC, "keygen", "--out", str(tmp_path / "k")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert os.stat(tmp_path / "k" / "collector.key").st_mode & 0o777 == 0o600
    assert (
        load_public(tmp_path / "k" / "collector.pub").kid
        == load_private(tmp_path / "k" / "collector.key").kid
    )
    again = subprocess.run(
        [*LINEREC, "keygen", "--out", str(tmp_path / "k")], capture_output=True, text=True
    )
    assert again.returncode == 2
    assert "collector.key: already exists; not overwriting a key" in again.stderr
    with pytest.raises(KeyFileError, match="is not a linerec-collector-private file"):
        load_private(tmp_path / "k" / "collector.pub")


def test_decrypt_list_verify_commands(tmp_path: Path, keys: CollectorPrivate) -> None:
    ring = make_ring(tmp_path, keys)
    path = record(ring, speech_like(2.0))
    out = tmp_path / "call.wav"
    result = subprocess.run(
        [*LINEREC, "decrypt", str(path), "--key", str(keys.path), "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "complete, 2.0 s" in result.stdout
    assert json.loads(out.with_suffix(".json").read_text())["metadata"]["line"] == "line1"
    listed = subprocess.run(
        [*LINEREC, "store", "list", str(ring.dir), "--json"], capture_output=True, text=True
    )
    (entry,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (entry["state"], entry["duration"], entry["line"], entry["held"]) == (
        "sealed",
        2.0,
        "line1",
        False,
    )
    verified = subprocess.run(
        [*LINEREC, "store", "verify", str(ring.dir)], capture_output=True, text=True
    )
    assert (verified.returncode, verified.stdout.strip()) == (
        0,
        f"{ring.dir}: ok: 1 recording(s), chain unbroken",
    )
    path.write_bytes(flip(path, 5000))
    bad = subprocess.run(
        [*LINEREC, "decrypt", str(path), "--key", str(keys.path), "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert f"{path}: damaged at byte 4096: checksum mismatch" in bad.stderr
    bad_verify = subprocess.run(
        [*LINEREC, "store", "verify", str(ring.dir)], capture_output=True, text=True
    )
    assert bad_verify.returncode == 1
    assert "damaged at byte 4096" in bad_verify.stderr


def test_a_failed_background_sync_ends_the_recording_loudly(
    tmp_path: Path, keys: CollectorPrivate
) -> None:
    import errno

    from linerec.store.disk import OsDisk

    class SyncFails(OsDisk):
        calls = 0

        def datasync(self, handle: int) -> None:
            self.calls += 1
            if self.calls == 3:
                raise OSError(errno.EIO, "Input/output error")
            super().datasync(handle)

    ring = RingStore(
        tmp_path / "ring",
        recipients=[load_public(keys.path.with_suffix(".pub"))],
        identity=load_or_create_identity(tmp_path / "id.key"),
        disk=SyncFails(),
        background_sync=True,
    )
    info = RecordingInfo(
        device_id="box1",
        line="line1",
        label="",
        direction="inbound",
        consent="notice",
        started_at=datetime(2026, 11, 25, tzinfo=UTC),
        clock_synchronized=False,
    )
    writer = ring.begin(info)
    frame = speech_like(0.02)
    with pytest.raises(OSError, match="Input/output error"):
        for _ in range(5000):  # 100 s: the failed sync must surface long before
            writer.write(frame)
            ring.syncer.settle(writer)  # type: ignore[union-attr]  # let the sync thread run
    sealed = writer.seal(ended_by="store-error")  # closed already, where the card held it
    (path,) = (tmp_path / "ring").glob("*.lrec")
    result = decrypt(path.read_bytes(), keys)
    assert result.metadata["ended_by"] == "store-error"
    assert result.inspected.state == "cut"
    assert sealed.duration == len(result.samples) / RATE
    assert verify_ring(tmp_path / "ring") == (1, [])


def test_each_recording_keeps_its_lines_retention(tmp_path: Path, keys: CollectorPrivate) -> None:
    wall = Wall()
    ring = make_ring(tmp_path, keys, max_age_days=365, wall=wall)

    def made(days_ago: float, retention: float) -> str:
        info = RecordingInfo(
            device_id="box1",
            line="line1",
            label="",
            direction="inbound",
            consent="notice",
            started_at=wall.now - timedelta(days=days_ago),
            clock_synchronized=True,
            retention_days=retention,
        )
        writer = ring.begin(info)
        writer.write(speech_like(0.2))
        return writer.seal(ended_by="hang-up").id

    short, long_kept, default = made(40, 30), made(40, 180), made(400, 0)
    assert sorted(ring.enforce_retention()) == sorted([short, default])
    assert set(ring.entries) == {long_kept}
    reopened = make_ring(tmp_path, keys, max_age_days=365, wall=wall)  # read back from the headers
    assert reopened.entries[long_kept].retention_days == 180


class ClosesOnce(OsDisk):
    """Fails the writes numbered in `failing` (EIO); a handle closed that is not open is an
    error (closed twice, the number may by then be another file's)."""

    def __init__(self, failing: set[int]) -> None:
        self.writes = 0
        self.failing = failing
        self.handles: set[int] = set()

    def create(self, path: Path) -> int:
        handle = super().create(path)
        self.handles.add(handle)
        return handle

    def open(self, path: Path) -> int:
        handle = super().open(path)
        self.handles.add(handle)
        return handle

    def pwrite(self, handle: int, data: bytes, offset: int) -> None:
        self.writes += 1
        if self.writes in self.failing:
            raise OSError(errno.EIO, "Input/output error")
        super().pwrite(handle, data, offset)

    def close(self, handle: int) -> None:
        assert handle in self.handles, f"handle {handle} closed, but not open"
        self.handles.remove(handle)
        super().close(handle)


@pytest.mark.parametrize("hold", [False, True], ids=["not-held", "held"])
def test_a_writer_whose_seal_failed_is_discarded_once_for_all(
    tmp_path: Path, keys: CollectorPrivate, hold: bool
) -> None:
    """The card failed a write and then the seal: the file is left for recovery, its handle
    closed. An opt-out discards it still: the deletion logged, the file gone, the handle not
    closed again, and the next start recovers nothing. On legal hold it is refused and kept."""
    disk = ClosesOnce({4, 5})  # the header's write, a chunk, then the seal's final chunk
    deleted: list[object] = []
    ring = make_ring(tmp_path, keys, disk=disk, on_event=deleted.append)
    info = call_info(consent="notice", started_at=datetime(2026, 11, 25, tzinfo=UTC))
    writer = ring.begin(info)
    with pytest.raises(OSError, match="Input/output error"):
        for _ in range(500):
            writer.write(speech_like(0.02))
    with pytest.raises(OSError, match="Input/output error"):
        writer.seal(ended_by="store-error")
    assert disk.handles == set()  # left for recovery: nothing holds the file open
    (path,) = (tmp_path / "ring").glob("*.lrec")
    recording_id = path.stem
    if hold:
        ring.hold(recording_id)
        with pytest.raises(PermissionError, match="on legal hold"):
            writer.discard("opted-out")
        assert path.exists() and deleted == []
        return
    writer.discard("opted-out")
    assert not path.exists()
    (event,) = deleted
    assert (event.id, event.reason) == (recording_id, "opted-out")  # type: ignore[attr-defined]
    logged = (tmp_path / "ring" / "ring.log").read_text()
    assert f'"event": "opted-out", "id": "{recording_id}"' in logged
    again = make_ring(tmp_path, keys)
    assert again.recover() == [] and again.entries == {}


def test_a_recording_whose_beginning_the_card_failed_leaves_nothing_and_no_number_taken(
    tmp_path: Path, keys: CollectorPrivate
) -> None:
    """The card fails the header's write: begin() raises, and nothing of it stays (no file
    for recovery to cut and upload, no handle, no room reserved); the next recording takes
    the number it would have had, so the chain has neither a gap nor a number twice."""
    disk = ClosesOnce({1})
    ring = make_ring(tmp_path, keys, disk=disk, capacity=10 * RESERVE_STEP)
    info = call_info(consent="notice", started_at=datetime(2026, 11, 25, tzinfo=UTC))
    with pytest.raises(OSError, match="Input/output error"):
        ring.begin(info)
    assert not list((tmp_path / "ring").glob("*.lrec"))
    assert disk.handles == set()
    assert ring.used() == 0
    writer = ring.begin(info)
    writer.write(speech_like(1.0))
    sealed = writer.seal(ended_by="hang-up")
    assert ring.entries[sealed.id].seq == 1
    assert make_ring(tmp_path, keys).recover() == []
    assert verify_ring(tmp_path / "ring") == (1, [])


def test_a_part_cut_as_its_seal_failed_is_discarded_with_its_markers(
    tmp_path: Path, keys: CollectorPrivate
) -> None:
    """The card failed the seal's sync: the part is cut where the card held it and seal()
    raises. An opt-out discards it all the same: the file and the ack it was given go, the
    deletion is logged once and reported, and the handle is closed once."""

    class SealSyncFails(ClosesOnce):
        fail_sync = False

        def datasync(self, handle: int) -> None:
            if self.fail_sync:
                self.fail_sync = False
                raise OSError(errno.EIO, "Input/output error")
            super().datasync(handle)

    disk = SealSyncFails(set())
    deleted: list[RecordingDeleted] = []
    ring = make_ring(tmp_path, keys, disk=disk, on_event=deleted.append)
    info = call_info(consent="notice", started_at=datetime(2026, 11, 25, tzinfo=UTC))
    writer = ring.begin(info)
    writer.write(speech_like(1.0))
    disk.fail_sync = True
    with pytest.raises(OSError, match="Input/output error"):
        writer.seal(ended_by="hang-up")
    (path,) = (tmp_path / "ring").glob("*.lrec")
    recording_id = path.stem
    assert ring.entries[recording_id].state == "cut"
    ring.acknowledge(recording_id, b"signed ack")
    writer.discard("opted-out")
    assert sorted(p.name for p in (tmp_path / "ring").iterdir()) == [
        "chain.json",
        "identity.key",
        "ring.log",
    ]
    assert [(e.id, e.reason, e.acknowledged) for e in deleted] == [
        (recording_id, "opted-out", True)
    ]
    assert disk.handles == set()
    assert make_ring(tmp_path, keys).recover() == []
