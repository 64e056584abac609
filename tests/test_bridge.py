"""Issue 14: a site broker bridged to the central broker (`linerec collector enroll --bridge`).

Real parts: a central mosquitto with the TLS, certificates and access rules `enroll` writes; a
site mosquitto as `enroll` sets one up for its own devices (its own CA), with the bridge section
`enroll --bridge` writes appended (TLS to the centre with the site's own certificate, MQTT 5,
only its devices' linerec topics); a collector process on the central broker; an appliance
(the real ring, outbox and uplink) connected to the site broker with its certificate.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from broker import free_port
from collectors import (
    LINEREC,
    Appliance,
    CollectorProcess,
    check_stored_once,
    expected,
    wait_until_delivered,
)
from enrolled import DeviceLink, Site, TlsBroker, enrol_site, event
from linerec.uplink.tls import device_request


def enroll(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LINEREC, "collector", "enroll", *arguments], capture_output=True, text=True
    )


def wait_for_line(path: Path, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and text in path.read_text(errors="replace")):
        assert time.monotonic() < deadline, f"{path} never said {text!r}"
        time.sleep(0.05)


@pytest.fixture
def central(tmp_path: Path) -> Iterator[tuple[Site, TlsBroker]]:
    site_dir, port = tmp_path / "central-site", free_port()
    for name, device in (("office1", "box1"), ("office2", "box2")):
        done = enroll(
            "--bridge", name, "--device", device, "--site", str(site_dir),
            "--broker-name", "127.0.0.1", "--port", str(port),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"{name}: devices {device};" in done.stdout
    conf = site_dir / "mosquitto.conf"
    # The tests run as root in root's own temporary directory (see enrolled.py); the log
    # shows what the access rules refused.
    log = tmp_path / "central.log"
    conf.write_text(conf.read_text() + f"user root\nlog_dest file {log}\nlog_type all\n")
    # The collector's keys are the office's (enrol_site makes them under office/keys).
    site = Site(root=tmp_path / "office", site=site_dir, port=port, configs={})
    broker = TlsBroker(site).start()
    yield site, broker
    broker.stop()


def test_enroll_bridge_writes_a_bridge_for_the_sites_devices_only(tmp_path: Path) -> None:
    site_dir = tmp_path / "central-site"
    common = ("--site", str(site_dir), "--broker-name", "central.example", "--port", "8883")
    assert enroll("--bridge", "office1", "--device", "box1", *common).returncode == 0
    again = enroll("--bridge", "office1", "--device", "box3", *common)  # adds a device
    assert again.returncode == 0 and "devices box1, box3;" in again.stdout
    taken = enroll("--bridge", "office2", "--device", "box1", *common)
    assert taken.returncode == 1 and "box1 is assigned to site office1" in taken.stderr
    csr = device_request("box1", tmp_path / "box1")[1]  # box1 connecting to the centre itself
    direct = enroll(str(csr), *common)
    assert direct.returncode == 1 and "box1 is assigned to site office1" in direct.stderr
    bad = enroll("--bridge", "Office 1", *common)
    assert bad.returncode == 2 and "--bridge" in bad.stderr
    assert json.loads((site_dir / "sites.json").read_text()) == {"office1": ["box1", "box3"]}
    bridge = site_dir / "bridges" / "office1"
    text = (bridge / "bridge.conf").read_text()
    assert "address central.example:8883\n" in text
    assert "bridge_protocol_version mqttv50\n" in text
    assert f"bridge_certfile {bridge / 'bridge.crt'}\n" in text
    topics = [line for line in text.splitlines() if line.startswith("topic ")]
    assert topics == [
        f"topic linerec/v1/{device}/{name} {direction} {qos}"
        for device in ("box1", "box3")
        for name, direction, qos in (
            ("event", "out", 1), ("upload/+", "out", 1), ("stream/+", "out", 1),
            ("status", "out", 1), ("health", "out", 0), ("ack", "in", 1), ("command", "in", 1),
        )
    ]  # fmt: skip
    assert (bridge / "bridge.key").stat().st_mode & 0o077 == 0
    rules = json.loads((site_dir / "access.json").read_text())
    (client,) = [c for c in rules["clients"] if c["username"] == "site:office1"]
    (role,) = [r for r in rules["roles"] if r["rolename"] == client["roles"][0]["rolename"]]
    allowed = {(acl["acltype"], acl["topic"]) for acl in role["acls"]}
    assert ("publishClientSend", "linerec/v1/box1/upload/+") in allowed
    assert ("subscribeLiteral", "linerec/v1/box3/ack") in allowed
    assert not [
        topic
        for _, topic in allowed
        if not topic.startswith(("linerec/v1/box1/", "linerec/v1/box3/"))
    ]


def test_a_recording_crosses_the_bridge_once_through_a_cut_and_another_sites_device_is_refused(
    tmp_path: Path, central: tuple[Site, TlsBroker]
) -> None:
    site, central_broker = central
    # office1: a site broker as `enroll` sets one up (TLS, device certificates, access rules)
    # for box1 and box2, with office1's bridge appended. It forwards more than its own
    # devices, as a misconfigured or taken-over site might: box2 belongs to office2, and the
    # centre must refuse box2's messages from office1's bridge.
    office = enrol_site(tmp_path / "office")
    bridge = site.site / "bridges" / "office1" / "bridge.conf"
    hostile = "topic linerec/v1/box2/event out 1\n"
    conf = office.site / "mosquitto.conf"
    conf.write_text(conf.read_text() + bridge.read_text() + hostile)
    office_broker = TlsBroker(office).start()
    central_log = tmp_path / "central.log"
    data_dir = tmp_path / "central"
    collector = CollectorProcess(site.collector_config(data_dir, 'instance = "central-a"\n'))
    box1 = Appliance(office.configs["box1"], "box1")
    try:
        collector.wait_for("collector subscribed")
        wait_for_line(central_log, "as linerec-bridge-office1")

        with DeviceLink(office, "box2") as box2:  # box2's own certificate, at office1
            box2.publish("linerec/v1/box2/event", event(1))
        wait_for_line(central_log, "Denied PUBLISH from linerec-bridge-office1")

        recording_id = box1.record(120.0)  # about 1 MB: some 30 pieces
        for k in range(5):
            box1.event(f"555000{k}")
        box1.uplink.start()
        deadline = time.monotonic() + 60
        while not upload_under_way(data_dir, recording_id):
            assert time.monotonic() < deadline, "the upload never began at the collector"
            time.sleep(0.01)
        central_broker.stop()  # the bridge is cut mid-upload ...
        assert not stored(data_dir, recording_id)
        central_broker.start()  # ... and restored
        wait_until_delivered([box1], timeout=120)
    finally:
        box1.uplink.stop()
        log = collector.stop()
        office_broker.stop()
    assert "Traceback" not in log, log
    check_stored_once(data_dir, expected([box1]))
    with sqlite_ro(data_dir) as db:
        assert db.execute("SELECT count(*) FROM events WHERE device = 'box2'").fetchone() == (0,)


def sqlite_ro(data_dir: Path) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(f"file:{data_dir / 'collector.db'}?mode=ro", uri=True))


def upload_under_way(data_dir: Path, recording_id: str) -> bool:
    if not (data_dir / "collector.db").exists():
        return False
    with sqlite_ro(data_dir) as db:
        return bool(
            db.execute("SELECT 1 FROM upload_ranges WHERE id = ?", (recording_id,)).fetchone()
        )


def stored(data_dir: Path, recording_id: str) -> bool:
    with sqlite_ro(data_dir) as db:
        return bool(db.execute("SELECT 1 FROM recordings WHERE id = ?", (recording_id,)).fetchone())
