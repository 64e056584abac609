"""`linerec collector enroll` and the access rules an operator added to the site broker with
`mosquitto_ctrl` (the dynamic security plugin's own tool, against the running broker): an
enrolment, a revocation or a bridge's change merges linerec's clients and roles into
access.json and keeps the operator's clients, roles and groups as they were."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from linerec.collector.enroll import access_rules
from linerec.uplink.tls import device_request
from test_tls import LINEREC, Site, connected, new_site, subscribe  # noqa: F401 (the fixture)


def operator_identity(site: Path, name: str, out: Path) -> tuple[Path, Path]:
    """A client certificate from the site's CA for one of the operator's own clients (what
    an operator does with openssl): its certificate and key."""
    ca_key = serialization.load_pem_private_key((site / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = x509.load_pem_x509_certificate((site / "ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / f"{name}.crt", out / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def tls_client(site: Site, cert: Path, key: Path) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        protocol=mqtt.MQTTv5,
        client_id=f"{cert.stem}-{time.monotonic_ns()}",
    )
    client.tls_set(ca_certs=str(site.site / "ca.crt"), certfile=str(cert), keyfile=str(key))
    return client


def ctrl(site: Site, admin: tuple[Path, Path], *command: str) -> str:
    cert, key = admin
    done = subprocess.run(
        ["mosquitto_ctrl", "-h", "127.0.0.1", "-p", str(site.port),
         "--cafile", str(site.site / "ca.crt"), "--cert", str(cert), "--key", str(key),
         "dynsec", *command],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def by_name(rules: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each client, role and group of an access.json, by kind and name."""
    return {
        **{f"client {c['username']}": c for c in rules.get("clients", [])},
        **{f"role {r['rolename']}": r for r in rules.get("roles", [])},
        **{f"group {g['groupname']}": g for g in rules.get("groups", [])},
    }


OPERATORS = {"client ops-admin", "role ops-admin", "client ops-monitor", "role monitor",
             "group operators"}  # fmt: skip


def test_an_enrolment_keeps_what_the_operator_added_with_mosquitto_ctrl(new_site: Site) -> None:
    new_site.device("box1")
    conf = new_site.site / "mosquitto.conf"
    # pytest's temporary directories are root's: the broker stays root, to save access.json
    conf.write_text(conf.read_text() + "user root\n")
    access = new_site.site / "access.json"
    # The operator's first administrator, put in the file by hand as `mosquitto_ctrl dynsec
    # init` would (the broker must know one before mosquitto_ctrl can talk to it).
    rules = json.loads(access.read_text())
    rules["clients"].append({"username": "ops-admin", "roles": [{"rolename": "ops-admin"}]})
    rules["roles"].append(
        {
            "rolename": "ops-admin",
            "acls": [
                {"acltype": kind, "topic": "$CONTROL/dynamic-security/#", "allow": True}
                for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")
            ],
        }
    )
    access.write_text(json.dumps(rules, indent="\t"))
    admin = operator_identity(new_site.site, "ops-admin", new_site.root / "ops")
    monitor = operator_identity(new_site.site, "ops-monitor", new_site.root / "ops")
    new_site.start()
    ctrl(new_site, admin, "createRole", "monitor")
    ctrl(new_site, admin, "addRoleACL", "monitor", "subscribePattern", "linerec/v1/+/status",
         "allow")  # fmt: skip
    ctrl(new_site, admin, "addRoleACL", "monitor", "publishClientReceive",
         "linerec/v1/+/status", "allow")  # fmt: skip
    ctrl(new_site, admin, "createClient", "ops-monitor", "-p", "unused: a certificate's")
    ctrl(new_site, admin, "createGroup", "operators")
    ctrl(new_site, admin, "addGroupRole", "operators", "monitor")
    ctrl(new_site, admin, "addGroupClient", "operators", "ops-monitor")
    new_site.stop()
    saved = json.loads(access.read_text())
    theirs = by_name(saved)
    assert set(theirs) >= OPERATORS, sorted(theirs)  # the broker saved them

    new_site.device("box2")  # enrolled after the operator's changes

    merged = json.loads(access.read_text())
    now = by_name(merged)
    for name in OPERATORS:
        assert now[name] == theirs[name], name
    assert merged["defaultACLAccess"] == saved["defaultACLAccess"]
    ours = by_name(access_rules(["box1", "box2"]))
    for name, entry in ours.items():
        assert (
            now[name]["acls" if name.startswith("role") else "roles"]
            == entry["acls" if name.startswith("role") else "roles"]
        ), name
    new_site.start()
    # the broker takes the merged rules: the operator's client may do what its group allows
    watcher = connected(tls_client(new_site, *monitor), new_site.port)
    try:
        assert subscribe(watcher, ["linerec/v1/box2/status", "linerec/v1/box2/event"]) == {
            "linerec/v1/box2/status": "Granted QoS 1",
            "linerec/v1/box2/event": "Not authorized",
        }
    finally:
        watcher.loop_stop()
        watcher.disconnect()
    listed = ctrl(new_site, admin, "listClients")
    assert {"box1", "box2", "ops-admin", "ops-monitor", "linerec-collector"} <= set(
        listed.split()
    ), listed
    box2 = connected(new_site.client("box2"), new_site.port)
    try:
        assert subscribe(box2, ["linerec/v1/box2/ack"]) == {"linerec/v1/box2/ack": "Granted QoS 1"}
    finally:
        box2.loop_stop()
        box2.disconnect()


