"""Reading a recording's audio from any sample (linerec.store.chunks): the same samples and
metadata as decrypting it whole, for every codec, a recording cut by a power loss and one
with space reserved after it; what is not a recording's chunk in its place is refused,
naming the chunk and the byte."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from linerec.codec import Codec
from linerec.store.base import RecordingInfo
from linerec.store.chunks import InMemory, open_audio
from linerec.store.format import BLOCK
from linerec.store.keys import (
    CollectorPrivate,
    keygen,
    load_or_create_identity,
    load_private,
    load_public,
)
from linerec.store.reader import IntegrityError, decrypt
from linerec.store.ring import RingStore

INFO = RecordingInfo(
    device_id="box1", line="line1", label="sales", direction="inbound", consent="notice",
    started_at=datetime(2026, 1, 1, tzinfo=UTC), clock_synchronized=True,
)  # fmt: skip


def ring(root: Path, codec: Codec) -> tuple[RingStore, CollectorPrivate]:
    private, public = keygen(root / "keys")
    store = RingStore(
        root / "ring",
        recipients=[load_public(public)],
        identity=load_or_create_identity(root / "identity.key"),
        codec=codec,
    )
    return store, load_private(private)


def call(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.integers(-8000, 8000, round(seconds * 8000)).astype(np.int16)


def whole(data: bytes, key: CollectorPrivate, start: int = 0, stop: int | None = None) -> bytes:
    audio = open_audio(InMemory(data), key)
    stop = audio.samples if stop is None else stop
    return b"".join(np.asarray(s, dtype="<i2").tobytes() for s in audio.read(start, stop))


@pytest.mark.parametrize("codec", list(Codec))
def test_any_span_is_the_samples_decrypt_gives(tmp_path: Path, codec: Codec) -> None:
    store, key = ring(tmp_path, codec)
    writer = store.begin(INFO)
    writer.write(call(3.3))
    data = writer.seal(ended_by="hang-up").path.read_bytes()
    expected = decrypt(data, key)
    audio = open_audio(InMemory(data), key)
    assert (audio.state, audio.samples) == ("complete", len(expected.samples))
    assert audio.metadata == expected.metadata and audio.first == BLOCK
    samples = np.asarray(expected.samples, dtype="<i2")
    assert whole(data, key) == samples.tobytes()
    per = audio.per_chunk
    for start, stop in [(0, 1), (per - 1, per + 1), (5 * per, 5 * per), (7000, 26000),
                        (len(samples) - 3, len(samples) + 50)]:  # fmt: skip
        assert whole(data, key, start, stop) == samples[start:stop].tobytes()


def test_a_recording_cut_by_a_power_loss_and_one_with_space_reserved_after_it(
    tmp_path: Path,
) -> None:
    store, key = ring(tmp_path, Codec.ULAW)
    writer = store.begin(INFO)
    writer.write(call(2.0))
    path = writer.path  # left open, as a power cut leaves it; the next start recovers it
    again = RingStore(tmp_path / "ring", recipients=[load_public(tmp_path / "keys" / "collector.pub")],
                      identity=load_or_create_identity(tmp_path / "identity.key"))  # fmt: skip
    again.recover()
    data = path.read_bytes()
    expected = decrypt(data, key)
    audio = open_audio(InMemory(data), key)
    assert audio.state == expected.inspected.state == "cut"
    assert whole(data, key) == np.asarray(expected.samples, dtype="<i2").tobytes()
    reserved = data + bytes(40 * BLOCK)  # zeros the writer reserved ahead
    assert whole(reserved, key) == np.asarray(expected.samples, dtype="<i2").tobytes()


def test_what_is_not_the_chunk_in_its_place_is_refused(tmp_path: Path) -> None:
    store, key = ring(tmp_path, Codec.ULAW)
    writer = store.begin(INFO)
    writer.write(call(3.0))
    data = bytearray(writer.seal(ended_by="hang-up").path.read_bytes())
    swapped = bytes(data[: 3 * BLOCK] + data[4 * BLOCK : 5 * BLOCK] + data[3 * BLOCK : 4 * BLOCK]
                    + data[5 * BLOCK :])  # chunks 2 and 3 change places  # fmt: skip
    audio = open_audio(InMemory(swapped), key)
    assert whole(swapped, key, 0, 2 * audio.per_chunk) == whole(bytes(data), key, 0, 2 * 4064)
    with pytest.raises(IntegrityError, match=f"chunk 2 at byte {3 * BLOCK}: not that chunk"):
        whole(swapped, key, 2 * audio.per_chunk, 2 * audio.per_chunk + 1)
    truncated = bytes(data[: 4 * BLOCK])
    with pytest.raises(IntegrityError, match="no trailer and no cut marker"):
        open_audio(InMemory(truncated), key)
    forged = bytearray(data)
    forged[2 * BLOCK + 100] ^= 1  # inside chunk 1's ciphertext, its CRC made to match
    import zlib

    from linerec.store.format import CRC, FRAME

    length = int.from_bytes(forged[2 * BLOCK + 4 : 2 * BLOCK + 8], "little")
    crc_at = 2 * BLOCK + FRAME.size + length
    forged[crc_at : crc_at + 4] = CRC.pack(zlib.crc32(bytes(forged[2 * BLOCK + 2 : crc_at])))
    with pytest.raises(IntegrityError, match=f"chunk 1 at byte {2 * BLOCK}: failed auth"):
        whole(bytes(forged), key, 4064, 4065)
