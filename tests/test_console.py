"""The collector's console and JSON API, in-process over real recordings: accounts and
two-factor login, sessions, roles and grants, search, audio with ranges, the audit chain.

Each refusal is checked three ways: the answer, the audit entry it left, and that nothing
changed. The clock is injected (sessions, lockouts and TOTP steps move with it).
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pyotp
import pytest
from fastapi.testclient import TestClient

from console_fixtures import client, clock, delivered, service, site  # noqa: F401
from console_site import LINEREC, PASSWORD, Clock, add_user, console
from linerec.collector.audit import AuditLog
from linerec.collector.config import load_collector_config
from linerec.collector.database import connect
from linerec.collector.web.app import build_app
from linerec.collector.web.service import ConsoleService
from linerec.collector.web.settings import load_web_settings
from linerec.errors import ConfigError
from linerec.store.reader import decrypt

FAILURE = "wrong name, password or code"


def login(client: TestClient, name: str, totp: pyotp.TOTP, clock: Clock) -> dict[str, str]:
    answer = client.post(
        "/api/login", json={"name": name, "password": PASSWORD, "code": totp.at(clock.now)}
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, str] = answer.json()
    return body


def audit(service: ConsoleService) -> list[tuple[str, str, str | None, str]]:
    return [(e["who"], e["action"], e["recording"], e["reason"]) for e in service.audit.entries()]


def ids(service: ConsoleService) -> dict[str, str]:
    """line -> recording id."""
    return {row["line"]: row["id"] for row in service.store.recordings()}


# -- accounts on the command line ------------------------------------------------------------


def test_user_commands_make_two_factor_accounts_and_there_is_no_default(site: Path) -> None:
    cfg = ["--config", str(site)]
    listed = subprocess.run(
        [*LINEREC, "collector", "user", "list", "--json", *cfg], capture_output=True, text=True
    )
    assert listed.returncode == 0 and listed.stdout == ""  # no default account
    added = subprocess.run(
        [
            *LINEREC,
            "collector",
            "user",
            "add",
            "ann",
            "--role",
            "supervisor",
            "--password-stdin",
            *cfg,
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
    )
    assert added.returncode == 0, added.stderr
    uri = next(w for w in added.stdout.split() if w.startswith("otpauth://totp/"))
    assert "secret=" in uri and "issuer=linerec" in uri
    assert "\u2580" in added.stdout or "\u2588" in added.stdout  # the QR code, in block characters
    secret = pyotp.parse_uri(uri).secret
    short = subprocess.run(
        [*LINEREC, "collector", "user", "add", "bob", "--role", "admin", "--password-stdin", *cfg],
        input="short\n",
        capture_output=True,
        text=True,
    )
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    for action in ("disable", "reset-totp"):
        done = subprocess.run(
            [*LINEREC, "collector", "user", action, "ann", *cfg], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    unknown = subprocess.run(
        [*LINEREC, "collector", "user", "disable", "nobody", *cfg], capture_output=True, text=True
    )
    assert unknown.returncode == 1 and "no user 'nobody'" in unknown.stderr
    (user,) = [json.loads(line) for line in subprocess.run(
        [*LINEREC, "collector", "user", "list", "--json", *cfg], capture_output=True, text=True
    ).stdout.splitlines()]  # fmt: skip
    assert (user["name"], user["role"], user["disabled"]) == ("ann", "supervisor", True)
    service = console(site, Clock())
    with pytest.raises(Exception, match=FAILURE):  # disabled, and the old secret is gone
        service.login("ann", PASSWORD, pyotp.TOTP(secret).now())
    actions = [(who, action) for who, action, _, _ in audit(service)]
    me = __import__("pwd").getpwuid(os.getuid()).pw_name
    assert (me, "user add") in actions and (me, "user disable") in actions


# -- logging in ------------------------------------------------------------------------------


def test_login_sets_a_strict_http_only_cookie_and_logout_ends_the_session(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    totp = add_user(service, "ann", "supervisor")
    answer = client.post(
        "/api/login", json={"name": "ann", "password": PASSWORD, "code": totp.at(clock.now)}
    )
    assert answer.status_code == 200
    cookie = answer.headers["set-cookie"]
    assert "linerec_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    token = client.cookies["linerec_session"]
    assert client.get("/api/recordings").status_code == 200
    assert client.post("/api/logout", json={}).status_code == 200
    client.cookies.set("linerec_session", token)  # the old cookie, kept by an attacker
    assert client.get("/api/recordings").status_code == 401
    assert [a for _, a, _, _ in audit(service)][:1] == ["login"]
    assert "logout" in [a for _, a, _, _ in audit(service)]


def test_tls_makes_the_cookie_secure(service: ConsoleService, clock: Clock) -> None:
    totp = add_user(service, "ann", "listener")
    with TestClient(build_app(service, tls=True), base_url="https://127.0.0.1") as client:
        answer = client.post(
            "/api/login", json={"name": "ann", "password": PASSWORD, "code": totp.at(clock.now)}
        )
        assert "Secure" in answer.headers["set-cookie"]
        assert answer.headers["strict-transport-security"].startswith("max-age=")


def test_wrong_password_wrong_code_replayed_code_and_unknown_name_look_alike(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    totp = add_user(service, "ann", "listener")
    code = totp.at(clock.now)
    wrong_code = f"{(int(code) + 1) % 1000000:06d}"
    attempts = [
        ("ann", "not the password", code),
        ("ann", PASSWORD, wrong_code),
        ("ann", PASSWORD, totp.at(clock.now - 90)),  # three steps old
        ("nobody", PASSWORD, code),
    ]
    for name, password, attempt in attempts:
        answer = client.post(
            "/api/login", json={"name": name, "password": password, "code": attempt}
        )
        assert (answer.status_code, answer.json()) == (401, {"detail": FAILURE})
    assert "linerec_session" not in client.cookies
    login(client, "ann", totp, clock)  # the right code, once
    client.cookies.clear()
    replay = client.post("/api/login", json={"name": "ann", "password": PASSWORD, "code": code})
    assert (replay.status_code, replay.json()) == (401, {"detail": FAILURE})
    assert [(w, a, r) for w, a, _, r in audit(service)] == [
        ("ann", "login failed", "wrong password"),
        ("ann", "login failed", "wrong or reused code"),
        ("ann", "login failed", "wrong or reused code"),
        ("nobody", "login failed", "no such user"),
        ("ann", "login", ""),
        ("ann", "login failed", "wrong or reused code"),
    ]


def test_a_code_from_the_next_or_last_step_is_accepted(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    totp = add_user(service, "ann", "listener")
    answer = client.post(
        "/api/login", json={"name": "ann", "password": PASSWORD, "code": totp.at(clock.now - 30)}
    )
    assert answer.status_code == 200
    clock.now += 30  # the next code: a later step than any used
    answer = client.post(
        "/api/login", json={"name": "ann", "password": PASSWORD, "code": totp.at(clock.now + 30)}
    )
    assert answer.status_code == 200


def test_five_failures_lock_the_account_for_15_minutes(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    totp = add_user(service, "ann", "listener")
    for _ in range(5):
        bad = client.post(
            "/api/login", json={"name": "ann", "password": "guess" * 3, "code": "000000"}
        )
        assert bad.status_code == 401
    clock.now += 60
    locked = client.post(
        "/api/login", json={"name": "ann", "password": PASSWORD, "code": totp.at(clock.now)}
    )
    assert (locked.status_code, locked.json()) == (401, {"detail": FAILURE})
    actions = [(a, r) for _, a, _, r in audit(service)]
    assert actions[5][0] == "account locked" and "15 min" in actions[5][1]
    assert actions[-1] == ("login refused", "account locked")
    clock.now += 15 * 60
    login(client, "ann", totp, clock)


def test_an_idle_session_expires(client: TestClient, service: ConsoleService, clock: Clock) -> None:
    totp = add_user(service, "ann", "listener", ("line", "box1/*"))
    login(client, "ann", totp, clock)
    clock.now += 14 * 60
    assert client.get("/api/recordings").status_code == 200  # activity restarts the idle clock
    clock.now += 14 * 60
    assert client.get("/api/recordings").status_code == 200
    clock.now += 15 * 60 + 1
    assert client.get("/api/recordings").status_code == 401
    page = client.get("/recordings", follow_redirects=False)
    assert (page.status_code, page.headers["location"]) == (303, "/login")
    assert ("ann", "session ended", None, "idle timeout") in audit(service)


def test_the_login_form_needs_its_csrf_token(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    totp = add_user(service, "ann", "listener")
    form = {"name": "ann", "password": PASSWORD, "code": totp.at(clock.now)}
    refused = client.post("/login", data=form, follow_redirects=False)
    assert refused.status_code == 403
    assert "linerec_session" not in client.cookies
    page = client.get("/login")
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    done = client.post("/login", data={**form, "csrf": token}, follow_redirects=False)
    assert (done.status_code, done.headers["location"]) == (303, "/recordings")


def test_a_form_without_its_csrf_token_changes_nothing(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    totp = add_user(service, "ann", "supervisor")
    login(client, "ann", totp, clock)
    rid = ids(service)["line1"]
    before = len(audit(service))
    for data in ({"reason": "dispute 7"}, {"reason": "dispute 7", "csrf": "forged"}):
        answer = client.post(f"/recordings/{rid}/play", data=data, follow_redirects=False)
        assert answer.status_code == 403
    logout = client.post("/logout", data={}, follow_redirects=False)
    assert logout.status_code == 403 and client.get("/api/recordings").status_code == 200
    new = audit(service)[before:]
    assert [a for _, a, _, _ in new if a != "search"] == ["csrf refused"] * 3
    assert all(a != "play" for _, a, _, _ in new)


# -- roles and grants --------------------------------------------------------------------------


def test_a_listener_sees_only_the_lines_granted(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    totp = add_user(service, "lee", "listener", ("line", "box1/line1"))
    login(client, "lee", totp, clock)
    rows = client.get("/api/recordings").json()["recordings"]
    assert [r["line"] for r in rows] == ["line1"]
    other = ids(service)["line2"]
    for path in (
        f"/api/recordings/{other}",
        f"/api/recordings/{other}/audio?reason=curious",
        f"/recordings/{other}",
        f"/recordings/{other}/waveform.svg",
    ):
        assert client.get(path).status_code == 403, path
    for path in ("/api/audit", "/audit"):
        assert client.get(path).status_code == 403, path
    mine = ids(service)["line1"]
    redact = client.post(
        f"/api/recordings/{mine}/redact", json={"from": 1, "to": 2, "reason": "card number"}
    )
    assert redact.status_code == 403  # a supervisor's action
    refused = [(a, rec, r) for w, a, rec, r in audit(service) if a == "forbidden"]
    assert len(refused) == 7
    assert refused[0][1] == other and "not a line or label granted" in refused[0][2]
    assert "audit: not allowed to a listener" in refused[-2][2]
    assert "redact: not allowed to a listener" in refused[-1][2]
    assert not [a for _, a, _, _ in audit(service) if a in ("view", "download", "audit")]


def test_a_label_grant_opens_that_label(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    totp = add_user(service, "sue", "listener", ("label", "support"))
    login(client, "sue", totp, clock)
    rows = client.get("/api/recordings").json()["recordings"]
    assert [(r["line"], r["label"]) for r in rows] == [("line2", "support")]


def test_a_script_token_is_scoped_to_its_role(service: ConsoleService) -> None:
    add_user(service, "ada", "admin")
    token = service.accounts.issue_token("ada", "listener")
    with TestClient(build_app(service)) as client:
        auth = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/audit", headers=auth).status_code == 403
        assert (
            client.get("/api/audit", headers={"Authorization": "Bearer lrt_forged"}).status_code
            == 401
        )
    admin = service.accounts.issue_token("ada", "admin")
    with TestClient(build_app(service)) as client:
        answer = client.get("/api/audit", headers={"Authorization": f"Bearer {admin}"})
        assert answer.status_code == 200 and answer.json()["verified"] is True


def test_every_api_path_needs_a_session(client: TestClient, service: ConsoleService) -> None:
    rid = ids(service)["line1"]
    for method, path in (
        ("GET", "/api/recordings"),
        ("GET", f"/api/recordings/{rid}"),
        ("GET", f"/api/recordings/{rid}/audio?reason=x"),
        ("GET", "/api/audit"),
        ("POST", f"/api/recordings/{rid}/redact"),
    ):
        answer = client.request(
            method, path, json={"from": 1, "to": 2, "reason": "x"} if method == "POST" else None
        )
        assert answer.status_code == 401, path
    schema = client.get("/api/openapi.json").json()
    for path in (
        "/api/login",
        "/api/recordings",
        "/api/recordings/{recording_id}",
        "/api/recordings/{recording_id}/audio",
        "/api/recordings/{recording_id}/redact",
        "/api/audit",
    ):
        assert path in schema["paths"], path


def test_security_headers(client: TestClient) -> None:
    page = client.get("/login")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in page.text and " style=" not in page.text
    assert client.get("/static/console.css").status_code == 200


# -- search ----------------------------------------------------------------------------------


def test_search_filters(client: TestClient, service: ConsoleService, clock: Clock) -> None:
    totp = add_user(service, "ann", "supervisor")
    login(client, "ann", totp, clock)

    def lines(**params: str) -> list[str]:
        answer = client.get("/api/recordings", params=params)
        assert answer.status_code == 200, answer.text
        return sorted(r["line"] for r in answer.json()["recordings"])

    everything = client.get("/api/recordings").json()
    assert everything["total"] == 2
    first = everything["recordings"][0]
    assert {"id", "device", "line", "started_at", "duration"} <= set(first)
    assert lines() == ["line1", "line2"]
    assert lines(number="555") == ["line1", "line2"]  # caller 5551234567, called 5551234
    assert lines(number="55512345") == ["line1"]
    assert lines(number="556") == []
    assert lines(caller="555") == ["line1"]
    assert lines(called="555") == ["line2"]
    assert lines(device="box1", line="line2") == ["line2"]
    assert lines(device="box2") == []
    assert lines(label="sales") == ["line1"]
    assert lines(direction="outbound") == ["line2"]
    started = sorted(r["started_at"] for r in everything["recordings"])
    assert lines(since=started[0], until="2999-01-01") == ["line1", "line2"]
    assert lines(since="2999-01-01") == []
    assert lines(until=started[0]) == []
    assert lines(min_duration="1", max_duration="100000") == ["line1", "line2"]
    assert lines(held="yes") == [] and lines(held="no") == ["line1", "line2"]
    assert lines(review="unreviewed") == ["line1", "line2"]
    one = client.get("/api/recordings", params={"limit": "1", "sort": "started_at"}).json()
    two = client.get("/api/recordings", params={"limit": "1", "page": "2", "sort": "started_at"})
    assert one["total"] == 2 and len(one["recordings"]) == 1
    assert one["recordings"][0]["id"] != two.json()["recordings"][0]["id"]
    page = client.get("/recordings", params={"number": "55512345"})
    assert page.status_code == 200 and "5551234567" in page.text and "1 recording" in page.text


def test_a_search_beyond_the_counted_10000_still_pages_on(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    """The total stops counting at 10,000 ("or more"); the pages go on to the last match."""
    service.store.db.executemany(
        "INSERT INTO recordings (device, id, seq, line, started_at, path, sha256, received_at) "
        "VALUES ('box9', ?, ?, 'line1', ?, 'x', 'x', 0)",
        [(f"box9-{n:06d}", n, f"2020-01-01T00:00:00.{n:06d}") for n in range(10_030)],
    )
    totp = add_user(service, "ann", "supervisor")
    login(client, "ann", totp, clock)
    last_counted = client.get("/recordings", params={"device": "box9", "page": "200"})
    assert "10000 or more recordings" in last_counted.text
    beyond = client.get(link(last_counted.text, "next"))
    assert "box9-000029" in beyond.text and "box9-000000" in beyond.text
    assert "<span>page 201</span>" in beyond.text
    assert ">next</a>" not in beyond.text  # the last page
    back = client.get(link(beyond.text, "previous"))
    assert [found(back.text)[0], found(back.text)[-1]] == ["box9-000079", "box9-000030"]
    assert "<span>page 200</span>" in back.text
    api = client.get("/api/recordings", params={"device": "box9", "page": "201"}).json()
    assert api["total"] == 10_000 and len(api["recordings"]) == 30
    assert api["next"] is None and api["previous"] is not None


def link(page: str, name: str) -> str:
    """The href of the page's `next` or `previous` link."""
    href = page.split(f'">{name}</a>')[0].rsplit('<a href="', 1)[1]
    return href.replace("&amp;", "&")


