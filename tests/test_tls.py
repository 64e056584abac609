"""A site set up with the project's own tools: TLS with client certificates, per-device access
rules and revocation, on a real mosquitto started exactly as `linerec collector enroll` says."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from broker import free_port
from linerec.collector.config import load_collector_config
from linerec.collector.service import Collector
from linerec.config import load_config
from linerec.daemon.simulate import example_call, simulate
from linerec.store.keys import keygen

LINEREC = [sys.executable, "-m", "linerec.cli"]


class Site:
    """A site directory the broker's own user can reach (pytest's temporary directories are
    root's alone), devices enrolled through the CLI, and the broker started as printed."""

    def __init__(self, root: Path, site: Path) -> None:
        self.root = root
        self.site = site
        self.port = free_port()
        self.command: list[str] = []
        self.broker: subprocess.Popen[bytes] | None = None
        self.configs: dict[str, Path] = {}

    def enroll(self, csr: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [
                *LINEREC,
                *("collector", "enroll", str(csr), "--site", str(self.site)),
                *("--broker-name", "127.0.0.1", "--bind", "127.0.0.1", "--port", str(self.port)),
                *extra,
            ],
            capture_output=True,
            text=True,
        )
        if out.returncode == 0:
            found = re.search(r"mosquitto -c \S+", out.stdout)
            assert found, out.stdout
            self.command = shlex.split(found.group(0))
        return out

    def revoke(self, name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*LINEREC, "collector", "enroll", "--revoke", name, "--site", str(self.site)],
            capture_output=True,
            text=True,
        )

    def device(self, name: str, keys: str | None = None) -> Path:
        """A device's key and request (`linerec uplink csr`), enrolled; its config."""
        config = self.root / f"{name}.toml"
        config.write_text(
            f'[device]\nid = "{name}"\n[store]\ndir = "{name}-ring"\n'
            'recipients = ["keys/collector.pub"]\n'
        )
        out = subprocess.run(
            [
                *LINEREC,
                "uplink",
                "csr",
                "--config",
                str(config),
                "--out",
                str(self.root / (keys or name)),
            ],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        enrolled = self.enroll(self.root / (keys or name) / f"{name}.csr")
        assert enrolled.returncode == 0, enrolled.stderr
        cert = enrolled.stdout.split(":")[0]
        config.write_text(
            config.read_text() + f'[uplink]\nbroker = "mqtts://127.0.0.1:{self.port}"\n'
            f'ca = "{self.site / "ca.crt"}"\ncert = "{cert}"\n'
            f'key = "{self.root / (keys or name) / "device.key"}"\n'
        )
        self.configs[name] = config
        return config

    def start(self) -> None:
        """The broker, started with the command line enroll printed, as root."""
        self.broker = subprocess.Popen(self.command, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.broker.poll() is not None:
                raise AssertionError(self.broker.stderr.read().decode())  # type: ignore[union-attr]
            time.sleep(0.05)
        raise AssertionError("the TLS broker did not start")

    def stop(self) -> str:
        """Stops the broker; what it logged."""
        log = ""
        if self.broker is not None:
            self.broker.terminate()
            log = self.broker.communicate(timeout=10)[1].decode()
            self.broker = None
        return log

    def collector_config(self) -> Path:
        path = self.root / "collector.toml"
        path.write_text(
            f'[collector]\nbroker = "mqtts://127.0.0.1:{self.port}"\ndata_dir = "central"\n'
            f'key = "keys/collector.key"\nca = "{self.site / "ca.crt"}"\n'
            f'cert = "{self.site / "linerec-collector.crt"}"\n'
            f'client_key = "{self.site / "linerec-collector.key"}"\n'
        )
        return path

    def client(self, name: str) -> mqtt.Client:
        """An MQTT client with `name`'s identity (a device, or the collector)."""
        config = self.configs.get(name)
        if config is None:
            cert, key = self.site / f"{name}.crt", self.site / f"{name}.key"
        else:
            uplink = load_config(config).uplink
            assert uplink is not None
            cert, key = uplink.cert, uplink.key  # type: ignore[assignment]
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            protocol=mqtt.MQTTv5,
            client_id=f"{name}-test-{time.monotonic_ns()}",
        )
        client.tls_set(ca_certs=str(self.site / "ca.crt"), certfile=str(cert), keyfile=str(key))
        return client

    def handshake(self, cert: Path, key: Path) -> str:
        """'connected' if the broker answers an MQTT CONNECT over TLS with these, else why not."""
        context = ssl.create_default_context(cafile=str(self.site / "ca.crt"))
        context.load_cert_chain(str(cert), str(key))
        client_id = b"probe"
        body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
        try:
            raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"\x10" + bytes([len(body)]) + body)
                answer = tls.recv(4)
        except (ssl.SSLError, ConnectionError) as exc:
            return str(exc)
        return "connected" if answer[:1] == b"\x20" and answer[3:4] == b"\x00" else repr(answer)


