"""An update's new slot boots as the same box: RAUC's post-install handler (the image's own
script, run by the real `rauc service`) mounts the ext4 slot it wrote and carries the site's
set-up into it; the booted slot and the data partition are not written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from linerec.update.carry import carry_over
from linerec.update.installer import Updater
from linerec.update.state import UpdateState
from linerec.update.system import read_system
from rauc_system import RaucService, make_bundle, make_signer, write_system_conf

REPO = Path(__file__).resolve().parent.parent
LINEREC = Path(sys.executable).parent / "linerec"
RECORDER = 4321  # a uid/gid standing for the recorder's user


def provisioned_root(root: Path) -> Path:
    """A root filesystem as provisioning leaves it (the parts that matter here)."""
    (root / "etc/linerec/site").mkdir(parents=True)
    (root / "etc/linerec/linerec.toml").write_text('[device]\nid = "frontdesk"\n')
    (root / "etc/linerec/site/collector.pub").write_text("collector key\n")
    (root / "etc/linerec/tls").mkdir()
    (root / "etc/linerec/tls/device.key").write_text("the recorder's own key\n")
    os.chmod(root / "etc/linerec/tls/device.key", 0o600)
    if os.geteuid() == 0:  # as provisioning hands it to the recorder's user
        os.chown(root / "etc/linerec/tls", RECORDER, RECORDER)
        os.chown(root / "etc/linerec/tls/device.key", RECORDER, RECORDER)
    os.chmod(root / "etc/linerec/site", 0o700)
    (root / "etc/linerec/provisioned.json").write_text('{"site_sha256": "ab"}\n')
    (root / "etc/wpa_supplicant").mkdir()
    (root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf").write_text("psk=secret\n")
    os.chmod(root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf", 0o600)
    (root / "etc/ssh").mkdir()
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("host key\n")
    (root / "etc/ssh/sshd_config").write_text("image's own\n")
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "etc/hostname").write_text("frontdesk\n")
    (root / "etc/localtime").symlink_to("/usr/share/zoneinfo/Europe/Berlin")
    return root


def pristine_root(root: Path) -> Path:
    """The image's tree, as a bundle carries it."""
    (root / "etc/linerec").mkdir(parents=True)
    (root / "etc/ssh").mkdir()
    (root / "etc/ssh/sshd_config").write_text("new release's own\n")
    (root / "etc/hostname").write_text("linerec\n")
    (root / "etc/machine-id").write_text("")
    (root / "usr").mkdir()
    (root / "usr/release").write_text("9.0.0\n")
    return root


def test_the_site_set_up_is_carried_and_nothing_else(tmp_path: Path) -> None:
    source = provisioned_root(tmp_path / "a")
    target = pristine_root(tmp_path / "b")
    done = carry_over(source, target)
    assert "carried /etc/linerec/linerec.toml" in done
    assert (target / "etc/linerec/linerec.toml").read_text() == '[device]\nid = "frontdesk"\n'
    assert (target / "etc/linerec/site/collector.pub").read_text() == "collector key\n"
    assert (target / "etc/linerec/site").stat().st_mode & 0o777 == 0o700
    assert (target / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf").stat().st_mode & 0o777 == 0o600
    assert (target / "etc/ssh/ssh_host_ed25519_key").read_text() == "host key\n"
    key = (target / "etc/linerec/tls/device.key").stat()
    assert key.st_mode & 0o777 == 0o600
    if os.geteuid() == 0:  # copied by root (RAUC's handler), still the recorder's
        assert (key.st_uid, key.st_gid) == (RECORDER, RECORDER)
        assert (target / "etc/linerec/tls").stat().st_uid == RECORDER
    assert (target / "etc/ssh/sshd_config").read_text() == "new release's own\n"  # not the site's
    assert (target / "etc/hostname").read_text() == "frontdesk\n"
    assert os.readlink(target / "etc/localtime") == "/usr/share/zoneinfo/Europe/Berlin"
    assert (target / "usr/release").read_text() == "9.0.0\n"
    # again (a repeated install): the same result
    carry_over(source, target)
    assert (target / "etc/linerec/linerec.toml").read_text() == '[device]\nid = "frontdesk"\n'


def test_rauc_runs_the_images_post_install_handler_on_the_new_slot(tmp_path: Path) -> None:
    signer = make_signer(tmp_path / "keys")
    running = provisioned_root(tmp_path / "running")
    script = (REPO / "image/files/rauc-post-install").read_text()
    assert '/usr/bin/linerec update carry-over "$mnt"' in script
    handler = tmp_path / "post-install"
    handler.write_text(
        script.replace(
            '/usr/bin/linerec update carry-over "$mnt"',
            f'{LINEREC} update carry-over --source {running} "$mnt"',
        )
    )
    handler.chmod(0o755)
    conf = write_system_conf(tmp_path / "system", signer.ca, kind="ext4", post_install=handler)
    bundle = make_bundle(tmp_path, signer, version="9.0.0", tree=pristine_root(tmp_path / "new"))
    service = RaucService(tmp_path / "system", conf).start()
    try:
        events: list[object] = []
        pending = Updater(
            system=read_system(conf),
            state=UpdateState(tmp_path / "data"),
            running_version="1.0.0",
            emit=events.append,
            clock=lambda: 0.0,
        ).install_file(bundle)
        assert pending is not None, events
    finally:
        service.stop()
    slot_b = tmp_path / "system/rootB.img"
    listing = subprocess.run(
        ["debugfs", "-R", "cat /etc/linerec/linerec.toml", str(slot_b)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert listing == '[device]\nid = "frontdesk"\n'
    release = subprocess.run(
        ["debugfs", "-R", "cat /usr/release", str(slot_b)], capture_output=True, text=True
    ).stdout
    assert release == "9.0.0\n"
    assert (tmp_path / "system/rootA.img").read_bytes() == b"\0" * (2 * 1024 * 1024)
