"""What only an admin does in the console: users and their grants, and deleting a recording
(crypto-shredding, as `collector delete`). Over real recordings delivered through mosquitto;
each refusal is checked by its answer, its audit entry, and that nothing changed."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from console_fixtures import client, clock, delivered, service, site  # noqa: F401
from console_site import PASSWORD, Clock, add_user
from linerec.collector.web.service import ConsoleService


def log_in(client: TestClient, service: ConsoleService, clock: Clock, name: str, role: str) -> str:
    totp = add_user(service, name, role)
    answer = client.post(
        "/api/login", json={"name": name, "password": PASSWORD, "code": totp.at(clock.now)}
    )
    assert answer.status_code == 200, answer.text
    csrf: str = answer.json()["csrf"]
    return csrf


def audit(service: ConsoleService) -> list[tuple[str, str, str | None, str]]:
    return [(e["who"], e["action"], e["recording"], e["reason"]) for e in service.audit.entries()]


def test_an_admin_manages_users_and_grants(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    lee = add_user(service, "lee", "listener")
    csrf = log_in(client, service, clock, "ada", "admin")
    listed = client.get("/api/users").json()["users"]
    assert {u["name"]: (u["role"], u["grants"], u["disabled"]) for u in listed} == {
        "ada": ("admin", [], False),
        "lee": ("listener", [], False),
    }
    page = client.get("/users")
    assert page.status_code == 200 and 'class="grant"' in page.text and "lee" in page.text
    body = {"kind": "line", "value": "box1/line1", "granted": True}
    assert client.post("/api/users/lee/grants", json=body).status_code == 200
    form = client.post("/users/lee/grants", data={"kind": "label", "value": "sales",
                                                   "granted": "yes", "csrf": csrf},
                       follow_redirects=False)  # fmt: skip
    assert form.status_code == 303
    assert [f"{g.kind}:{g.value}" for g in service.accounts.grants("lee")] == [
        "label:sales", "line:box1/line1"
    ]  # fmt: skip
    stale = client.post("/users/lee/grants", data={"kind": "label", "value": "sales"})
    assert stale.status_code == 403  # no CSRF token
    bad = client.post("/api/users/lee/grants", json={**body, "value": "../etc"})
    assert bad.status_code == 400 and "a line is DEVICE/LINE" in bad.json()["detail"]
    assert client.post("/api/users/nobody/grants", json=body).status_code == 404
    revoked = client.post("/users/lee/grants", data={"kind": "label", "value": "sales",
                                                      "granted": "no", "csrf": csrf},
                          follow_redirects=False)  # fmt: skip
    assert revoked.status_code == 303
    assert [f"{g.kind}:{g.value}" for g in service.accounts.grants("lee")] == ["line:box1/line1"]
    # Disabling ends the account's sessions at once.
    lee_client = TestClient(client.app, base_url="http://127.0.0.1")
    clock.now += 30
    assert (
        lee_client.post(
            "/api/login", json={"name": "lee", "password": PASSWORD, "code": lee.at(clock.now)}
        ).status_code
        == 200
    )
    assert lee_client.get("/api/recordings").status_code == 200  # fmt: skip
    disabled = client.post("/users/lee/disable", data={"disabled": "yes", "csrf": csrf},
                           follow_redirects=False)  # fmt: skip
    assert disabled.status_code == 303 and lee_client.get("/api/recordings").status_code == 401
    assert client.post("/api/users/ada", json={"disabled": True}).status_code == 400  # oneself
    assert client.post("/api/users/lee", json={"disabled": False}).status_code == 200
    assert not [u for u in service.accounts.users() if u["disabled"]]
    entries = audit(service)
    assert ("ada", "grant", None, "lee line:box1/line1") in entries
    assert ("ada", "grant", None, "lee label:sales") in entries
    assert ("ada", "revoke", None, "lee label:sales") in entries
    assert ("ada", "user disable", None, "lee") in entries
    assert ("ada", "user enable", None, "lee") in entries
    assert [a for w, a, _, _ in entries if w == "ada"].count("users refused") == 3


def test_only_an_admin_manages_users(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    add_user(service, "lee", "listener")
    csrf = log_in(client, service, clock, "ann", "supervisor")
    for answer in (
        client.get("/api/users"),
        client.get("/users"),
        client.post("/api/users/lee/grants", json={"kind": "label", "value": "x", "granted": True}),
        client.post("/users/lee/disable", data={"disabled": "yes", "csrf": csrf}),
    ):
        assert answer.status_code == 403
    assert service.accounts.grants("lee") == () and not service.accounts.users()[1]["disabled"]
    assert [a for w, a, _, _ in audit(service) if w == "ann"].count("forbidden") == 4


def test_an_admin_deletes_a_recording_unless_it_is_held(
    client: TestClient, service: ConsoleService, clock: Clock, site: Path
) -> None:
    rows = {r["line"]: r for r in service.store.recordings()}
    one, two = rows["line1"]["id"], rows["line2"]["id"]
    path = Path(rows["line1"]["path"])
    csrf = log_in(client, service, clock, "ada", "admin")
    assert client.post(f"/api/recordings/{one}/delete", json={"reason": " "}).status_code == 400
    assert client.post(f"/api/recordings/{two}/hold",
                       json={"held": True, "reason": "litigation"}).status_code == 200  # fmt: skip
    held = client.post(f"/api/recordings/{two}/delete", json={"reason": "customer asked"})
    assert held.status_code == 409 and "legal hold" in held.json()["detail"]
    page = client.get(f"/recordings/{one}")
    assert 'class="delete"' in page.text
    stale = client.post(f"/recordings/{one}/delete", data={"reason": "customer asked"})
    assert stale.status_code == 403 and path.exists()  # no CSRF token: nothing deleted
    done = client.post(f"/recordings/{one}/delete?device=box1",
                       data={"reason": "customer asked", "csrf": csrf},
                       follow_redirects=False)  # fmt: skip
    assert done.status_code == 303 and done.headers["location"] == "/recordings"
    assert not path.exists() and client.get(f"/api/recordings/{one}").status_code == 404
    assert [r["id"] for r in service.store.recordings()] == [two]
    (deletion,) = service.store.deletions()
    assert (deletion["id"], deletion["reason"]) == (one, "customer asked")
    assert client.post(f"/api/recordings/{one}/delete",
                       json={"reason": "again"}).status_code == 404  # fmt: skip
    entries = audit(service)
    assert ("ada", "delete", one, "customer asked") in entries  # the console user, not the uid
    assert ("ada", "delete refused", one, "no reason given") in entries
    assert ("ada", "delete refused", two, "on legal hold") in entries
    assert (
        "ada",
        "csrf refused",
        None,
        f"POST /recordings/{one}/delete without its form token",
    ) in entries


def test_only_an_admin_deletes(client: TestClient, service: ConsoleService, clock: Clock) -> None:
    (rid,) = [r["id"] for r in service.store.recordings() if r["line"] == "line1"]
    csrf = log_in(client, service, clock, "ann", "supervisor")
    assert 'class="delete"' not in client.get(f"/recordings/{rid}").text
    assert client.post(f"/api/recordings/{rid}/delete", json={"reason": "x"}).status_code == 403
    form = client.post(f"/recordings/{rid}/delete", data={"reason": "x", "csrf": csrf})
    assert form.status_code == 403
    assert len(service.store.recordings()) == 2 and not service.store.deletions()


def test_an_admin_sees_the_retention_and_sweeps_it_now(
    client: TestClient, service: ConsoleService, clock: Clock, site: Path
) -> None:
    """`[collector] retention_days` is the policy; the collector sweeps it every hour, and an
    admin can see it and sweep now: what is past it goes (unless held), audited as the admin."""
    rows = {r["line"]: r for r in service.store.recordings()}
    one, two = rows["line1"]["id"], rows["line2"]["id"]
    csrf = log_in(client, service, clock, "ada", "admin")
    assert client.get("/api/retention").json() == {"days": 0.0}
    assert client.post("/api/retention/sweep", json={}).json() == {"deleted": []}  # none set
    service.retention_days = 30.0
    page = client.get("/retention")
    assert page.status_code == 200 and "30 days" in page.text and 'class="sweep"' in page.text
    assert client.post(f"/api/recordings/{two}/hold",
                       json={"held": True, "reason": "litigation"}).status_code == 200  # fmt: skip
    assert client.post("/api/retention/sweep", json={}).json() == {"deleted": []}  # not yet
    clock.now += 31 * 86400
    client.cookies.clear()  # the session ended long ago: log in again
    csrf = log_in(client, service, clock, "bea", "admin")
    stale = client.post("/retention/sweep", data={})
    assert stale.status_code == 403 and len(service.store.recordings()) == 2  # no CSRF token
    swept = client.post("/retention/sweep", data={"csrf": csrf}, follow_redirects=False)
    assert swept.status_code == 303
    assert [r["id"] for r in service.store.recordings()] == [two]  # the held one stays
    entries = audit(service)
    assert ("bea", "delete", one, "retention: older than 30 days") in entries
    assert ("bea", "retention sweep", None, "30 days: 1 deleted") in entries
    assert ("bea", "csrf refused", None, "POST /retention/sweep without its form token") in entries


def test_only_an_admin_sweeps_retention(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    service.retention_days = 1.0
    clock.now += 2 * 86400
    csrf = log_in(client, service, clock, "ann", "supervisor")
    assert client.get("/api/retention").status_code == 403
    assert client.post("/retention/sweep", data={"csrf": csrf}).status_code == 403
    assert len(service.store.recordings()) == 2