@pytest.fixture
def new_site(tmp_path: Path) -> Iterator[Site]:
    keygen(tmp_path / "keys")
    reachable = Path(tempfile.mkdtemp(prefix="linerec-site-"))
    reachable.chmod(0o755)
    site = Site(tmp_path, reachable / "site")
    try:
        yield site
    finally:
        site.stop()
        shutil.rmtree(reachable)


@pytest.fixture
def tls_site(new_site: Site) -> Site:
    for name in ("box1", "box2"):
        new_site.device(name)
    new_site.start()
    return new_site


def subscribe(client: mqtt.Client, topics: list[str]) -> dict[str, str]:
    """What the broker answers to each subscription, one SUBSCRIBE each."""
    answers: dict[int, str] = {}
    done = threading.Condition()

    def on_subscribe(client: mqtt.Client, userdata: object, mid: int, reasons, properties) -> None:  # type: ignore[no-untyped-def]
        with done:
            answers[mid] = str(reasons[0])
            done.notify_all()

    client.on_subscribe = on_subscribe
    mids = {client.subscribe(name, qos=1)[1]: name for name in topics}
    with done:
        assert done.wait_for(lambda: set(answers) >= set(mids), timeout=10)
    return {name: answers[mid] for mid, name in mids.items()}


def connected(client: mqtt.Client, port: int) -> mqtt.Client:
    ready = threading.Event()
    client.on_connect = lambda *args: ready.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert ready.wait(10)
    return client


def test_devices_upload_over_tls_and_only_under_their_own_id(tls_site: Site) -> None:
    for name in ("box1", "box2"):
        simulate(
            [example_call("inbound.toml")],
            config=load_config(tls_site.configs[name]),
            store_dir=None,
            emit=lambda e: None,
        )
    collector = Collector(load_collector_config(tls_site.collector_config()))
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    thread.start()
    # box2 is a stolen box: it tries to join the collectors' shared subscription, which would
    # hand it a share of every device's messages (dropped by the read check: lost to the
    # collector). The broker refuses the subscription itself.
    thief = connected(tls_site.client("box2"), tls_site.port)
    try:
        assert collector.ready.wait(10)
        assert subscribe(
            thief,
            [
                "$share/linerec-collectors/linerec/v1/+/event",
                "$share/linerec-collectors/linerec/v1/+/upload/+",
            ],
        ) == {
            "$share/linerec-collectors/linerec/v1/+/event": "Not authorized",
            "$share/linerec-collectors/linerec/v1/+/upload/+": "Not authorized",
        }
        for name in ("box1", "box2"):
            flush = subprocess.run(
                [
                    *LINEREC,
                    "uplink",
                    "flush",
                    "--config",
                    str(tls_site.configs[name]),
                    "--timeout",
                    "30",
                ],
                capture_output=True,
                text=True,
            )
            assert flush.returncode == 0, flush.stderr
        # box2 tries to write as box1: the broker refuses, and box2 is told so (PUBACK 0x87)
        refused: list[object] = []
        thief.on_publish = lambda client, userdata, mid, reason, properties: refused.append(reason)
        thief.publish("linerec/v1/box1/event", b'{"seq": 999}', qos=1).wait_for_publish(10)
    finally:
        thief.loop_stop()
        thief.disconnect()
        stop.set()
        thread.join(10)
    assert [str(r) for r in refused] == ["Not authorized"]
    assert {r["device"] for r in collector.store.recordings()} == {"box1", "box2"}
    # every event of box1 reached the collector (flush waits for each ack), none the thief
    assert collector.store.gaps("box1") == []
    assert collector.store.contiguous_seq("box1") < 999


