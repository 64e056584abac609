"""`linerec collector enroll --renew DEVICE` (issue 17, item 5): a new certificate for the
device's own key before its old one expires, sent in a signed command, kept by the device only
if it is its own, presented from the next start, and its expiry on the health telemetry."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion

from enrolled import Site
from linerec.collector.enroll import EnrollError, renew, revoke
from linerec.store.keys import RENEWED_CERT
from linerec.uplink.expiry import current_cert, expires
from linerec.uplink.tls import check_renewed

LINEREC = [sys.executable, "-m", "linerec.cli"]


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.fixture
def site_copy(enrolled_site: Site, tmp_path: Path) -> Site:
    """The enrolled site's CA and certificates, copied: renewing here changes nothing the
    other tests of the module use."""
    copy = tmp_path / "site"
    shutil.copytree(enrolled_site.site, copy)
    return Site(
        root=enrolled_site.root, site=copy, port=enrolled_site.port, configs=enrolled_site.configs
    )


def test_renew_issues_a_new_certificate_for_the_same_key(site_copy: Site) -> None:
    site = site_copy.site
    old = cert(site / "devices" / "box1.crt")
    renewed = cert(renew(site, "box1"))
    assert renewed.serial_number != old.serial_number
    assert renewed.public_key() == old.public_key()
    assert renewed.not_valid_after_utc >= old.not_valid_after_utc
    assert (site / "issued" / f"{renewed.serial_number:x}.crt").exists()  # revocable later
    with pytest.raises(EnrollError, match="no certificate here to renew"):
        renew(site, "box9")
    revoke(site, "box2")
    with pytest.raises(EnrollError, match="no certificate here to renew"):
        renew(site, "box2")


def test_a_device_keeps_only_its_own_renewed_certificate(site_copy: Site, tmp_path: Path) -> None:
    site, root = site_copy.site, site_copy.root
    key, ca = root / "box1" / "device.key", site / "ca.crt"
    mine = renew(site, "box1").read_bytes()
    assert check_renewed(mine, device_id="box1", key=key, ca=ca).subject
    other_ca = tmp_path / "other"
    shutil.copytree(site, other_ca)
    for name in ("ca.key", "ca.crt"):
        (other_ca / name).unlink()
    foreign = renew(other_ca, "box1").read_bytes()  # a CA of its own, made on first use
    for pem, device, why in (
        (foreign, "box1", "not issued by the site CA"),
        ((site / "devices" / "box2.crt").read_bytes(), "box1", "issued to \\['box2'\\]"),
        (mine, "box2", "issued to \\['box1'\\], not to 'box2'"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "box1", "not a PEM"),
    ):
        with pytest.raises(ValueError, match=why):
            check_renewed(pem, device_id=device, key=key, ca=ca)
    with pytest.raises(ValueError, match="not for this device's key"):
        check_renewed(mine, device_id="box1", key=root / "box2" / "device.key", ca=ca)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=4000)
    with pytest.raises(ValueError, match="not valid now"):
        check_renewed(mine, device_id="box1", key=key, ca=ca, now=later)
    with pytest.raises(ValueError, match="no \\[uplink\\] ca"):
        check_renewed(mine, device_id="box1", key=key, ca=None)


def test_the_uplink_presents_the_certificate_that_lasts_longer(
    site_copy: Site, tmp_path: Path
) -> None:
    configured = site_copy.site / "devices" / "box1.crt"
    store = tmp_path / "ring"
    store.mkdir()
    assert current_cert(configured, store) == configured
    shutil.copy(configured, tmp_path / "old.crt")
    renewed = renew(site_copy.site, "box1")
    shutil.copy(renewed, store / RENEWED_CERT)
    assert current_cert(tmp_path / "old.crt", store) == store / RENEWED_CERT
    assert current_cert(None, store) == store / RENEWED_CERT
    assert expires(store / RENEWED_CERT) >= expires(tmp_path / "old.crt")


def test_renew_reaches_a_running_box_which_presents_it_and_reports_its_expiry(
    enrolled_site: Site, tmp_path: Path
) -> None:
    site = enrolled_site
    config = site.sim_box_config("box1", tmp_path)
    collector_config = site.collector_config(tmp_path / "central")
    healths: list[dict[str, object]] = []
    statuses: list[bytes] = []
    arrived = threading.Condition()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with arrived:
            if message.topic.endswith("/health"):
                healths.append(json.loads(message.payload))
            else:
                statuses.append(message.payload)
            arrived.notify_all()

    watcher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    watcher.tls_set(
        ca_certs=str(site.site / "ca.crt"),
        certfile=str(site.site / "linerec-collector.crt"),
        keyfile=str(site.site / "linerec-collector.key"),
    )
    watcher.on_message = on_message
    watcher.connect("127.0.0.1", site.port)
    watcher.subscribe([("linerec/v1/box1/health", 0), ("linerec/v1/box1/status", 1)])
    watcher.loop_start()

    def wait(predicate: object, what: str) -> None:
        with arrived:
            assert arrived.wait_for(predicate, timeout=30), what  # type: ignore[arg-type]

    def start() -> subprocess.Popen[str]:
        with arrived:
            healths.clear()
            statuses.clear()
        return subprocess.Popen(
            [*LINEREC, "run", "--config", str(config)], text=True, stderr=subprocess.PIPE
        )

    original = site.site / "devices" / "box1.crt"
    saved = original.read_bytes()
    daemon = start()
    try:
        wait(lambda: any(b'"online"' in s for s in statuses), "box1 never came online")
        wait(lambda: healths, "no health telemetry after connecting")
        assert healths[-1]["tls_cert_expires"] == expires(original).isoformat()
        renewed = subprocess.run(
            [
                *LINEREC,
                "collector",
                "enroll",
                "--renew",
                "box1",
                "--site",
                str(site.site),
                "--config",
                str(collector_config),
                "--timeout",
                "20",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert renewed.returncode == 0, renewed.stderr
        assert "box1: cert: done" in renewed.stdout
        kept = tmp_path / "ring" / RENEWED_CERT
        assert kept.read_bytes() == original.read_bytes() != saved
        assert kept.stat().st_mode & 0o777 == 0o600
        daemon.terminate()
        daemon.wait(20)
        original.write_bytes(saved)  # the configured [uplink] cert is still the old one
        daemon = start()  # the next start presents the renewed certificate
        wait(lambda: any(b'"online"' in s for s in statuses), "box1 did not come back")
        wait(lambda: healths, "no health telemetry after the restart")
        assert healths[-1]["tls_cert_expires"] == expires(kept).isoformat()
        assert cert(kept).serial_number != cert(original).serial_number
    finally:
        original.write_bytes(saved)
        watcher.loop_stop()
        watcher.disconnect()
        daemon.terminate()
        daemon.wait(20)


def self_signed(not_after: dt.datetime) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "box1")])
    built = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return built.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    "not_after",
    [
        dt.datetime(2049, 12, 31, 23, 59, 58, tzinfo=dt.UTC),  # UTCTime (RFC 5280: to 2049)
        dt.datetime(2050, 1, 1, 0, 0, 1, tzinfo=dt.UTC),  # GeneralizedTime from 2050
        dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC),  # "no expiry" (RFC 5280)
    ],
)
def test_expiry_is_read_as_cryptography_reads_it(not_after: dt.datetime, tmp_path: Path) -> None:
    path = tmp_path / "device.pem"
    path.write_bytes(b"issued to box1\n" + self_signed(not_after))  # text before: as openssl
    assert expires(path) == not_after == cert(path).not_valid_after_utc


def test_an_unreadable_certificate_is_named_in_a_value_error(tmp_path: Path) -> None:
    good = self_signed(dt.datetime(2030, 1, 1, tzinfo=dt.UTC)).decode()
    body = "".join(good.splitlines(keepends=True)[1:-1])
    path = tmp_path / "device.pem"
    for broken in (
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\n" + body[:60] + "\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n",
    ):
        path.write_text(broken)
        with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: "):
            expires(path)


def test_a_box_with_an_uplink_reports_its_expiry_without_loading_x509(
    enrolled_site: Site, tmp_path: Path
) -> None:
    """Issue 19: cryptography's X.509 and key serialization are 1.2 MB of the daemon's peak;
    the uplink's TLS is Python's ssl, and the expiry on the health telemetry is one date."""
    site = enrolled_site
    config = site.sim_box_config("box1", tmp_path)
    (tmp_path / "ring").mkdir()
    configured = site.site / "devices" / "box1.crt"
    shutil.copy(configured, tmp_path / "ring" / RENEWED_CERT)  # both are read for their expiry
    healths: list[dict[str, object]] = []
    arrived = threading.Condition()
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.retain:  # an earlier box's (the site is the module's), not this one's
            return
        with arrived:
            healths.append(json.loads(message.payload))
            arrived.notify_all()

    watcher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    watcher.tls_set(
        ca_certs=str(site.site / "ca.crt"),
        certfile=str(site.site / "linerec-collector.crt"),
        keyfile=str(site.site / "linerec-collector.key"),
    )
    watcher.on_message = on_message
    watcher.on_subscribe = lambda *_: subscribed.set()
    watcher.connect("127.0.0.1", site.port)
    watcher.subscribe([("linerec/v1/box1/health", 0)])
    watcher.loop_start()
    assert subscribed.wait(30), "the watcher did not subscribe"
    listed = tmp_path / "modules.txt"
    code = (
        "import atexit, sys\n"
        "def listing() -> None:\n"
        f"    open({str(listed)!r}, 'w').write('\\n'.join(sorted(sys.modules)))\n"
        "atexit.register(listing)\n"
        "from linerec.cli import main\n"
        "sys.exit(main())\n"
    )
    daemon = subprocess.Popen(
        [sys.executable, "-c", code, "run", "--config", str(config)],
        text=True,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    try:
        with arrived:
            assert arrived.wait_for(lambda: healths, timeout=30), "no health telemetry"
        assert healths[-1]["tls_cert_expires"] == cert(configured).not_valid_after_utc.isoformat()
        daemon.terminate()
        _, stderr = daemon.communicate(timeout=20)
    finally:
        watcher.loop_stop()
        watcher.disconnect()
        daemon.kill()
    assert daemon.returncode == 0, stderr
    modules = listed.read_text().split()
    assert "linerec.uplink.client" in modules and "ssl" in modules  # the uplink did run
    assert not [
        m
        for m in modules
        if m.startswith(("cryptography.x509", "cryptography.hazmat.primitives.serialization"))
    ]
