"""The fleet page's data: each appliance's retained status and health, as the collector
receives them from a real mosquitto, beside what the collector knows (last recording, gaps)."""

from __future__ import annotations

import html
import re
from pathlib import Path

from fastapi.testclient import TestClient

from console_fixtures import client, clock, delivered, service, site  # noqa: F401
from console_site import PASSWORD, Clock, FleetFeed, add_user
from linerec.collector.web.service import ConsoleService

HEALTH = {
    "uptime": 3600.0,
    "ring_fill": 0.42,
    "card_free_bytes": 10_000_000,
    "clock_synchronized": False,
    "temperature_c": 51.0,
    "faults": ["uplink"],
    "lines": [
        {"line": "line1", "state": "connected", "off_hook": True, "rings": 0},
        {"line": "line2", "state": "idle", "off_hook": False, "rings": 0},
    ],
}


def log_in(client: TestClient, service: ConsoleService, clock: Clock, role: str) -> None:
    totp = add_user(service, role, role, ("line", "box1/*"))
    answer = client.post(
        "/api/login", json={"name": role, "password": PASSWORD, "code": totp.at(clock.now)}
    )
    assert answer.status_code == 200


def test_the_fleet_shows_status_and_health_from_the_broker(
    client: TestClient, service: ConsoleService, clock: Clock, site: Path
) -> None:
    log_in(client, service, clock, "admin")
    with FleetFeed(site) as feed:
        feed.publish("box1", "status", {"state": "online", "connection": 3, "last_counter": 0})
        feed.publish("box1", "health", HEALTH)
        (box1,) = client.get("/api/fleet").json()["devices"]
        assert (box1["device"], box1["state"]) == ("box1", "online")
        online_since = box1["since"]
        assert [(x["line"], x["state"], x["off_hook"]) for x in box1["lines"]] == [
            ("line1", "connected", True),
            ("line2", "idle", False),
        ]
        assert (box1["ring_fill"], box1["clock_synchronized"], box1["faults"]) == (
            0.42, False, ["uplink"],
        )  # fmt: skip
        assert box1["last_recording"]["id"].startswith("box1-")
        assert box1["recording_gaps"] == [] and box1["event_gaps"] == []
        feed.publish("box1", "status", {"state": "online", "connection": 3, "last_counter": 1})
        assert client.get("/api/fleet").json()["devices"][0]["since"] == online_since
        feed.publish("box1", "status", {"state": "offline", "connection": 3})
        (box1,) = client.get("/api/fleet").json()["devices"]
        assert box1["state"] == "offline" and box1["since"] >= online_since
        feed.publish("box1", "status", {"state": "hacked<script>"})
        feed.publish("box2", "health", b"not json")
        assert any("state: one of online" in p for p in feed.collector.problems)
        assert any("not JSON" in p for p in feed.collector.problems)
        assert [d["state"] for d in client.get("/api/fleet").json()["devices"]] == ["offline"]
    page = client.get("/fleet")
    assert page.status_code == 200 and "offline since" in page.text
    assert "line1: connected, off hook" in page.text and "42% full" in page.text
    assert "NOT synchronised" in page.text and '<script src="/static/fleet.js"' in page.text
    assert [e["action"] for e in service.audit.entries()].count("fleet") == 1  # the page, once


def test_the_fleet_shows_each_boxs_certificate_expiry_and_release(
    client: TestClient, service: ConsoleService, clock: Clock, site: Path
) -> None:
    """Issue 17: a box's TLS certificate is renewed before it expires (`enroll --renew`), so
    the fleet shows when each one's ends, and which release runs from which slot."""
    log_in(client, service, clock, "admin")
    with FleetFeed(site) as feed:
        feed.publish("box1", "status", {"state": "online", "connection": 1, "last_counter": 0})
        feed.publish(
            "box1",
            "health",
            {
                **HEALTH,
                "tls_cert_expires": "2027-03-01T12:00:00+00:00",
                "update": {"slot": "B", "version": "0.2.0", "pending": "0.3.0"},
            },
        )
        (box1,) = client.get("/api/fleet").json()["devices"]
        assert box1["tls_cert_expires"] == "2027-03-01T12:00:00+00:00"
        assert box1["release"] == {"slot": "B", "version": "0.2.0", "pending": "0.3.0"}
        page = client.get("/fleet").text
        assert "until 2027-03-01 12:00" in page and "0.2.0 (slot B), 0.3.0 pending" in page
        # A box without TLS or RAUC says null or nothing: shown as unknown, not an error.
        feed.publish("box1", "health", {**HEALTH, "tls_cert_expires": None})
        (box1,) = client.get("/api/fleet").json()["devices"]
        assert box1["tls_cert_expires"] is None and box1["release"] is None
        # What a device says is shown as text, cut short, never trusted as structure.
        feed.publish(
            "box1",
            "health",
            {**HEALTH, "tls_cert_expires": ["x"] * 3, "update": {"version": "<b>" * 50}},
        )
        (box1,) = client.get("/api/fleet").json()["devices"]
        assert box1["tls_cert_expires"] is None
        assert box1["release"] == {"slot": None, "version": ("<b>" * 50)[:32], "pending": None}
        assert "&lt;b&gt;" in client.get("/fleet").text


def fleet_row(page: str, device: str) -> list[str]:
    """The cells of a device's row on the fleet page, as text."""
    row = re.search(rf'<tr data-device="{device}">(.*?)</tr>', page, re.S)
    assert row, f"no row for {device}"
    return [
        html.unescape(cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row[1], re.S)
    ]


def test_what_a_box_has_not_reported_says_so_in_words(
    client: TestClient, service: ConsoleService, clock: Clock, site: Path
) -> None:
    """A supervisor reads "not reported yet" where a box has sent no health yet, and "not
    reported" where its health leaves a value out (no TLS certificate, no RAUC): never "?"."""
    log_in(client, service, clock, "admin")
    with FleetFeed(site) as feed:
        feed.publish("box1", "status", {"state": "online", "connection": 1, "last_counter": 0})
        cells = fleet_row(client.get("/fleet").text, "box1")
        # Lines, Card, Clock, Certificate, Release: nothing from the box yet
        assert cells[2:7] == ["not reported yet"] * 5, cells
        feed.publish("box1", "health", {**HEALTH, "update": {"version": "0.2.0"}})
        cells = fleet_row(client.get("/fleet").text, "box1")
        assert cells[5] == "not reported"  # certificate
        assert cells[6] == "0.2.0 (slot not reported)"  # release, its slot left out
        feed.publish("box1", "health", {"faults": []})
        cells = fleet_row(client.get("/fleet").text, "box1")
        assert cells[2:7] == ["not reported"] * 5, cells
        assert "?" not in "".join(cells)


def test_recording_chain_gaps_are_shown(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    log_in(client, service, clock, "admin")
    db = service.store.db
    db.execute("UPDATE recordings SET seq = CASE line WHEN 'line1' THEN 1 ELSE 5 END")
    (box1,) = client.get("/api/fleet").json()["devices"]
    assert box1["recording_gaps"] == [[2, 4]]
    assert box1["state"] == "stopped"  # as 'linerec uplink flush' said when it ended


def test_only_an_admin_sees_the_fleet(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    log_in(client, service, clock, "supervisor")
    assert client.get("/api/fleet").status_code == 403
    assert client.get("/fleet").status_code == 403
    assert [e["action"] for e in service.audit.entries()].count("forbidden") == 2
