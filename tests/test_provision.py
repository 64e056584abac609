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
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

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
        "sim": {"calls": ["caf\u00e9 \U0001f4de\t\x7f.toml"]},
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


# --- Any site file: a set-up or one clear line, and nothing touched outside -----------------

OUTSIDE = "{OUTSIDE}"  # replaced by the sentinel tree's absolute path
FILE_NAMES = [
    "collector.pub",
    "ca.crt",
    "notice.wav",
    "inside.crt",  # a link to ca.crt beside it: fine
    "link.crt",  # a link to the sentinel secret: never read
    "../outside/secret.txt",
    f"{OUTSIDE}/victim.key",
    f"{OUTSIDE}",
    "linerec-site.toml",
    "LINEREC-SITE-ERROR.TXT",
    "linerec-site-result.txt",
    "missing.pub",
    "a/b",
    ".",
    "..",
    "~",
    "",
]
HOSTILE = [
    "box\n",
    "x\nnetwork={\n    key_mgmt=NONE\n}",
    'quote"and\\backslash',
    "#comment",
    "\u202eevil",
    "line\u2028break",
    "caf\u00e9 \U0001f4de",
    "a" * 64,
    "Europe/London",
    "shop-front-1",
    "ssh-ed25519 AAAA x\nssh-rsa BBBB",
    "GB",
    "%n%%",
]
text_value = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=24))
file_value = st.one_of(st.sampled_from(FILE_NAMES), st.text(max_size=12))
any_value = st.one_of(
    text_value,
    file_value,
    st.integers(-(2**64), 2**64),
    st.booleans(),
    st.lists(file_value, max_size=3),
    st.dictionaries(st.sampled_from(["x", "id", "ca"]), text_value, max_size=2),
)
# (table, key) -> values worth trying there; table "line" is the first [[line]].
OVERRIDES: dict[tuple[str, str], st.SearchStrategy[object]] = {
    ("site", "hostname"): text_value,
    ("site", "timezone"): text_value,
    ("site", "ssh_authorized_keys"): st.lists(text_value, max_size=2),
    ("network", "ethernet"): st.booleans(),
    ("network.wifi", "ssid"): text_value,
    ("network.wifi", "psk"): st.one_of(text_value, st.text(min_size=8, max_size=70)),
    ("network.wifi", "country"): text_value,
    ("device", "id"): text_value,
    ("store", "recipients"): st.lists(file_value, min_size=1, max_size=3),
    ("store", "dir"): text_value,
    ("uplink", "ca"): file_value,
    ("uplink", "cert"): file_value,
    ("uplink", "key"): file_value,
    ("uplink", "collector"): file_value,
    ("line", "notice"): file_value,
    ("line", "label"): text_value,
    ("sim", "calls"): st.lists(file_value, max_size=2),
    ("hardware", "pinmap"): file_value,
    ("site", "extra"): any_value,
    ("uplink", "broker"): st.sampled_from(["mqtts://h:8883", "mqtt://h", "h\n"]),
}