def test_a_device_subscribes_only_to_its_own_acks_and_commands(tls_site: Site) -> None:
    box2 = connected(tls_site.client("box2"), tls_site.port)
    try:
        answers = subscribe(
            box2,
            [
                "linerec/v1/box2/ack",
                "linerec/v1/box2/command",
                "$share/linerec-collectors/linerec/v1/+/event",
                "$share/anything/linerec/v1/box2/ack",
                "linerec/v1/box1/ack",
                "linerec/v1/box1/command",
                "linerec/v1/+/event",
                "linerec/v1/box1/#",
                "#",
                "$SYS/#",
            ],
        )
    finally:
        box2.loop_stop()
        box2.disconnect()
    assert answers.pop("linerec/v1/box2/ack") == "Granted QoS 1"
    assert answers.pop("linerec/v1/box2/command") == "Granted QoS 1"
    assert set(answers.values()) == {"Not authorized"}, answers


def test_health_telemetry_passes_the_access_rules(tls_site: Site) -> None:
    got: list[bytes] = []
    arrived = threading.Event()
    collector = tls_site.client("linerec-collector")
    collector.on_message = lambda client, userdata, message: (
        got.append(message.payload),
        arrived.set(),
    )
    connected(collector, tls_site.port)
    box1 = connected(tls_site.client("box1"), tls_site.port)
    reasons: list[str] = []
    box1.on_publish = lambda client, userdata, mid, reason, properties: reasons.append(str(reason))
    try:
        assert subscribe(collector, ["linerec/v1/+/health"]) == {
            "linerec/v1/+/health": "Granted QoS 1"
        }
        box1.publish("linerec/v1/box1/health", b'{"uptime": 1}', qos=1).wait_for_publish(10)
        assert arrived.wait(10)
    finally:
        for client in (box1, collector):
            client.loop_stop()
            client.disconnect()
    assert reasons == ["Success"]
    assert got == [b'{"uptime": 1}']


def test_the_printed_broker_command_runs_a_packaged_mosquitto_as_root(tls_site: Site) -> None:
    """The fixture started the broker with exactly the command enroll printed, as root, no
    `user root` added: mosquitto dropped to its own user and still read its key."""
    assert os.geteuid() == 0
    assert tls_site.command == ["mosquitto", "-c", str(tls_site.site / "mosquitto.conf")]
    conf = (tls_site.site / "mosquitto.conf").read_text()
    assert "user root" not in conf
    assert "listener " + str(tls_site.port) + " 127.0.0.1" in conf
    paths = re.findall(
        r"^(?:cafile|certfile|keyfile|crlfile|plugin_opt_config_file) (.+)$", conf, re.M
    )
    assert len(paths) == 5 and all(Path(p).is_absolute() and Path(p).exists() for p in paths)
    import grp

    key = (tls_site.site / "broker.key").stat()
    assert stat.S_IMODE(key.st_mode) == 0o640
    assert grp.getgrgid(key.st_gid).gr_name == "mosquitto"
    assert stat.S_IMODE((tls_site.site / "ca.key").stat().st_mode) == 0o600
    assert (
        tls_site.handshake(
            tls_site.site / "linerec-collector.crt", tls_site.site / "linerec-collector.key"
        )
        == "connected"
    )


