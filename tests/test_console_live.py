"""Listening live from the console (issue 15, item 2): a supervisor sees the calls in progress,
gives a reason, and hears the call as it goes on, from where they joined to its end; audited
as `collector listen` is; refused to a listener; an opted-out call ends the listening with
nothing kept.

The call is a real recording written by the appliance's ring (encrypted to the site's
collector key) and put into the real collector store piece by piece, as its stream would
bring it; the console is served by uvicorn on loopback and read by an HTTP client as a
browser's player reads it, a write at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx2
import numpy as np
from fastapi.testclient import TestClient

from calls import wait_until
from console_fixtures import client, clock, delivered, service, site  # noqa: F401
from console_site import PASSWORD, Clock, Server, add_user
from linerec.collector.web.service import ConsoleService
from linerec.store.format import CHUNK_AUDIO_BYTES
from live_call import arrive, box2_call, hang_up

PER_CHUNK = CHUNK_AUDIO_BYTES  # µ-law: one byte a sample, so samples per chunk
WAV_HEADER = 44


def log_in(
    http: httpx2.Client | TestClient, service: ConsoleService, clock: Clock, role: str
) -> str:
    """Log in as a new user of `role`; returns the session's CSRF token."""
    totp = add_user(service, role, role, ("line", "box2/*"))
    answer = http.post(
        "/api/login", json={"name": role, "password": PASSWORD, "code": totp.at(clock.now)}
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["csrf"])