def _toml_string(value: str) -> str:
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{_toml_string(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


@st.composite
def site_files(draw: st.DrawFn) -> str:
    """The example's tables with some keys set to careless or hostile values; sometimes a
    line of the text itself replaced by junk."""
    tables: dict[str, dict[str, object]] = {
        "site": {"timezone": "Europe/London"},
        "network": {"ethernet": True},
        "device": {"id": "shop-front-1"},
        "store": {"recipients": ["collector.pub"]},
        "uplink": {"broker": "mqtts://collector.example.net:8883", "ca": "ca.crt"},
        "line": {"name": "line1", "consent": "notice"},
    }
    chosen = draw(st.lists(st.sampled_from(sorted(OVERRIDES)), max_size=4, unique=True))
    for table, key in chosen:
        tables.setdefault(table, {})[key] = draw(OVERRIDES[(table, key)])
    if draw(st.booleans()) and "network.wifi" not in tables:
        tables["network.wifi"] = {"ssid": "office", "psk": "a long passphrase", "country": "GB"}
    if "network.wifi" in tables:
        tables["network.wifi"].setdefault("ssid", "office")
        tables["network.wifi"].setdefault("psk", "a long passphrase")
        tables["network.wifi"].setdefault("country", "GB")
    lines = []
    for table, entries in tables.items():
        lines.append(f"[[{table}]]" if table == "line" else f"[{table}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in entries.items()]
    if draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(lines) - 1))
        lines[at] = draw(st.text(max_size=30))
    return "\n".join(lines) + "\n"


def _snapshot(tree: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every entry under `tree`: mode and content (or link target)."""
    found: dict[str, tuple[int, bytes | str]] = {}
    for path in sorted(tree.rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            found[str(path)] = (info.st_mode, os.readlink(path))
        elif path.is_file():
            found[str(path)] = (info.st_mode, path.read_bytes())
        else:
            found[str(path)] = (info.st_mode, "dir")
    return found


@pytest.fixture(scope="module")
def boot_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What every generated boot partition holds besides its site file."""
    made = tmp_path_factory.mktemp("boot-files")
    _, public = keygen(made / "keys")
    enroll(_csr(made), made / "ca-site", broker_names=["collector.example.net"])
    files = made / "files"
    files.mkdir()
    shutil.copy(public, files / "collector.pub")
    shutil.copy(made / "ca-site" / "ca.crt", files / "ca.crt")
    shutil.copy(
        Path(__file__).parents[1] / "firmware/linerec/data/notice-en.wav", files / "notice.wav"
    )
    return files


SECRET = b"the neighbour's secret\n"
VICTIM = b"-----BEGIN PRIVATE KEY-----\nnot yours\n"


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(text=site_files())
def test_any_site_file_sets_up_or_says_where_and_touches_nothing_outside(
    boot_files: Path, text: str
) -> None:
    import contextlib
    import io
    import tempfile

    from linerec.cli import main

    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        outside, boot, root = base / "outside", base / "boot", base / "root"
        (outside / "sub").mkdir(parents=True)
        (outside / "secret.txt").write_bytes(SECRET)
        (outside / "victim.key").write_bytes(VICTIM)
        (outside / "linerec-site-error.txt").write_text("not for writing\n")
        (outside / "sub" / "hostname").write_text("untouched\n")
        shutil.copytree(boot_files, boot)
        (boot / "inside.crt").symlink_to("ca.crt")
        (boot / "link.crt").symlink_to(outside / "secret.txt")
        site = boot / "linerec-site.toml"
        site.write_text(text.replace(OUTSIDE, str(outside)))
        before = _snapshot(outside)

        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = main(["provision", "--site", str(site), "--root", str(root)])

        assert _snapshot(outside) == before
        assert sorted(p.name for p in base.iterdir()) in (
            ["boot", "outside"],
            ["boot", "outside", "root"],
        )
        event("set up" if status == 0 else "refused")
        if status == 0:
            assert load_config(root / "etc/linerec/linerec.toml").device_id
            for path in root.rglob("*"):
                if path.is_file() and not path.is_symlink():
                    data = path.read_bytes()
                    assert SECRET not in data and VICTIM not in data, path
            assert not (boot / "linerec-site-error.txt").exists()
            supplicant = root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
            if supplicant.exists():  # one network, each value on its own line
                lines = supplicant.read_text().splitlines()
                assert len(lines) == 5 and lines[1] == "network={" and lines[4] == "}", lines
                assert re.fullmatch(r'    ssid=("[ -~]+"|[0-9a-f]+)', lines[2]), lines
                assert re.fullmatch(r'    psk="[ -~]{8,63}"', lines[3]), lines
        else:
            assert status == 2, stderr.getvalue()
            (line,) = stderr.getvalue().splitlines()
            place = rf"linerec: error: {re.escape(str(site))}(:\d+: |: [^\s:]+: )"
            assert re.match(place, line), line  # file:line, or the file and the key
            assert line.endswith("; nothing was changed")
            error = (boot / "linerec-site-error.txt").read_text()
            assert (
                line.removeprefix("linerec: error: ").removesuffix("; nothing was changed") in error
            )
            assert not root.exists()


def test_wifi_values_are_written_as_wpa_supplicant_reads_them() -> None:
    from linerec.provision.netfiles import Unrepresentable, networkd_file, wpa_supplicant_conf

    # wpa_supplicant takes everything between the first and the last quote, with no escapes:
    # a backslash or a quote in a passphrase is written as it is.
    text = wpa_supplicant_conf(ssid="office", psk='pa\\ss"word #1', country="GB")
    assert text == 'country=GB\nnetwork={\n    ssid="office"\n    psk="pa\\ss"word #1"\n}\n'
    # An SSID that is not plain printable ASCII goes in hex, which holds any 32 bytes.
    text = wpa_supplicant_conf(ssid='Café "5G"', psk="a long passphrase", country="FR")
    assert "    ssid=436166c3a92022354722\n" in text  # hex of the UTF-8 bytes
    for ssid, psk, country in [
        ("office", "short", "GB"),
        ("office", "x" * 64, "GB"),
        ("office", "pässphrase", "GB"),
        ("office", "new\nline!", "GB"),
        ("", "a long passphrase", "GB"),
        ("x" * 33, "a long passphrase", "GB"),
        ("a\nb", "a long passphrase", "GB"),
        ("office", "a long passphrase", "gb"),
    ]:
        with pytest.raises(Unrepresentable):
            wpa_supplicant_conf(ssid=ssid, psk=psk, country=country)
    assert networkd_file([("Match", [("Name", "wlan0")])]) == "[Match]\nName=wlan0\n"
    for value in ("wlan0\n[Network]", "x\\", " padded", "e*\x00"):
        with pytest.raises(Unrepresentable):
            networkd_file([("Match", [("Name", value)])])


def test_under_the_units_umask_what_others_read_stays_readable(boot: Path, tmp_path: Path) -> None:
    """linerec-provision.service runs with UMask=0077; the recorder (its own user), networkd
    and sshd must still read what they need, and only that."""
    root = tmp_path / "root"
    result = subprocess.run(
        [*LINEREC, "provision", "--site", str(boot / "linerec-site.toml"), "--root", str(root)],
        capture_output=True,
        text=True,
        umask=0o077,
    )
    assert result.returncode == 0, result.stderr

    def mode(path: str) -> int:
        return (root / path).stat().st_mode & 0o777

    for directory in ("etc/linerec", "etc/linerec/site", "etc/linerec/tls", "etc/systemd/network"):
        assert mode(directory) == 0o755, directory
    for public in (
        "etc/linerec/linerec.toml",
        "etc/linerec/site/collector.pub",
        "etc/linerec/site/ca.crt",
        "etc/systemd/network/20-linerec-ethernet.network",
        "etc/hostname",
        "etc/timezone",
    ):
        assert mode(public) == 0o644, public
    assert mode("etc/linerec/tls/device.key") == 0o600
    assert mode("root/.ssh") == 0o700