def test_enrol_says_when_the_broker_user_cannot_reach_the_site(tmp_path: Path) -> None:
    from linerec.uplink.tls import device_request

    _, csr = device_request("box1", tmp_path / "box1")
    out = subprocess.run(
        [*LINEREC, "collector", "enroll", str(csr), "--site", str(tmp_path / "site")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    blocked = next(p for p in reversed(tmp_path.parents) if not p.stat().st_mode & 0o001)
    assert f"the mosquitto user cannot enter {blocked}" in out.stderr


def test_no_client_certificate_no_connection(tls_site: Site) -> None:
    context = ssl.create_default_context(cafile=str(tls_site.site / "ca.crt"))
    raw = socket.create_connection(("127.0.0.1", tls_site.port), timeout=5)
    # TLS 1.3 reports a missing client certificate on the first read, not in the handshake.
    with (
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        pytest.raises((ssl.SSLError, ConnectionResetError)),
    ):
        tls.sendall(b"\x10\x00")
        tls.recv(1)


@pytest.mark.parametrize(
    ("common_name", "why"),
    [
        ("linerec-collector", "is reserved for the site itself"),
        ("broker", "is reserved for the site itself"),
        ("box+1", "is not a device id"),
        ("box#1", "is not a device id"),
        ("box1\n", "is not a device id"),
        ("broker\n", "is not a device id"),
        ("linerec-collector\n", "is not a device id"),
        # the one device id rule (linerec.ids), not a second one of enrolment's own
        ("Box1", "is not a device id"),
        ("-box", "is not a device id"),
        ("x" * 64, "is not a device id"),
        ("box\u202e1", "is not a device id"),
    ],
)
def test_enrol_refuses_a_name_the_acl_could_not_confine(
    tmp_path: Path, common_name: str, why: str
) -> None:
    from linerec.collector.enroll import EnrollError, enroll
    from linerec.ids import shown
    from linerec.uplink.tls import device_request

    _, csr = device_request(common_name, tmp_path / "device")
    with pytest.raises(EnrollError, match=re.escape(f"common name {shown(common_name)} {why}")):
        enroll(csr, tmp_path / "site", broker_names=["localhost"])
    assert not (tmp_path / "site").exists()  # refused before anything is made


def test_a_device_named_ca_cannot_replace_the_site_ca(new_site: Site) -> None:
    new_site.device("box1")
    ca_before = (new_site.site / "ca.crt").read_bytes()
    new_site.device("ca")
    new_site.device("broker.crt")
    assert (new_site.site / "ca.crt").read_bytes() == ca_before
    new_site.device("box2")  # enrolled after them, still verifiable against the site CA
    new_site.start()
    for name in ("box1", "box2", "ca"):
        uplink = load_config(new_site.configs[name]).uplink
        assert uplink is not None and uplink.cert is not None and uplink.key is not None
        assert uplink.cert.parent.name == "devices"
        assert new_site.handshake(uplink.cert, uplink.key) == "connected", name


def test_a_revoked_device_is_refused_by_the_broker(new_site: Site) -> None:
    for name in ("box1", "box2"):
        new_site.device(name)
    box1 = load_config(new_site.configs["box1"]).uplink
    box2 = load_config(new_site.configs["box2"]).uplink
    assert box1 is not None and box2 is not None
    assert box1.cert is not None and box1.key is not None
    assert box2.cert is not None and box2.key is not None
    old_cert = box1.cert.read_bytes()
    new_site.start()
    assert new_site.handshake(box1.cert, box1.key) == "connected"  # before it is revoked
    new_site.stop()
    revoked = new_site.revoke("box1")
    assert revoked.returncode == 0, revoked.stderr
    assert "box1: 1 certificate(s) revoked" in revoked.stdout
    assert "restart the broker" in revoked.stdout
    new_site.start()
    kept = new_site.root / "box1-old.crt"
    kept.write_bytes(old_cert)  # the thief keeps its copy of the certificate
    assert new_site.handshake(kept, box1.key) != "connected"
    assert new_site.handshake(box2.cert, box2.key) == "connected"
    log = new_site.stop()
    assert log.count("certificate verify failed") == 1, log
    unknown = new_site.revoke("box9")
    assert unknown.returncode == 1
    assert "no certificate was issued to 'box9'" in unknown.stderr


def test_re_enrolment_with_a_new_key_needs_replace_and_revokes_the_old(new_site: Site) -> None:
    new_site.device("box1")
    first = load_config(new_site.configs["box1"]).uplink
    assert first is not None and first.cert is not None and first.key is not None
    first_cert = new_site.root / "box1-first.crt"
    first_cert.write_bytes(first.cert.read_bytes())
    new_site.start()
    assert new_site.handshake(first_cert, first.key) == "connected"  # before it is replaced
    new_site.stop()
    # the same request again: the same certificate, nothing revoked
    again = new_site.enroll(new_site.root / "box1" / "box1.csr")
    assert again.returncode == 0, again.stderr
    assert first.cert.read_bytes() == first_cert.read_bytes()
    # a new key (another box given the same id, or a replaced one): refused without --replace
    subprocess.run(
        [
            *LINEREC,
            "uplink",
            "csr",
            "--config",
            str(new_site.configs["box1"]),
            "--out",
            str(new_site.root / "box1-new"),
        ],
        check=True,
        capture_output=True,
    )
    csr = new_site.root / "box1-new" / "box1.csr"
    refused = new_site.enroll(csr)
    assert refused.returncode == 1
    assert "box1 already has a valid certificate for another key" in refused.stderr
    assert "--replace" in refused.stderr
    replaced = new_site.enroll(csr, "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert "revoked 1 older certificate(s)" in replaced.stdout
    new_site.start()
    assert new_site.handshake(first_cert, first.key) != "connected"
    assert new_site.handshake(first.cert, new_site.root / "box1-new" / "device.key") == "connected"
    log = new_site.stop()
    assert log.count("certificate verify failed") == 1, log
    # the revoked key cannot come back
    back = new_site.enroll(new_site.root / "box1" / "box1.csr", "--replace")
    assert back.returncode == 1
    assert "its key belongs to a revoked certificate" in back.stderr


def test_issued_certificates_are_kept_for_revocation(new_site: Site) -> None:
    new_site.device("box1")
    new_site.device("box2")
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    issued = {}
    for path in (new_site.site / "issued").glob("*.crt"):
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        assert path.stem == f"{cert.serial_number:x}"
        issued[cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value] = cert
    assert sorted(issued) == ["box1", "box2", "broker", "linerec-collector"]


def test_commands_are_answered_even_after_the_collector_database_is_lost(
    tls_site: Site,
) -> None:
    """`collector command` waits for the device's answer and says it; a collector with a new
    (or restored) database learns the device's counter instead of being refused as a replay."""
    call = tls_site.root / "call.toml"
    call.write_text('[[call]]\nconsent = "one-party"\n[[call.step]]\nat = 0.5\noff_hook = true\n')
    config = tls_site.configs["box1"]
    config.write_text(
        config.read_text().replace(
            "[uplink]",
            f'[hardware]\nbackend = "sim"\n[sim]\ncalls = ["{call}"]\n'
            '[[line]]\nconsent = "one-party"\n[uplink]',
        )
    )
    collector = tls_site.collector_config()
    daemon = subprocess.Popen([*LINEREC, "run", "--config", str(config)], stderr=subprocess.DEVNULL)

    def command(device: str, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*LINEREC, "collector", "command", device, *arguments, "--config", str(collector)],
            capture_output=True,
            text=True,
            cwd=tls_site.root,
        )

    online = threading.Event()
    watcher = tls_site.client("linerec-collector")
    watcher.on_message = lambda client, userdata, message: (
        json.loads(message.payload)["state"] == "online" and online.set()
    )
    connected(watcher, tls_site.port)
    try:
        subscribe(watcher, ["linerec/v1/box1/status"])
        assert online.wait(30)  # the daemon is connected and subscribed to its commands
        first = command("box1", "status")
        assert first.returncode == 0, first.stderr
        assert "box1: status done (counter 1)" in first.stdout
        second = command("box1", "status")
        assert "box1: status done (counter 2)" in second.stdout, second.stderr
        shutil.rmtree(tls_site.root / "central")  # the collector's database is lost
        third = command("box1", "status")
        assert third.returncode == 0, third.stderr
        assert "box1: status done (counter 3)" in third.stdout
        refused = command("box1", "consent", "--line", "line9", "--mode", "beep")
        assert refused.returncode == 1
        assert "box1: consent refused (counter 4): consent: \"no line 'line9'\"" in refused.stderr
        silent = command("box2", "status", "--timeout", "1")  # box2 is not running
        assert silent.returncode == 1
        assert "box2: status sent (counter 1), no answer within 1 s" in silent.stderr
    finally:
        watcher.loop_stop()
        watcher.disconnect()
        daemon.terminate()
        daemon.wait(20)


def test_streams_pass_the_access_rules_only_under_their_own_id(tls_site: Site) -> None:
    """A device streams on its own `stream/+` to the collectors' shared subscription; another
    device can neither stream as it nor join that subscription."""
    got: list[str] = []
    arrived = threading.Event()
    collector = tls_site.client("linerec-collector")
    collector.on_message = lambda client, userdata, message: (
        got.append(message.topic),
        arrived.set(),
    )
    connected(collector, tls_site.port)
    box1 = connected(tls_site.client("box1"), tls_site.port)
    box2 = connected(tls_site.client("box2"), tls_site.port)
    reasons: dict[str, list[str]] = {"box1": [], "box2": []}
    box1.on_publish = lambda c, u, mid, reason, p: reasons["box1"].append(str(reason))
    box2.on_publish = lambda c, u, mid, reason, p: reasons["box2"].append(str(reason))
    shared = "$share/linerec-collectors/linerec/v1/+/stream/+"
    stream = "linerec/v1/box1/stream/box1-00000001-20261130T000000Z-line1"
    try:
        assert subscribe(collector, [shared]) == {shared: "Granted QoS 1"}
        assert subscribe(box2, [shared]) == {shared: "Not authorized"}
        box2.publish(stream, b"\0" * 4096, qos=1).wait_for_publish(10)
        box1.publish(stream, b"\0" * 4096, qos=1).wait_for_publish(10)
        assert arrived.wait(10)
    finally:
        for client in (box1, box2, collector):
            client.loop_stop()
            client.disconnect()
    assert reasons == {"box1": ["Success"], "box2": ["Not authorized"]}
    assert got == [stream]


def test_enrolling_without_port_or_bind_keeps_the_brokers_listener(new_site: Site) -> None:
    """Issue 14: an operator's listener (port and address) and their own lines in
    mosquitto.conf stay as they are when a later enrolment does not name them; --port and
    --bind given still change it. The broker started as printed answers on the kept port."""
    new_site.device("box1")  # --port P --bind 127.0.0.1
    conf = new_site.site / "mosquitto.conf"
    listener = f"listener {new_site.port} 127.0.0.1\n"
    assert listener in conf.read_text()
    own = "# the operator's own\npersistence true\nlog_type error\n"
    conf.write_text(conf.read_text() + own)
    from linerec.uplink.tls import device_request

    _, csr = device_request("box2", new_site.root / "box2-keys")
    out = subprocess.run(
        [*LINEREC, "collector", "enroll", str(csr), "--site", str(new_site.site)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    text = conf.read_text()
    assert re.findall(r"^listener .*$", text, re.M) == [listener.strip()]
    assert text.endswith(own), text
    assert text.count("max_packet_size") == 1
    new_site.start()
    cert = new_site.site / "devices" / "box2.crt"
    assert new_site.handshake(cert, new_site.root / "box2-keys" / "device.key") == "connected"
    new_site.stop()
    # Named again, they change it; what the operator added stays.
    other = free_port()
    moved = subprocess.run(
        [*LINEREC, "collector", "enroll", str(csr), "--site", str(new_site.site),
         "--port", str(other), "--bind", "127.0.0.2"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    text = conf.read_text()
    assert re.findall(r"^listener .*$", text, re.M) == [f"listener {other} 127.0.0.2"]
    assert text.endswith(own)


def test_enrol_refuses_a_listener_line_it_cannot_read(tmp_path: Path) -> None:
    from linerec.collector.enroll import EnrollError, enroll
    from linerec.uplink.tls import device_request

    _, csr = device_request("box1", tmp_path / "box1")
    site = tmp_path / "site"
    enroll(csr, site, broker_names=["localhost"], port=9883)
    conf = site / "mosquitto.conf"
    conf.write_text(conf.read_text().replace("listener 9883", "listener 98a3"))
    before = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}
    _, csr2 = device_request("box2", tmp_path / "box2")
    with pytest.raises(EnrollError, match=re.escape(f"{conf}: line 5: listener '98a3'")):
        enroll(csr2, site, broker_names=["localhost"])
    assert {p: p.read_bytes() for p in site.rglob("*") if p.is_file()} == before


def test_a_broker_name_given_later_is_added_to_the_brokers_certificate(tmp_path: Path) -> None:
    """--broker-name on a site that has a broker certificate: the name is added to it (the
    names it had stay, its key stays); not given, the certificate is not touched."""
    from cryptography import x509

    from linerec.collector.enroll import enroll
    from linerec.uplink.tls import device_request

    def names() -> list[str]:
        cert = x509.load_pem_x509_certificate((tmp_path / "site" / "broker.crt").read_bytes())
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [str(name.value) for name in alt]

    site = tmp_path / "site"
    enroll(device_request("box1", tmp_path / "box1")[1], site, broker_names=["central.example"])
    key = (site / "broker.key").read_bytes()
    assert names() == ["central.example"]
    before = (site / "broker.crt").read_bytes()
    enroll(device_request("box2", tmp_path / "box2")[1], site, broker_names=[])
    assert (site / "broker.crt").read_bytes() == before
    enroll(device_request("box3", tmp_path / "box3")[1], site, broker_names=["10.0.0.5"])
    assert names() == ["central.example", "10.0.0.5"]
    assert (site / "broker.key").read_bytes() == key


def test_an_earlier_linerecs_broker_lines_are_not_kept_as_the_operators(tmp_path: Path) -> None:
    """A mosquitto.conf written by an earlier linerec (its access rules in an acl_file, which
    enroll removes now): written again, its listener is kept, its own lines are not."""
    from linerec.collector.enroll import enroll
    from linerec.uplink.tls import device_request

    site = tmp_path / "site"
    site.mkdir()
    (site / "acl").write_text("pattern write linerec/v1/%u/event\n")
    (site / "mosquitto.conf").write_text(
        "# linerec site broker: TLS with client certificates, one identity per device.\n"
        f"listener 9883\ncafile {site / 'ca.crt'}\ncertfile {site / 'broker.crt'}\n"
        f"keyfile {site / 'broker.key'}\nrequire_certificate true\n"
        f"use_identity_as_username true\nacl_file {site / 'acl'}\nlog_type all\n"
    )
    enroll(device_request("box1", tmp_path / "box1")[1], site, broker_names=["localhost"])
    text = (site / "mosquitto.conf").read_text()
    assert "acl_file" not in text and "one identity per device." not in text
    assert not (site / "acl").exists()
    assert text.count("listener 9883\n") == 1 and text.count("cafile") == 1
    assert text.endswith("plugin_opt_config_file " + str(site / "access.json") + "\nlog_type all\n")


def test_re_enrolment_keeps_the_operators_global_options_ahead_of_the_listener(
    new_site: Site,
) -> None:
    """Lines an operator wrote above the listener are global options and some must come
    first: mosquitto refuses `per_listener_settings` after any security setting (it exits 3).
    Written again, they stay ahead of linerec's listener, in their order; the broker started
    on the file keeps running, serves TLS and still confines each device."""
    new_site.device("box1")
    conf = new_site.site / "mosquitto.conf"
    head = "# the operator's own globals\nper_listener_settings true\npersistence false\n"
    conf.write_text(head + conf.read_text() + "log_type error\n")
    new_site.device("box2")  # written again
    new_site.device("box3")  # and again: nothing moves
    text = conf.read_text()
    assert text.startswith(head), text
    assert text.count("per_listener_settings") == 1 and text.endswith("log_type error\n")
    new_site.start()
    box2 = connected(new_site.client("box2"), new_site.port)
    try:
        answers = subscribe(box2, ["linerec/v1/box2/ack", "linerec/v1/box1/ack"])
    finally:
        box2.loop_stop()
        box2.disconnect()
    assert answers == {
        "linerec/v1/box2/ack": "Granted QoS 1",
        "linerec/v1/box1/ack": "Not authorized",
    }
    assert new_site.broker is not None and new_site.broker.poll() is None
    cert = new_site.site / "devices" / "box3.crt"
    assert new_site.handshake(cert, new_site.root / "box3" / "device.key") == "connected"


# An operator's own broker plugin: says at start-up which options it was given, and refuses
# to start without its own (so options of its that reach another plugin show).
OPERATOR_PLUGIN = r"""
#include <stdio.h>
#include <string.h>
struct mosquitto_opt { char *key; char *value; };
int mosquitto_plugin_version(int count, const int *versions) { return 5; }
int mosquitto_plugin_init(void *id, void **userdata, struct mosquitto_opt *opts, int n) {
    int greeted = 0;
    for (int i = 0; i < n; i++) {
        fprintf(stderr, "operator-plugin option %s=%s\n", opts[i].key, opts[i].value);
        greeted |= strcmp(opts[i].key, "greeting") == 0;
    }
    fflush(stderr);
    return greeted ? 0 : 1;
}
int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int n) { return 0; }
"""


def test_re_enrolment_keeps_the_operators_plugin_with_its_options(new_site: Site) -> None:
    """An operator's own `plugin` line is theirs: written again, it stays, with its
    `plugin_opt_` lines after it (not attached to linerec's dynamic security plugin); only the
    dynamic security plugin linerec writes is written once. The broker loads both."""
    new_site.device("box1")
    source = new_site.site.parent / "operator.c"
    source.write_text(OPERATOR_PLUGIN)
    plugin = new_site.site.parent / "operator.so"
    built = subprocess.run(
        ["cc", "-shared", "-fPIC", "-o", str(plugin), str(source)], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    plugin.chmod(0o755)
    conf = new_site.site / "mosquitto.conf"
    own = f"plugin {plugin}\nplugin_opt_greeting hello\nplugin_opt_config_file /etc/op.conf\n"
    conf.write_text(conf.read_text() + own)
    new_site.device("box2")
    text = conf.read_text()
    assert own in text, text
    assert len(re.findall(r"^plugin .*mosquitto_dynamic_security\.so$", text, re.M)) == 1
    dynsec = f"plugin_opt_config_file {new_site.site / 'access.json'}\n"
    assert text.count(dynsec) == 1 and text.index(dynsec) < text.index(own)
    new_site.start()
    cert = new_site.site / "devices" / "box2.crt"
    assert new_site.handshake(cert, new_site.root / "box2" / "device.key") == "connected"
    log = new_site.stop()
    assert "operator-plugin option greeting=hello" in log, log
    assert "operator-plugin option config_file=/etc/op.conf" in log, log


def test_only_linerecs_dynamic_security_plugin_is_written_over(tmp_path: Path) -> None:
    """The file's structure, for plugins not installed here: an operator's plugin (either
    spelling) keeps its options, config_file included, in order; the dynamic security plugin
    and its config_file line are linerec's, written once, whatever path an earlier one had."""
    from linerec.collector.enroll import enroll
    from linerec.uplink.tls import device_request

    site = tmp_path / "site"
    enroll(device_request("box1", tmp_path / "box1")[1], site, broker_names=["localhost"])
    conf = site / "mosquitto.conf"
    ours = conf.read_text()
    own = (
        "plugin /opt/auth/libauth.so\nplugin_opt_config_file /etc/auth.conf\n"
        "plugin_opt_backend files\nauth_plugin /opt/old/auth.so\nauth_opt_db /var/db\n"
    )
    earlier = (
        "plugin /usr/lib/mosquitto_dynamic_security.so\n"
        f"plugin_opt_config_file {site / 'access.json'}\n"
    )
    conf.write_text(ours + earlier + own)
    enroll(device_request("box2", tmp_path / "box2")[1], site, broker_names=["localhost"])
    text = conf.read_text()
    assert text.endswith(own), text
    assert text.count("mosquitto_dynamic_security.so") == 1
    assert text.count(str(site / "access.json")) == 1


def test_per_listener_settings_below_the_listener_is_written_first(tmp_path: Path) -> None:
    """`per_listener_settings` after linerec's plugin line stops mosquitto (exit 3); written
    again, one the operator appended goes first, the rest of their lines stay in order."""
    from linerec.collector.enroll import enroll
    from linerec.uplink.tls import device_request

    site = tmp_path / "site"
    enroll(device_request("box1", tmp_path / "box1")[1], site, broker_names=["localhost"])
    conf = site / "mosquitto.conf"
    conf.write_text("persistence false\n" + conf.read_text() + "per_listener_settings true\n")
    conf.write_text(conf.read_text() + "listener 1883 127.0.0.1\nallow_anonymous true\n")
    enroll(device_request("box2", tmp_path / "box2")[1], site, broker_names=["localhost"])
    text = conf.read_text()
    assert text.startswith("per_listener_settings true\npersistence false\n# linerec"), text
    assert len(re.findall(r"^per_listener_settings", text, re.M)) == 1
    assert text.endswith("listener 1883 127.0.0.1\nallow_anonymous true\n")
