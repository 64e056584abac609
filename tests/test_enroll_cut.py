"""`linerec collector enroll` cut off mid-write by a real failure (the file-size limit a full
disk would set: the write fails after some bytes): every file it replaces is the old one or
the new one, never a torn one, so the broker still starts as it was and the enrolment can be
run again."""

from __future__ import annotations

import resource
import subprocess
from collections.abc import Callable
from pathlib import Path

from cryptography import x509

from linerec.atomic import temp_target
from linerec.config import load_config
from linerec.uplink.tls import device_request
from test_tls import LINEREC, Site, new_site  # noqa: F401 (the fixture)


def size_limited(limit: int) -> Callable[[], None]:
    """For a child process: writes beyond `limit` bytes of any file fail (EFBIG; Python
    ignores SIGXFSZ)."""

    def limit_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_size


def files(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def test_access_rules_cut_mid_write_leave_the_old_ones_and_the_broker_starts(
    new_site: Site,
) -> None:
    box1 = new_site.device("box1")
    before = files(new_site.site)
    (new_site.root / "box2.toml").write_text(
        box1.read_text().replace('id = "box1"', 'id = "box2"').split("[uplink]")[0]
    )
    request = subprocess.run(
        [*LINEREC, "uplink", "csr", "--config", str(new_site.root / "box2.toml"),
         "--out", str(new_site.root / "b2")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert request.returncode == 0, request.stderr
    csr = new_site.root / "b2" / "box2.csr"
    access = new_site.site / "access.json"
    # Room for each certificate, not for the access rules grown by a device.
    limit = len(before["access.json"])
    cut = subprocess.run(
        [*LINEREC, "collector", "enroll", str(csr), "--site", str(new_site.site)],
        capture_output=True,
        text=True,
        preexec_fn=size_limited(limit),
    )
    after = files(new_site.site)
    assert after["access.json"] == before["access.json"], "torn"
    assert after["mosquitto.conf"] == before["mosquitto.conf"]
    assert [name for name in after if temp_target(Path(name).name)] == []
    assert cut.returncode == 1, cut.stderr
    assert cut.stderr.startswith(f"linerec: error: {access}: not written"), cut.stderr
    assert len(cut.stderr.splitlines()) == 1, cut.stderr
    new_site.start()  # the broker starts with what was there before, box1 let in
    box1_uplink = load_config(box1).uplink
    assert box1_uplink is not None and box1_uplink.cert and box1_uplink.key
    assert new_site.handshake(box1_uplink.cert, box1_uplink.key) == "connected"
    new_site.stop()
    # and the enrolment, run again with room, completes
    done = new_site.enroll(csr)
    assert done.returncode == 0, done.stderr
    assert '"username": "box2"' in access.read_text()


def test_a_new_sites_ca_key_cut_mid_write_is_not_left_torn(new_site: Site) -> None:
    """A site's first enrolment fails half-way through the device CA's new key: no torn key is
    left for the next run to choke on; run again with room, the bridge is enrolled."""
    site = new_site.site
    arguments = [*LINEREC, "collector", "enroll", "--bridge", "office1", "--device", "box1",
                 "--site", str(site), "--broker-name", "127.0.0.1"]  # fmt: skip
    key = site / "ca.key"
    cut = subprocess.run(arguments, capture_output=True, text=True, preexec_fn=size_limited(100))
    assert not key.exists(), f"torn: {key.read_bytes()!r}"
    assert [p for p in site.rglob("*") if temp_target(p.name)] == []
    assert cut.returncode == 1, cut.stderr
    assert cut.stderr.startswith(f"linerec: error: {key}: not written"), cut.stderr
    done = subprocess.run(arguments, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for name in ("ca.key", "bridges/office1/bridge.key"):
        assert (site / name).read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
        assert (site / name).stat().st_mode & 0o777 == 0o600


def test_a_device_request_cut_mid_write_leaves_the_old_one_whole(tmp_path: Path) -> None:
    """`linerec uplink csr` run again (a request lost in the post) and cut off mid-write: the
    request there before is kept whole, no temporary file is left, the error names the file,
    and the device's key is untouched; run again with room, a new whole request is made."""
    config = tmp_path / "linerec.toml"
    config.write_text('[device]\nid = "box1"\n[store]\ndir = "ring"\n')
    out = tmp_path / "tls"
    arguments = [*LINEREC, "uplink", "csr", "--config", str(config), "--out", str(out)]
    first = subprocess.run(arguments, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    csr, key = out / "box1.csr", out / "device.key"
    before = files(out)
    cut = subprocess.run(arguments, capture_output=True, text=True, preexec_fn=size_limited(100))
    assert files(out) == before, "torn"
    assert cut.returncode != 0, cut.stderr
    assert cut.stderr.startswith(f"linerec: error: {csr}: not written"), cut.stderr
    assert len(cut.stderr.splitlines()) == 1, cut.stderr
    again = subprocess.run(arguments, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    request = x509.load_pem_x509_csr(csr.read_bytes())
    assert request.is_signature_valid
    assert (out / "device.key").read_bytes() == before["device.key"]
    assert csr.stat().st_mode & 0o777 == 0o644  # a request is no secret: the enroller reads it
    assert key.stat().st_mode & 0o777 == 0o600
    assert [name for name in files(out) if temp_target(Path(name).name)] == []


def test_an_unreadable_device_key_is_named(tmp_path: Path) -> None:
    config = tmp_path / "linerec.toml"
    config.write_text('[device]\nid = "box1"\n[store]\ndir = "ring"\n')
    out = tmp_path / "tls"
    out.mkdir()
    (out / "device.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\ntorn")
    arguments = [*LINEREC, "uplink", "csr", "--config", str(config), "--out", str(out)]
    done = subprocess.run(arguments, capture_output=True, text=True)
    assert done.returncode != 0
    assert done.stderr.startswith(f"linerec: error: {out / 'device.key'}: not a PEM"), done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert (out / "device.key").read_bytes() == b"-----BEGIN PRIVATE KEY-----\ntorn"
    assert not (out / "box1.csr").exists()


def test_a_torn_certificate_or_revocation_list_in_the_site_is_named(tmp_path: Path) -> None:
    """A site file an older version (or a hand) left torn: the enrolment stops with one line
    naming it, not a traceback."""
    site = tmp_path / "site"
    arguments = [*LINEREC, "collector", "enroll", "--site", str(site), "--broker-name", "127.0.0.1"]
    box1 = device_request("box1", tmp_path / "box1")[1]
    box2 = device_request("box2", tmp_path / "box2")[1]
    first = subprocess.run([*arguments, str(box1)], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    for path in (site / "ca.crt", site / "crl.pem", next((site / "issued").glob("*.crt"))):
        whole = path.read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
        done = subprocess.run([*arguments, str(box2)], capture_output=True, text=True)
        assert done.returncode != 0
        assert done.stderr.startswith(f"linerec: error: {path}: not a PEM"), done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr
        path.write_bytes(whole)
