"""First boot from a site file, on a directory standing in for the root filesystem."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from linerec.collector.enroll import enroll
from linerec.config import load_config
from linerec.provision.apply import to_toml
from linerec.store.keys import keygen

LINEREC = [sys.executable, "-m", "linerec.cli"]
EXAMPLE = Path(__file__).parents[1] / "image" / "linerec-site.example.toml"


@pytest.fixture
def boot(tmp_path: Path) -> Path:
    """A boot partition holding the example site file and the files it names."""
    boot = tmp_path / "boot"
    boot.mkdir()
    shutil.copy(EXAMPLE, boot / "linerec-site.toml")
    _, public = keygen(tmp_path / "keys")
    shutil.copy(public, boot / "collector.pub")
    enroll(_csr(tmp_path), tmp_path / "ca-site", broker_names=["collector.example.net"])
    shutil.copy(tmp_path / "ca-site" / "ca.crt", boot / "ca.crt")
    return boot


def _csr(tmp_path: Path) -> Path:
    from linerec.uplink.tls import device_request

    return device_request("bench-box", tmp_path / "bench")[1]


def provision(boot: Path, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LINEREC, "provision", "--site", str(boot / "linerec-site.toml"), "--root", str(root)],
        capture_output=True,
        text=True,
    )


def test_the_example_site_file_sets_up_a_box(boot: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = provision(boot, root)
    assert result.returncode == 0, result.stderr
    config = load_config(root / "etc/linerec/linerec.toml")  # as the daemon will read it
    assert config.device_id == "shop-front-1"
    assert config.store.recipients == ((root / "etc/linerec/site/collector.pub").resolve(),)
    assert config.uplink is not None and config.uplink.broker.tls
    assert config.lines[0].label == "reception" and config.lines[0].opt_out_key == "9"
    # The request for the site's CA is on the boot partition; the key never leaves /etc.
    assert (boot / "shop-front-1.csr").is_file()
    assert os.stat(root / "etc/linerec/tls/device.key").st_mode & 0o777 == 0o600
    keys = root / "root/.ssh/authorized_keys"
    assert keys.read_text().startswith("ssh-ed25519 ") and keys.stat().st_mode & 0o777 == 0o600
    assert (root / "etc/linerec/ssh-enabled").exists()
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/Europe/London"
    assert (root / "etc/hostname").read_text() == "shop-front-1\n"
    assert "DHCP=yes" in (root / "etc/systemd/network/20-linerec-ethernet.network").read_text()
    # The site file moved off the FAT partition; what was done is left there in its place.
    assert not (boot / "linerec-site.toml").exists()
    assert (root / "etc/linerec/site/linerec-site.toml").stat().st_mode & 0o777 == 0o600
    assert (
        "shop-front-1 set up from linerec-site.toml"
        in (boot / "linerec-site-result.txt").read_text()
    )
    marker = json.loads((root / "etc/linerec/provisioned.json").read_text())
    assert marker["device_id"] == "shop-front-1"


def test_a_bad_site_file_changes_nothing_and_says_where(boot: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    site = boot / "linerec-site.toml"
    site.write_text(site.read_text().replace('timezone = "Europe/London"', 'timezone = "Mars"'))
    result = provision(boot, root)
    assert result.returncode == 2
    assert "linerec-site.toml:12: site.timezone: not a time zone name" in result.stderr
    assert not root.exists()  # not a file written
    assert site.exists()
    assert "site.timezone" in (boot / "linerec-site-error.txt").read_text()
    # The recorder's own keys are checked just as `config check` would.
    site.write_text(site.read_text().replace('consent = "notice"', 'consent = "sometimes"'))
    result = provision(boot, root)
    assert result.returncode == 2 and "line[0].consent: must be one of" in result.stderr
    assert not root.exists()


def test_secrets_leave_the_boot_partition(boot: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    site = boot / "linerec-site.toml"
    (boot / "device.key").write_text("-----BEGIN PRIVATE KEY-----\n")
    (boot / "device.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    text = site.read_text().replace(
        'ca = "ca.crt"', 'ca = "ca.crt"\ncert = "device.crt"\nkey = "device.key"'
    )
    text = text.replace(
        "# [network.wifi]                # optional; the passphrase is moved into /etc, root-only\n"
        '# ssid = "office"\n# psk = "a long passphrase"\n# country = "GB"',
        '[network.wifi]\nssid = "office"\npsk = "a long passphrase"\ncountry = "GB"',
    )
    site.write_text(text)
    result = provision(boot, root)
    assert result.returncode == 0, result.stderr
    assert not (boot / "device.key").exists()
    assert (root / "etc/linerec/site/device.key").stat().st_mode & 0o777 == 0o600
    assert not (boot / "shop-front-1.csr").exists()  # it has a certificate: no request
    supplicant = root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
    assert 'psk="a long passphrase"' in supplicant.read_text()
    assert supplicant.stat().st_mode & 0o777 == 0o600
    wants = root / "etc/systemd/system/multi-user.target.wants/wpa_supplicant@wlan0.service"
    assert os.readlink(wants) == "/lib/systemd/system/wpa_supplicant@.service"
    assert not any("a long passphrase" in p.read_text() for p in boot.glob("*.t*"))


def test_a_new_site_file_sets_the_box_up_again(boot: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    original = (boot / "linerec-site.toml").read_text()
    assert provision(boot, root).returncode == 0
    (boot / "linerec-site.toml").write_text(original)  # the same file again: nothing to redo
    again = provision(boot, root)
    assert again.returncode == 0 and "already set up from this file" in again.stdout
    changed = re.sub(r"ssh_authorized_keys = \[.*?\]\n", "", original, flags=re.S)
    (boot / "linerec-site.toml").write_text(
        changed.replace('consent = "notice"', 'consent = "one-party"')
    )
    redo = provision(boot, root)
    assert redo.returncode == 0, redo.stderr
    assert load_config(root / "etc/linerec/linerec.toml").lines[0].consent.value == "one-party"
    assert not (root / "etc/linerec/ssh-enabled").exists()  # no key any more: SSH off
    assert not (root / "root/.ssh/authorized_keys").exists()


def test_no_site_file_is_nothing_to_do(tmp_path: Path) -> None:
    result = provision(tmp_path, tmp_path / "root")
    assert result.returncode == 0 and "no site file: nothing to do" in result.stdout


def test_toml_written_reads_back_the_same() -> None:
    import tomllib

    data = {
        "device": {"id": "box1"},
        "store": {"recipients": ["site/a.pub"], "max_age_days": 90, "dir": 'odd "name"\\'},
        "line": [{"name": "line1", "consent": "notice"}, {"name": "line2", "beep_hz": 1400.0}],
        "uplink": {"broker": "mqtts://h:8883", "allow_plaintext": False},
    }
    assert tomllib.loads(to_toml(data)) == data


# --- A site file written by a careless or hostile hand -------------------------------------


def _failed(result: subprocess.CompletedProcess[str], boot: Path, key: str) -> str:
    """The run was refused with one line naming the site file and `key`; returns that line."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    (line,) = result.stderr.splitlines()
    assert "linerec-site.toml" in line and key in line, line
    assert key in (boot / "linerec-site-error.txt").read_text()
    return line


