"""Playing a long recording: the console streams its audio chunk by chunk, decrypted as it is
sent, so a player's first bytes and its seeks do not wait for the whole recording, and the
memory a play takes does not grow with the recording.

The recording is a 20-minute call sealed by the appliance's real RingStore and kept in the
collector's real vault; a second copy of it is redacted by the collector (a version whose
chunks are not on 4 KiB boundaries). Memory is measured with tracemalloc, not time.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console_site import Clock, Server
from linerec.codec import RATE, Codec
from linerec.collector.redaction import redact
from linerec.collector.store import CollectorStore
from linerec.collector.web.app import build_app
from linerec.collector.web.audio import wav_bytes
from linerec.collector.web.service import ConsoleService
from linerec.store.base import RecordingInfo
from linerec.store.disk import OsDisk
from linerec.store.keys import keygen, load_or_create_identity, load_private, load_public
from linerec.store.reader import decrypt
from linerec.store.ring import RingStore

MINUTES = 20
WAV_SIZE = 44 + 2 * MINUTES * 60 * RATE  # 19.2 MB


class NoSyncDisk(OsDisk):
    """Sealing the 20-minute fixture need not wait for the card."""

    def datasync(self, handle: int) -> None:
        pass


def long_call(root: Path, public: Path) -> Path:
    ring = RingStore(
        root / "ring",
        recipients=[load_public(public)],
        identity=load_or_create_identity(root / "identity.key"),
        codec=Codec.ULAW,
        disk=NoSyncDisk(),
    )
    info = RecordingInfo(
        device_id="box9", line="line1", label="sales", direction="inbound", consent="notice",
        started_at=datetime(2026, 1, 1, tzinfo=UTC), clock_synchronized=True,
    )  # fmt: skip
    writer = ring.begin(info)
    rng = np.random.default_rng(3)
    for minute in range(MINUTES):  # a tone that changes each minute, and noise
        t = np.arange(60 * RATE) / RATE
        tone = 2000 * np.sin(2 * np.pi * (300 + 20 * minute) * t) + rng.normal(0, 300, t.size)
        writer.write(tone.astype(np.int16))
    return writer.seal(ended_by="hang-up").path


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collector's data dir holding the call (as `collector` keeps an upload)."""
    root = tmp_path_factory.mktemp("long")
    _, public = keygen(root / "keys")
    sealed = long_call(root, public)
    store = CollectorStore(root / "central", root / "central" / "collector.db")
    part = root / "upload.part"
    part.write_bytes(sealed.read_bytes())
    rid = sealed.name.removesuffix(".lrec")
    path = store.keep("box9", rid, part)
    store.index("box9", rid, path, hashlib.sha256(sealed.read_bytes()).hexdigest(),
                {"seq": 1, "line": "line1", "started_at": "2026-01-01T00:00:00+00:00",
                 "duration": MINUTES * 60.0, "state": "complete"}, 0.0)  # fmt: skip
    store.db.close()
    return root


def open_site(kept: Path, to: Path) -> tuple[ConsoleService, str]:
    shutil.copytree(kept, to)
    database = to / "central" / "collector.db"
    with sqlite3.connect(database) as db:
        db.execute("UPDATE recordings SET path = replace(path, ?, ?)", (str(kept), str(to)))
    db.close()
    store = CollectorStore(to / "central", database)
    service = ConsoleService(store, load_private(to / "keys" / "collector.key"), clock=Clock())
    service.accounts.add("ann", "supervisor", "correct horse battery")
    return service, service.accounts.issue_token("ann", "supervisor")


@pytest.fixture(scope="module")
def plain(kept: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ConsoleService, str]:
    return open_site(kept, tmp_path_factory.mktemp("plain") / "site")


@pytest.fixture(scope="module")
def redacted(kept: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ConsoleService, str]:
    service, token = open_site(kept, tmp_path_factory.mktemp("redacted") / "site")
    (row,) = service.store.recordings()
    redact(service.store, service.key, row["id"], 61.25, 122.5, "card number", who="ann")
    return service, token


def whole_wav(service: ConsoleService) -> bytes:
    """What the player must hear: the recording decrypted whole, as WAV."""
    (row,) = service.store.recordings()
    sealed = service.store.read_recording(row["id"], Path(row["path"]), row["device"])
    return wav_bytes(decrypt(sealed, service.key).samples)


@pytest.fixture(scope="module")
def plain_wav(plain: tuple[ConsoleService, str]) -> bytes:
    return whole_wav(plain[0])


@pytest.fixture(scope="module")
def redacted_wav(redacted: tuple[ConsoleService, str]) -> bytes:
    return whole_wav(redacted[0])


@pytest.fixture
def forget(plain: tuple[ConsoleService, str]) -> Iterator[None]:
    """Each test starts as a new play: nothing of the recording decrypted yet."""
    plain[0].forget_audio()
    yield
    plain[0].forget_audio()


def audio_path(service: ConsoleService) -> str:
    (row,) = service.store.recordings()
    return f"/api/recordings/{row['id']}/audio"


