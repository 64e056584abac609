"""A site set up with the project's own tools: TLS with client certificates and per-device ACLs,
on a real mosquitto started with the configuration `linerec collector enroll` wrote."""

from __future__ import annotations

import re
import ssl
import subprocess
import sys
import threading
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


def device(tmp_path: Path, name: str, site: Path, port: int) -> Path:
    config = tmp_path / f"{name}.toml"
    config.write_text(
        f'[device]\nid = "{name}"\n[store]\ndir = "{name}-ring"\nrecipients = ["keys/collector.pub"]\n'
    )
    out = subprocess.run(
        [*LINEREC, "uplink", "csr", "--config", str(config), "--out", str(tmp_path / name)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    enrolled = subprocess.run(
        [
            *LINEREC,
            "collector",
            "enroll",
            str(tmp_path / name / f"{name}.csr"),
            "--site",
            str(site),
            "--broker-name",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        capture_output=True,
        text=True,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    config.write_text(
        config.read_text() + f'[uplink]\nbroker = "mqtts://127.0.0.1:{port}"\n'
        f'ca = "{site / "ca.crt"}"\ncert = "{site / f"{name}.crt"}"\nkey = "{tmp_path / name / "device.key"}"\n'
    )
    return config


@pytest.fixture
def tls_site(tmp_path: Path):  # type: ignore[no-untyped-def]
    keygen(tmp_path / "keys")
    site, port = tmp_path / "site", free_port()
    configs = {name: device(tmp_path, name, site, port) for name in ("box1", "box2")}
    conf = site / "mosquitto.conf"
    assert conf.read_text().count("require_certificate true") == 1
    # The tests run as root and pytest's temporary directory is root's alone, so the broker
    # must not drop to the mosquitto user here (on a site it does, and owns its key).
    conf.write_text(conf.read_text() + "user root\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.PIPE)
    import socket
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert broker.poll() is None, broker.stderr.read().decode()  # type: ignore[union-attr]
        time.sleep(0.05)
    else:
        raise AssertionError("the TLS broker did not start")
    (tmp_path / "collector.toml").write_text(
        f'[collector]\nbroker = "mqtts://127.0.0.1:{port}"\ndata_dir = "central"\nkey = "keys/collector.key"\n'
        f'ca = "{site / "ca.crt"}"\ncert = "{site / "linerec-collector.crt"}"\nclient_key = "{site / "linerec-collector.key"}"\n'
    )
    yield {"root": tmp_path, "site": site, "port": port, **configs}
    broker.terminate()
    broker.wait(10)


def client_for(site: Path, root: Path, name: str) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.tls_set(
        ca_certs=str(site / "ca.crt"),
        certfile=str(site / f"{name}.crt"),
        keyfile=str(root / name / "device.key"),
    )
    return client


def test_devices_upload_over_tls_and_only_under_their_own_id(tls_site: dict) -> None:  # type: ignore[type-arg]
    root, site, port = tls_site["root"], tls_site["site"], tls_site["port"]
    for name in ("box1", "box2"):
        simulate(
            [example_call("inbound.toml")],
            config=load_config(tls_site[name]),
            store_dir=None,
            emit=lambda e: None,
        )
    collector = Collector(load_collector_config(root / "collector.toml"))
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert collector.ready.wait(10)
        for name in ("box1", "box2"):
            flush = subprocess.run(
                [*LINEREC, "uplink", "flush", "--config", str(tls_site[name]), "--timeout", "30"],
                capture_output=True,
                text=True,
            )
            assert flush.returncode == 0, flush.stderr
        # box2 tries to write as box1: the broker refuses, and box2 is told so (PUBACK 0x87)
        refused: list[object] = []
        intruder = client_for(site, root, "box2")
        intruder.on_publish = lambda client, userdata, mid, reason, properties: refused.append(
            reason
        )
        intruder.connect("127.0.0.1", port)
        intruder.loop_start()
        intruder.publish("linerec/v1/box1/event", b'{"seq": 999}', qos=1).wait_for_publish(10)
        intruder.loop_stop()
        intruder.disconnect()
    finally:
        stop.set()
        thread.join(10)
    assert [str(r) for r in refused] == ["Not authorized"]
    assert {r["device"] for r in collector.store.recordings()} == {"box1", "box2"}
    assert collector.store.contiguous_seq("box1") < 999


def test_no_client_certificate_no_connection(tls_site: dict) -> None:  # type: ignore[type-arg]
    context = ssl.create_default_context(cafile=str(tls_site["site"] / "ca.crt"))
    import socket

    raw = socket.create_connection(("127.0.0.1", tls_site["port"]), timeout=5)
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
    ],
)
def test_enrol_refuses_a_name_the_acl_could_not_confine(
    tmp_path: Path, common_name: str, why: str
) -> None:
    from linerec.collector.enroll import EnrollError, enroll
    from linerec.uplink.tls import device_request

    _, csr = device_request(common_name, tmp_path / "device")
    with pytest.raises(EnrollError, match=re.escape(f"common name '{common_name}' {why}")):
        enroll(csr, tmp_path / "site", broker_names=["localhost"])
    assert not (tmp_path / "site" / f"{common_name}.crt").exists()