def found(page: str) -> list[str]:
    """The recording ids a results page lists, in order."""
    return [part.split('"')[0].split("?")[0] for part in page.split('<a href="/recordings/')[1:]]


def test_next_and_previous_neither_repeat_nor_skip_as_recordings_arrive(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    """Newest first, recordings keep arriving while someone pages: the next page goes on
    from the last row seen (a page by number would show that row again, pushed down by the
    new one), and previous comes back to the same rows. Start times tie in threes, and two
    devices use the same ids."""

    def add(device: str, n: int, started: str) -> None:
        service.store.db.execute(
            "INSERT INTO recordings (device, id, seq, line, started_at, path, sha256, "
            "received_at) VALUES (?, ?, ?, 'line1', ?, 'x', 'x', 0)",
            (device, f"rec-{n:03d}", n, started),
        )

    for n in range(15):
        for device in ("box8", "box9"):
            add(device, n, f"2020-01-01T00:00:{n // 3:02d}.000+00:00")
    totp = add_user(service, "ann", "supervisor")
    login(client, "ann", totp, clock)
    # ties broken by id, then device: within a second, ids ascending
    want = [rid for second in range(4, -1, -1) for rid in sorted(
        [f"rec-{n:03d}" for n in range(15) if n // 3 == second] * 2)]  # fmt: skip
    params = {"since": "2019-01-01", "until": "2021-01-01", "limit": "4"}
    page = client.get("/recordings", params=params)
    seen, pages = found(page.text), [found(page.text)]
    arrived = 100
    while ">next</a>" in page.text:
        add("box9", arrived, "2020-01-01T00:00:59.000+00:00")  # newer than every one
        arrived += 1
        page = client.get(link(page.text, "next"))
        assert page.status_code == 200, page.text
        pages.append(found(page.text))
        seen += pages[-1]
    assert seen == want
    assert len(pages) == 8 and "<span>page 8</span>" in page.text
    for number in range(7, 0, -1):
        page = client.get(link(page.text, "previous"))
        assert found(page.text) == pages[number - 1]
        if number > 1:
            assert f"<span>page {number}</span>" in page.text
    # Seven arrived meanwhile, newer than all: two pages of them before, the first whole.
    page = client.get(link(page.text, "previous"))
    assert found(page.text) == ["rec-103", "rec-104", "rec-105", "rec-106"]
    page = client.get(link(page.text, "previous"))
    assert found(page.text) == ["rec-100", "rec-101", "rec-102", "rec-103"]
    assert "<span>page 1</span>" in page.text and ">previous</a>" not in page.text


@pytest.mark.parametrize(
    "field",
    ["number", "caller", "called", "device", "line", "label", "direction", "since", "until",
     "min_duration", "max_duration", "review", "held", "sort", "limit", "page", "offset",
     "after", "before"],
)  # fmt: skip
def test_injection_in_a_search_field_is_refused_and_audited(
    client: TestClient, service: ConsoleService, clock: Clock, field: str
) -> None:
    totp = add_user(service, "ann", "admin")
    login(client, "ann", totp, clock)
    before = service.store.recordings()
    for value in ("' OR 1=1 --", "../../etc/passwd", "x%00", "1; DROP TABLE recordings"):
        answer = client.get("/api/recordings", params={field: value})
        assert answer.status_code == 400, (field, value)
        assert f"search field {field!r}" in answer.json()["detail"]
        page = client.get("/recordings", params={field: value})
        assert page.status_code == 400 and "search field" in page.text
    refused = [r for _, a, _, r in audit(service) if a == "search refused"]
    assert len(refused) == 8 and all(field in r for r in refused)
    assert service.store.recordings() == before


def test_unknown_search_fields_and_paths_are_refused(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    totp = add_user(service, "ann", "admin")
    login(client, "ann", totp, clock)
    assert client.get("/api/recordings", params={"path": "/etc"}).status_code == 400
    for rid in ("..%2F..%2Fcollector.db", "nope", "' OR '1'='1"):
        answer = client.get(f"/api/recordings/{rid}")
        assert answer.status_code == 404, rid
    actions = [a for _, a, _, _ in audit(service)]
    assert actions.count("view refused") + actions.count("not found") == 3


# -- listening -------------------------------------------------------------------------------


def test_audio_is_the_recording_and_ranges_seek(
    client: TestClient, service: ConsoleService, clock: Clock, site: Path
) -> None:
    totp = add_user(service, "lee", "listener", ("line", "box1/line1"))
    login(client, "lee", totp, clock)
    rid = ids(service)["line1"]
    refused = client.get(f"/api/recordings/{rid}/audio")
    assert refused.status_code == 400 and "reason" in refused.json()["detail"]
    whole = client.get(f"/api/recordings/{rid}/audio", params={"reason": "dispute 7"})
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    with wave.open(io.BytesIO(whole.content)) as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        assert wav.getframerate() == 8000
    row = service.store.recording(rid)
    assert row is not None
    settings = load_collector_config(site)
    expected = decrypt(service.store.read_recording(rid, Path(row["path"])), settings.key).samples
    assert np.array_equal(samples, expected)
    part = client.get(
        f"/api/recordings/{rid}/audio",
        params={"reason": "dispute 7"},
        headers={"Range": "bytes=1000-1999"},
    )
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(whole.content)}"
    assert part.content == whole.content[1000:2000]
    tail = client.get(
        f"/api/recordings/{rid}/audio", params={"reason": "x"}, headers={"Range": "bytes=-10"}
    )
    assert tail.content == whole.content[-10:]
    beyond = client.get(
        f"/api/recordings/{rid}/audio",
        params={"reason": "x"},
        headers={"Range": f"bytes={len(whole.content)}-"},
    )
    assert beyond.status_code == 416
    downloads = [(a, rec, r) for w, a, rec, r in audit(service) if w == "lee" and "download" in a]
    assert downloads[0] == ("download refused", rid, "no reason given")
    assert downloads[1:] == [("download", rid, "dispute 7")] * 2 + [("download", rid, "x")] * 2
    clear = [p for p in site.parent.rglob("*") if p.suffix == ".wav"]
    assert clear == []  # nothing in clear written anywhere


def test_the_recording_page_plays_after_a_reason(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    totp = add_user(service, "ann", "supervisor")
    csrf = login(client, "ann", totp, clock)["csrf"]
    rid = ids(service)["line1"]
    page = client.get(f"/recordings/{rid}")
    assert page.status_code == 200
    for fact in ("5551234567", "notice; notice played", "signed by box1 and intact (complete)"):
        assert fact in page.text, fact
    assert "<audio" not in page.text  # no audio until a reason is given
    empty = client.post(f"/recordings/{rid}/play", data={"csrf": csrf, "reason": "  "})
    assert empty.status_code == 400 and "say why" in empty.text
    played = client.post(
        f"/recordings/{rid}/play", data={"csrf": csrf, "reason": "quality check"},
        follow_redirects=False,
    )  # fmt: skip
    assert played.status_code == 303
    page = client.get(played.headers["location"])
    src = page.text.split('<audio id="player" controls preload="metadata" src="')[1].split('"')[0]
    audio = client.get(src.replace("&amp;", "&"), headers={"Range": "bytes=0-43"})
    assert audio.status_code == 206 and audio.content[:4] == b"RIFF"
    assert client.get(f"/recordings/{rid}/audio.wav").status_code == 400  # no ticket
    svg = client.get(f"/recordings/{rid}/waveform.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml") and "<polygon" in svg.text
    plays = [(a, r) for w, a, rec, r in audit(service) if rec == rid and "play" in a]
    assert plays == [("play refused", "no reason given"), ("play", "quality check")]


# -- the audit chain -------------------------------------------------------------------------


def test_audit_verify_names_the_first_broken_entry(site: Path, service: ConsoleService) -> None:
    cfg = ["--config", str(site)]
    rid = ids(service)["line2"]
    deleted = subprocess.run(
        [*LINEREC, "collector", "delete", rid, "--reason", "customer asked", *cfg],
        capture_output=True,
        text=True,
    )
    assert deleted.returncode == 0, deleted.stderr
    for action in ("user add",):
        service.audit.record(who="x", action=action)
    ok = subprocess.run(
        [*LINEREC, "collector", "audit", "--verify", *cfg], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    db = connect(load_collector_config(site).database)  # someone with the database's password
    db.execute("UPDATE audit SET reason = 'nothing to see' WHERE rowid = 2")
    bad = subprocess.run(
        [*LINEREC, "collector", "audit", "--verify", *cfg], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert "audit log: entry 2 was altered" in bad.stderr
    db.execute("UPDATE deletions SET reason = 'retention' WHERE rowid = 1")
    bad = subprocess.run(
        [*LINEREC, "collector", "audit", "--verify", *cfg], capture_output=True, text=True
    )
    assert "deletion log: entry 1 was altered" in bad.stderr
    db.execute("DELETE FROM audit WHERE rowid = 3")
    problems = AuditLog(db).verify()
    assert problems[0].startswith("audit log: entry 2 was altered")


def test_who_on_the_command_line_is_the_real_uid(site: Path, service: ConsoleService) -> None:
    env = {**os.environ, "USER": "mallory", "LOGNAME": "mallory"}
    subprocess.run(
        [*LINEREC, "collector", "list", "--reason", "weekly", "--config", str(site)],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    (entry,) = [e for e in service.audit.entries() if e["action"] == "list"]
    assert entry["who"] == __import__("pwd").getpwuid(os.getuid()).pw_name != "mallory"


def test_hold_and_delete_of_an_unknown_recording_are_errors(site: Path) -> None:
    cfg = ["--config", str(site)]
    for command in (["hold", "nope"], ["delete", "nope", "--reason", "x"]):
        done = subprocess.run(
            [*LINEREC, "collector", *command, *cfg], capture_output=True, text=True
        )
        assert done.returncode == 1 and "no recording 'nope'" in done.stderr, command
    blank = subprocess.run(
        [*LINEREC, "collector", "delete", "nope", "--reason", " ", *cfg],
        capture_output=True,
        text=True,
    )
    assert blank.returncode == 2 and "--reason" in blank.stderr


def test_collector_list_takes_the_search_filters(site: Path) -> None:
    cfg = ["--config", str(site)]

    def listed(*flags: str) -> list[dict[str, str]]:
        done = subprocess.run(
            [*LINEREC, "collector", "list", "--json", *flags, *cfg], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    assert sorted(r["line"] for r in listed()) == ["line1", "line2"]
    assert [r["line"] for r in listed("--number", "55512345")] == ["line1"]
    assert [r["line"] for r in listed("--label", "support")] == ["line2"]
    assert [r["line"] for r in listed("--direction", "inbound", "--line", "line1")] == ["line1"]
    bad = subprocess.run(
        [*LINEREC, "collector", "list", "--number", "1' OR '1'='1", *cfg],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--number" in bad.stderr


# -- serving ---------------------------------------------------------------------------------


def test_plain_http_only_on_loopback(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text('[web]\nlisten = "0.0.0.0:8443"\n')
    with pytest.raises(ConfigError, match=r"web.listen: '0.0.0.0:8443' is not a loopback address"):
        load_web_settings(config)
    config.write_text('[web]\nlisten = "0.0.0.0:8443"\nallow_plaintext = true\n')
    assert load_web_settings(config).host == "0.0.0.0"
    config.write_text('[web]\nlisten = "192.0.2.1:443"\ncert = "c.pem"\nkey = "k.pem"\n')
    assert load_web_settings(config).tls
    config.write_text("[web]\n")
    settings = load_web_settings(config)
    assert (settings.host, settings.port, settings.idle_timeout_min) == ("127.0.0.1", 8443, 15.0)
    config.write_text('[web]\nlisten = "127.0.0.1:8443"\nidle_minutes = 5\n')
    with pytest.raises(ConfigError, match=r"web\.idle_minutes: unknown key"):
        load_web_settings(config)


def test_the_appliance_never_loads_the_console_libraries() -> None:
    code = (
        "import sys, linerec.cli; linerec.cli.parser(); "
        "print(sorted(m for m in ('fastapi', 'starlette', 'uvicorn', 'jinja2', 'argon2', "
        "'pyotp', 'segno') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_collector_web_refuses_plain_http_off_loopback(site: Path) -> None:
    with open(site, "a") as config:
        config.write('[web]\nlisten = "0.0.0.0:8443"\n')
    done = subprocess.run(
        [*LINEREC, "collector", "web", "--config", str(site)], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"linerec: error: {site}: web.listen: '0.0.0.0:8443' is not a loopback address: "
        "give cert and key (TLS), or allow_plaintext = true"
    )


def test_a_listener_paging_by_next_previous_or_a_made_up_cursor_sees_only_its_grants(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    """A listener granted one line of box8 and all of box9 pages by the links (the page and
    the API) through exactly those recordings, each way; a cursor made up to name a recording
    of box7 or of box8's other line (its form is no secret) still shows only granted ones."""
    start = "2020-01-01T00:00:{:02d}.000+00:00"
    rows = [(device, line, n) for n in range(8) for device, line in
            (("box7", "line1"), ("box8", "line1"), ("box8", "line2"), ("box9", "line3"))]  # fmt: skip
    service.store.db.executemany(
        "INSERT INTO recordings (device, id, seq, line, started_at, path, sha256, received_at) "
        "VALUES (?, ?, ?, ?, ?, 'x', 'x', 0)",
        [(d, f"{d}-{line}-{n}", n, line, start.format(n)) for d, line, n in rows],
    )
    totp = add_user(service, "lee", "listener", ("line", "box8/line1"), ("line", "box9/*"))
    login(client, "lee", totp, clock)
    granted = [f"{d}-{line}-{n}" for d, line, n in rows if (d, line) in
               (("box8", "line1"), ("box9", "line3"))]  # fmt: skip
    want = sorted(granted, key=lambda rid: (-int(rid[-1]), rid))  # newest first, then id
    params = {"since": "2019-01-01", "limit": "3"}
    page = client.get("/recordings", params=params)
    pages = [found(page.text)]
    while ">next</a>" in page.text:
        page = client.get(link(page.text, "next"))
        pages.append(found(page.text))
    assert [rid for shown in pages for rid in shown] == want
    for number in range(len(pages) - 1, 0, -1):
        page = client.get(link(page.text, "previous"))
        assert found(page.text) == pages[number - 1]
    api = client.get("/api/recordings", params=params).json()
    seen = [r["id"] for r in api["recordings"]]
    while api["next"] is not None:
        api = client.get("/api/recordings", params={**params, "after": api["next"]}).json()
        seen += [r["id"] for r in api["recordings"]]
    assert seen == want and api["total"] == len(want)
    for device, line, n in rows:
        if f"{device}-{line}-{n}" in granted:
            continue
        key = json.dumps(["-started_at", [start.format(n), f"{device}-{line}-{n}", device]])
        cursor = base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")
        for way in ("after", "before"):
            answer = client.get("/api/recordings", params={**params, way: cursor})
            assert answer.status_code == 200, answer.text
            shown = [r["id"] for r in answer.json()["recordings"]]
            assert shown and set(shown) <= set(granted), (way, cursor, shown)
            html = client.get("/recordings", params={**params, way: cursor})
            assert found(html.text) == shown
    assert not [a for _, a, _, _ in audit(service) if a == "forbidden"]