def peak_while(call: object) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = call() if callable(call) else None
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_new_play_and_a_seek_decrypt_only_what_they_send(
    plain: tuple[ConsoleService, str], plain_wav: bytes, forget: None
) -> None:
    service, token = plain
    assert len(plain_wav) == WAV_SIZE
    with TestClient(build_app(service), base_url="http://127.0.0.1") as client:
        headers = {"Authorization": f"Bearer {token}"}
        first, peak_first = peak_while(lambda: client.get(
            audio_path(service), params={"reason": "dispute 7"},
            headers={**headers, "Range": "bytes=0-65535"},
        ))  # fmt: skip
        assert isinstance(first, httpx2.Response) and first.status_code == 206
        assert first.headers["content-range"] == f"bytes 0-65535/{WAV_SIZE}"
        assert first.content == plain_wav[:65536]
        middle = WAV_SIZE // 2 + 1  # odd: half a sample
        seek, peak_seek = peak_while(lambda: client.get(
            audio_path(service), params={"reason": "dispute 7"},
            headers={**headers, "Range": f"bytes={middle}-{middle + 99_999}"},
        ))  # fmt: skip
        assert isinstance(seek, httpx2.Response) and seek.status_code == 206
        assert seek.content == plain_wav[middle : middle + 100_000]
    # The whole WAV is 19.2 MB; decrypting it to answer would take more than that.
    assert peak_first < 6 * 2**20, peak_first
    assert peak_seek < 6 * 2**20, peak_seek


def test_the_whole_recording_streams_in_bounded_memory(
    plain: tuple[ConsoleService, str], plain_wav: bytes, forget: None
) -> None:
    service, token = plain
    digest = hashlib.sha256()
    received = 0

    def play() -> httpx2.Response:
        nonlocal received
        params, headers = {"reason": "dispute 7"}, {"Authorization": f"Bearer {token}"}
        with (
            Server(service) as server,
            httpx2.Client(base_url=server.url) as web,
            web.stream("GET", audio_path(service), params=params, headers=headers) as answer,
        ):
            for piece in answer.iter_raw():
                digest.update(piece)
                received += len(piece)
            return answer

    answer, peak = peak_while(play)
    assert isinstance(answer, httpx2.Response) and answer.status_code == 200
    assert answer.headers["content-length"] == str(WAV_SIZE)
    assert received == WAV_SIZE and digest.digest() == hashlib.sha256(plain_wav).digest()
    assert peak < 8 * 2**20, peak  # not the 19.2 MB of the WAV, nor the recording decrypted


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_range_of_a_redacted_version_is_the_same_bytes(
    redacted: tuple[ConsoleService, str], redacted_wav: bytes, data: st.DataObject
) -> None:
    """A redacted version's chunks start after its header and metadata, not on 4 KiB
    boundaries: every range still maps onto the right samples (silence where redacted)."""
    service, token = redacted
    size = len(redacted_wav)
    first = data.draw(st.sampled_from([0, 43, 44, 45, 8171, 8172, size // 3, size - 2])
                      | st.integers(0, size - 1))  # fmt: skip
    last = data.draw(st.integers(first, min(size - 1, first + 300_000)))
    with TestClient(build_app(service), base_url="http://127.0.0.1") as client:
        answer = client.get(
            audio_path(service), params={"reason": "dispute 7"},
            headers={"Authorization": f"Bearer {token}", "Range": f"bytes={first}-{last}"},
        )  # fmt: skip
    assert answer.status_code == 206
    assert answer.headers["content-range"] == f"bytes {first}-{last}/{size}"
    assert answer.content == redacted_wav[first : last + 1]
    silent = np.frombuffer(redacted_wav, dtype="<i2", offset=44)[
        round(61.25 * RATE) : round(122.5 * RATE)
    ]
    assert not silent.any()


def test_an_altered_vault_block_is_never_played(
    kept: Path, tmp_path: Path, plain_wav: bytes
) -> None:
    service, token = open_site(kept, tmp_path / "site")
    (row,) = service.store.recordings()
    vault = Path(row["path"])
    with open(vault, "r+b") as file:  # a byte of the third 1 MiB block, at rest
        file.seek(16 + 2 * (2**20 + 16) + 5000)
        byte = file.read(1)
        file.seek(-1, 1)
        file.write(bytes([byte[0] ^ 1]))
    chunk = (2 * 2**20 + 5000 - 4096) // 4096  # the appliance's chunk i is at 4096 * (i + 1)
    inside = 44 + 2 * 4064 * chunk  # its first sample's byte in the WAV
    with TestClient(build_app(service), base_url="http://127.0.0.1",
                    raise_server_exceptions=False) as client:  # fmt: skip
        headers = {"Authorization": f"Bearer {token}"}
        params = {"reason": "dispute 7"}
        start = client.get(audio_path(service), params=params,
                           headers={**headers, "Range": "bytes=0-999"})  # fmt: skip
        assert start.status_code == 206 and start.content == plain_wav[:1000]
        refused = client.get(
            audio_path(service),
            params=params,
            headers={**headers, "Range": f"bytes={inside}-{inside + 999}"},
        )
        assert refused.status_code == 500  # fmt: skip
        assert "altered at rest (block 2)" in refused.json()["detail"]