def test_a_key_file_outside_the_boot_partition_is_refused_and_left_alone(
    boot: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "elsewhere" / "victim.key"
    victim.parent.mkdir()
    victim.write_text("-----BEGIN PRIVATE KEY-----\nnot yours\n")
    (boot / "device.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    site = boot / "linerec-site.toml"
    site.write_text(
        site.read_text().replace(
            'ca = "ca.crt"', f'ca = "ca.crt"\ncert = "device.crt"\nkey = "{victim}"'
        )
    )
    line = _failed(provision(boot, tmp_path / "root"), boot, "uplink.key")
    assert "a file name beside the site file" in line
    assert victim.read_text() == "-----BEGIN PRIVATE KEY-----\nnot yours\n"
    assert not (tmp_path / "root").exists()


def test_a_file_above_the_boot_partition_is_not_read(boot: Path, tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("the neighbour's secret\n")
    site = boot / "linerec-site.toml"
    site.write_text(site.read_text().replace('ca = "ca.crt"', 'ca = "../outside/secret.txt"'))
    _failed(provision(boot, tmp_path / "root"), boot, "uplink.ca")
    assert not (tmp_path / "root").exists()
    # Nor through a link that leads out of the boot partition.
    (boot / "ca.crt").unlink()
    (boot / "ca.crt").symlink_to(secret)
    site.write_text(site.read_text().replace('ca = "../outside/secret.txt"', 'ca = "ca.crt"'))
    line = _failed(provision(boot, tmp_path / "root"), boot, "uplink.ca")
    assert "link" in line
    assert not (tmp_path / "root").exists()


def test_a_passphrase_cannot_add_a_network_block(boot: Path, tmp_path: Path) -> None:
    site = boot / "linerec-site.toml"
    text = site.read_text().replace(
        "# [network.wifi]                # optional; the passphrase is moved into /etc, root-only\n"
        '# ssid = "office"\n# psk = "a long passphrase"\n# country = "GB"',
        '[network.wifi]\nssid = "office"\n'
        'psk = "longpass\\"\\n}\\nnetwork={\\n    key_mgmt=NONE\\n"\ncountry = "GB"',
    )
    site.write_text(text)
    line = _failed(provision(boot, tmp_path / "root"), boot, "network.wifi.psk")
    assert "control character" in line and ":" in line
    assert not (tmp_path / "root").exists()


def test_a_host_name_with_a_newline_is_refused(boot: Path, tmp_path: Path) -> None:
    site = boot / "linerec-site.toml"
    site.write_text(site.read_text().replace('# hostname = "shop-front-1"', 'hostname = "box\\n"'))
    line = _failed(provision(boot, tmp_path / "root"), boot, "site.hostname")
    assert line.startswith(f"linerec: error: {site}:")  # file:line
    assert not (tmp_path / "root").exists()


def test_no_named_file_can_take_the_site_files_own_place(boot: Path, tmp_path: Path) -> None:
    """A notice called linerec-site.toml was installed, then overwritten by the site file's
    copy; the site file and its error file cannot be named either."""
    notice = Path(__file__).parents[1] / "firmware/linerec/data/notice-en.wav"
    site = boot / "linerec-site.toml"
    text = site.read_text()
    shop = boot / "shop.toml"
    shop.write_text(
        text.replace('consent = "notice"', 'consent = "notice"\nnotice = "linerec-site.toml"')
    )
    site.unlink()
    shutil.copy(notice, boot / "linerec-site.toml")
    result = subprocess.run(
        [*LINEREC, "provision", "--site", str(shop), "--root", str(tmp_path / "root")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    assert "shop.toml" in result.stderr and "line[0].notice" in result.stderr
    assert not (tmp_path / "root").exists()
    for name in ("shop.toml", "linerec-site-error.txt"):
        shop.write_text(text.replace('ca = "ca.crt"', f'ca = "{name}"'))
        (boot / "linerec-site-error.txt").write_text("from before\n")
        result = subprocess.run(
            [*LINEREC, "provision", "--site", str(shop), "--root", str(tmp_path / "root")],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2 and "uplink.ca" in result.stderr, result.stderr
        assert not (tmp_path / "root").exists()