class Player:
    """A player reading the live WAV as it comes (bounded waits on the socket)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.heard = b""

    def until(self, size: int) -> None:
        while len(self.heard) < size:
            self.heard += next(self.chunks)

    def to_the_end(self) -> None:
        for data in self.chunks:
            self.heard += data


def listens(service: ConsoleService, recording_id: str) -> list[dict[str, object]]:
    return [
        e
        for e in service.audit.entries(recording=recording_id)
        if str(e["action"]).startswith("listen")
    ]


def test_a_supervisor_hears_a_call_in_progress_from_where_they_joined_to_its_end(
    service: ConsoleService, clock: Clock, site: Path, tmp_path: Path
) -> None:
    call = box2_call(tmp_path / "card", site, seconds=4.0)
    streamed = 4  # the header and chunks 0-2 are at the collector when the listener comes
    arrive(service, call.piece(0, streamed), clock.now)
    with Server(service) as server, httpx2.Client(base_url=server.url, timeout=20) as http:
        csrf = log_in(http, service, clock, "supervisor")
        live = http.get("/live")
        assert live.status_code == 200
        row = re.search(r'<tr data-device="box2" data-id="([^"]+)">(.*?)</tr>', live.text, re.S)
        assert row is not None and row[1] == call.id
        assert "<td>line1</td>" in row[2] and "Listen live" in row[2]
        (listed,) = http.get("/api/live").json()["calls"]
        stamp = call.id.split("-")[2]  # the id says when the call began: 20261130T055922Z
        since = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}"
        assert (listed["device"], listed["line"], listed["id"]) == ("box2", "line1", call.id)
        assert listed["started_at"] == since.replace(" ", "T") + "Z" and since in row[2]
        asked = http.post(
            f"/live/box2/{call.id}/listen",
            data={"reason": "coaching a new agent", "csrf": csrf},
            follow_redirects=False,
        )
        assert asked.status_code == 303, asked.text
        page = http.get(asked.headers["location"])
        source = re.search(r'<section [^>]*id="live-player"[^>]* data-src="([^"]+)"', page.text)
        assert page.status_code == 200 and source is not None
        assert listens(service, call.id) == []  # a reason given, nothing heard yet
        with http.stream("GET", source[1].replace("&amp;", "&")) as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"] == "audio/wav"
            player = Player(answer.iter_raw())
            joined = streamed - 2  # the newest whole chunk when the listening began
            player.until(WAV_HEADER + 2 * PER_CHUNK)
            assert player.heard[:4] == b"RIFF" and player.heard[36:40] == b"data"
            (began,) = listens(service, call.id)
            assert (began["who"], began["action"], began["reason"]) == (
                "supervisor", "listen", "coaching a new agent",
            )  # fmt: skip
            # each chunk the stream brings is heard before the next comes
            for block in range(streamed, call.blocks - 1):
                arrive(service, call.piece(block, block + 1), clock.now)
                player.until(WAV_HEADER + 2 * PER_CHUNK * (block - joined))
            hang_up(service, call, call.blocks - 1, clock.now)
            player.to_the_end()
    heard = np.frombuffer(player.heard[WAV_HEADER:], dtype="<i2")
    assert joined > 0 and np.array_equal(heard, call.samples[joined * PER_CHUNK :])
    began, ended = listens(service, call.id)
    assert (ended["who"], ended["action"]) == ("supervisor", "listen ended")
    assert re.fullmatch(r"coaching a new agent \(\d+\.\d s, sealed\)", str(ended["reason"]))


def test_an_opted_out_call_ends_the_listening_and_nothing_is_kept(
    service: ConsoleService, clock: Clock, site: Path, tmp_path: Path
) -> None:
    call = box2_call(tmp_path / "card", site, seconds=2.0)
    arrive(service, call.piece(0, 3), clock.now)
    with Server(service) as server, httpx2.Client(base_url=server.url, timeout=20) as http:
        log_in(http, service, clock, "supervisor")
        url = f"/api/live/box2/{call.id}/audio"
        with http.stream("GET", url, params={"reason": "escalation"}) as answer:
            assert answer.status_code == 200
            player = Player(answer.iter_raw())
            player.until(WAV_HEADER + 2 * PER_CHUNK)
            with service.lock:  # the caller opted out: the collector drops the stream
                service.store.uploads.drop("box2", call.id)
            player.to_the_end()
        assert http.get("/api/live").json()["calls"] == []
    assert len(player.heard) == WAV_HEADER + 2 * PER_CHUNK  # nothing after the opt-out
    began, ended = listens(service, call.id)
    assert (began["action"], began["reason"]) == ("listen", "escalation")
    assert re.fullmatch(r"escalation \(\d+\.\d s, discarded\)", str(ended["reason"]))
    assert service.store.stored("box2", call.id) is None
    assert not service.store.uploads.part("box2", call.id).exists()
    leftovers = [p for p in site.parent.rglob("*") if p.is_file() and call.id in p.name]
    assert leftovers == []


def test_a_listener_who_goes_away_ends_the_listening_in_the_audit(
    service: ConsoleService, clock: Clock, site: Path, tmp_path: Path
) -> None:
    call = box2_call(tmp_path / "card", site, seconds=2.0)
    arrive(service, call.piece(0, 3), clock.now)
    with Server(service) as server, httpx2.Client(base_url=server.url, timeout=20) as http:
        log_in(http, service, clock, "admin")
        url = f"/api/live/box2/{call.id}/audio"
        with http.stream("GET", url, params={"reason": "spot check"}) as answer:
            Player(answer.iter_raw()).until(WAV_HEADER + 2 * PER_CHUNK)
        # the browser closed the player: the server notices and the session ends
        wait_until(lambda: len(listens(service, call.id)) == 2, "'listen ended' in the audit")
    began, ended = listens(service, call.id)
    assert (began["who"], ended["who"]) == ("admin", "admin")
    assert re.fullmatch(r"spot check \(\d+\.\d s, stopped\)", str(ended["reason"]))
    with service.lock:
        assert service.store.uploads.is_streaming("box2", call.id)  # the call itself goes on


def test_a_listener_role_cannot_listen_live_and_is_audited(
    client: TestClient, service: ConsoleService, clock: Clock, site: Path, tmp_path: Path
) -> None:
    call = box2_call(tmp_path / "card", site, seconds=1.0)
    arrive(service, call.piece(0, 2), clock.now)
    csrf = log_in(client, service, clock, "listener")
    assert 'href="/live"' not in client.get("/recordings").text
    assert client.get("/live").status_code == 403
    assert client.get("/api/live").status_code == 403
    asked = client.post(
        f"/live/box2/{call.id}/listen",
        data={"reason": "curious", "csrf": csrf},
        follow_redirects=False,
    )
    assert asked.status_code == 403
    heard = client.get(f"/api/live/box2/{call.id}/audio", params={"reason": "curious"})
    assert heard.status_code == 403 and heard.content[:4] != b"RIFF"
    refused = [e for e in service.audit.entries() if e["action"] == "forbidden"]
    assert len(refused) == 4 and all(e["who"] == "listener" for e in refused)
    assert "listen: not allowed to a listener" in str(refused[-1]["reason"])
    assert listens(service, call.id) == []


def test_listening_needs_the_form_token_a_reason_and_a_call_in_progress(
    client: TestClient, service: ConsoleService, clock: Clock, site: Path, tmp_path: Path
) -> None:
    call = box2_call(tmp_path / "card", site, seconds=1.0)
    arrive(service, call.piece(0, 2), clock.now)
    csrf = log_in(client, service, clock, "supervisor")
    forged = client.post(
        f"/live/box2/{call.id}/listen", data={"reason": "coaching"}, follow_redirects=False
    )
    assert forged.status_code == 403
    assert service.audit.entries()[-1]["action"] == "csrf refused"
    blank = client.post(
        f"/live/box2/{call.id}/listen", data={"reason": "  ", "csrf": csrf}, follow_redirects=False
    )
    assert blank.status_code == 400 and "say why you listen" in blank.text
    script = client.get(f"/api/live/box2/{call.id}/audio")
    assert script.status_code == 400 and "reason" in script.json()["detail"]
    assert client.get(f"/live/box2/{call.id}/audio.wav?ticket=made-up").status_code == 403
    assert client.get(f"/live/box2/{call.id}/audio.wav").status_code == 400
    other = client.get("/api/live/box2/box2-00000009-20261130T000000Z-line1/audio?reason=x")
    assert other.status_code == 404 and "no call in progress" in other.json()["detail"]
    actions = [e["action"] for e in service.audit.entries(recording=call.id)]
    assert actions.count("listen refused") == 2 and "listen" not in actions
    # a stale ticket: given ten minutes and more ago
    asked = client.post(
        f"/live/box2/{call.id}/listen",
        data={"reason": "coaching", "csrf": csrf},
        follow_redirects=False,
    )
    assert asked.status_code == 303
    clock.now += 601
    page = client.get(asked.headers["location"])
    assert page.status_code == 400 and "expired" in page.text