def enroll(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LINEREC, "collector", "enroll", *arguments], capture_output=True, text=True
    )


def operators_rules(access: Path) -> dict[str, Any]:
    """access.json with the operator's own entries added to it (as the broker saves what
    mosquitto_ctrl did): a client in a group with linerec's device and bridge in it, a role
    given to linerec's device, a text name on linerec's collector, a stricter default."""
    rules = json.loads(access.read_text())
    rules["clients"].append(
        {"username": "ops-monitor", "textname": "NOC", "roles": [{"rolename": "device-box1"}]}
    )
    for client in rules["clients"]:
        if client["username"] == "box1":
            client["roles"].append({"rolename": "monitor", "priority": 3})
        if client["username"] == "linerec-collector":
            client["textname"] = "the collectors"
    rules["roles"].append(
        {"rolename": "monitor", "acls": [{"acltype": "subscribePattern",
                                          "topic": "linerec/v1/+/status", "allow": True}]}
    )  # fmt: skip
    rules["groups"].append(
        {
            "groupname": "operators",
            "roles": [{"rolename": "monitor"}, {"rolename": "site-office1"}],
            "clients": [{"username": "ops-monitor"}, {"username": "box1"},
                        {"username": "site:office1"}],
        }
    )  # fmt: skip
    rules["anonymousGroup"] = "operators"
    rules["defaultACLAccess"]["unsubscribe"] = False
    access.write_text(json.dumps(rules, indent="\t"))
    return rules


def test_revocations_take_away_only_linerecs_entries_and_references_to_them(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    common = ("--site", str(site), "--broker-name", "127.0.0.1")
    for name in ("box1", "box2"):
        done = enroll(str(device_request(name, tmp_path / name)[1]), *common)
        assert done.returncode == 0, done.stderr
    done = enroll("--bridge", "office1", "--device", "box7", "--device", "box8", *common)
    assert done.returncode == 0, done.stderr
    access = site / "access.json"
    theirs = operators_rules(access)

    assert enroll("--revoke", "box1", "--site", str(site)).returncode == 0
    assert enroll("--bridge", "office1", "--remove-device", "box8", *common).returncode == 0
    now = json.loads(access.read_text())
    names = by_name(now)
    assert "client box1" not in names and "role device-box1" not in names
    assert names["client ops-monitor"] == {"username": "ops-monitor", "textname": "NOC",
                                           "roles": []}  # fmt: skip
    assert names["group operators"]["clients"] == [
        {"username": "ops-monitor"},
        {"username": "site:office1"},
    ]
    assert names["role monitor"] == by_name(theirs)["role monitor"]
    assert names["client linerec-collector"]["textname"] == "the collectors"
    assert now["anonymousGroup"] == "operators"
    assert now["defaultACLAccess"] == {"publishClientSend": False, "publishClientReceive": False,
                                       "subscribe": False, "unsubscribe": False}  # fmt: skip
    site_role = {acl["topic"] for acl in names["role site-office1"]["acls"]}
    assert any(topic.startswith("linerec/v1/box7/") for topic in site_role)
    assert not any(topic.startswith("linerec/v1/box8/") for topic in site_role)

    assert enroll("--revoke-bridge", "office1", "--site", str(site)).returncode == 0
    names = by_name(json.loads(access.read_text()))
    assert "client site:office1" not in names and "role site-office1" not in names
    assert names["group operators"] == {
        "groupname": "operators",
        "roles": [{"rolename": "monitor"}],
        "clients": [{"username": "ops-monitor"}],
    }
    assert {"client box2", "role device-box2", "client ops-monitor", "role monitor"} <= set(names)


def test_linerecs_device_keeps_a_role_the_operator_gave_it(tmp_path: Path) -> None:
    site = tmp_path / "site"
    common = ("--site", str(site), "--broker-name", "127.0.0.1")
    assert enroll(str(device_request("box1", tmp_path / "box1")[1]), *common).returncode == 0
    operators_rules(site / "access.json")
    assert enroll(str(device_request("box2", tmp_path / "box2")[1]), *common).returncode == 0
    names = by_name(json.loads((site / "access.json").read_text()))
    assert names["client box1"]["roles"] == [
        {"rolename": "device-box1"},
        {"rolename": "monitor", "priority": 3},
    ]
    assert names["client box2"]["roles"] == [{"rolename": "device-box2"}]


def test_access_rules_the_broker_could_not_read_stop_an_enrolment_before_it_writes(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    common = ("--site", str(site), "--broker-name", "127.0.0.1")
    assert enroll(str(device_request("box1", tmp_path / "box1")[1]), *common).returncode == 0
    access = site / "access.json"
    for bad, says in (
        ('{"clients": [{"username": "ops"}', "not JSON"),
        ('{"clients": [{"roles": []}]}', "clients[0]: no username"),
        ('{"roles": {"rolename": "x"}}', "roles: not a list"),
    ):
        access.write_text(bad)
        before = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}
        done = enroll(str(device_request("box2", tmp_path / "box2")[1]), *common)
        assert done.returncode != 0
        assert done.stderr.startswith(f"linerec: error: {access}: {says}"), done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert {p: p.read_bytes() for p in site.rglob("*") if p.is_file()} == before
