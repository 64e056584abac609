"""The trial watchdog (image/files/linerec-trial-watchdog, issue 17 item 4): a boot of a new slot
that linerec never marks good is rebooted after `[update] trial_timeout_s`, so U-Boot spends
the slot's tries and falls back by itself; every other boot is left alone.

The image's own script runs as a real process under Debian's python3, in a mount namespace
whose root is a box's tree: the data partition's update directory and /etc/linerec are
directories of the test, /proc/cmdline and the boot id are files of the test bound over the
real ones. Only the reboot itself is simulated: `systemctl` in that root writes down how it was
called (a test cannot reboot the machine it runs on).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from linerec.config import DEFAULT_STORE
from linerec.update.state import REBOOT, Pending, UpdateState

REPO = Path(__file__).resolve().parent.parent
WATCHDOG = REPO / "image/files/linerec-trial-watchdog"
INSTALL_BOOT = "0f5e0e0c-1111-4a4a-8b8b-000000000001"
THIS_BOOT = "0f5e0e0c-2222-4a4a-8b8b-000000000002"

# Run in a private mount namespace (nothing mounted here is seen outside it): a root of the
# host's /usr, /dev and /proc, with the box's files bound in, then the watchdog in it.
ENTER = r"""
set -eu
R=$1 BOX=$2
mkdir -p "$R/usr" "$R/dev" "$R/proc" "$R/etc" "$R/var/lib/linerec" "$R/tmp" "$R/opt"
ln -sfn usr/bin "$R/bin"; ln -sfn usr/lib "$R/lib"; ln -sfn usr/lib64 "$R/lib64"
mount --bind /usr "$R/usr"
mount --rbind /dev "$R/dev"
mount --rbind /proc "$R/proc"
mount --bind "$BOX/cmdline" "$R/proc/cmdline"
mount --bind "$BOX/boot_id" "$R/proc/sys/kernel/random/boot_id"
mount --bind "$BOX/systemctl" "$R/usr/bin/systemctl"
mount --bind "$BOX/etc-linerec" "$R/etc"
mount --bind "$BOX/data" "$R/var/lib/linerec"
exec chroot "$R" /usr/bin/python3 /opt/linerec-trial-watchdog
"""


@dataclass
class Box:
    dir: Path

    @property
    def state(self) -> UpdateState:
        """Where linerec keeps the update, on the box's data directory (bound at
        /var/lib/linerec): under the store's default directory, as the image runs it."""
        return UpdateState(self.dir / "data" / DEFAULT_STORE.relative_to("/var/lib/linerec"))

    @property
    def pending(self) -> Path:
        return self.state.dir / "pending.json"

    @property
    def calls(self) -> Path:
        return self.dir / "data/systemctl-calls"

    def boot(self, slot: str, boot_id: str = THIS_BOOT) -> None:
        (self.dir / "cmdline").write_text(
            f"root=PARTUUID=4c494e45-0{2 if slot == 'A' else 3} ro rootwait rauc.slot={slot}\n"
        )
        (self.dir / "boot_id").write_text(boot_id + "\n")

    def start(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                ENTER,
                "sh",
                str(self.dir / "root"),
                str(self.dir),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self) -> tuple[int, str, str]:
        process = self.start()
        out, err = process.communicate(timeout=60)
        return process.returncode, out, err


def make_box(tmp_path: Path, *, pending_slot: str | None, timeout: str | None) -> Box:
    """A box whose update to 0.2.0 went into `pending_slot` in the boot INSTALL_BOOT."""
    box = Box(tmp_path)
    (tmp_path / "root/opt").mkdir(parents=True)
    shutil.copy(WATCHDOG, tmp_path / "root/opt/linerec-trial-watchdog")
    (tmp_path / "data").mkdir(parents=True)
    (tmp_path / "etc-linerec/linerec").mkdir(parents=True)
    config = '[device]\nid = "frontdesk"\n'
    if timeout is not None:
        config += f"\n[update]\ntrial_timeout_s = {timeout}\n"
    (tmp_path / "etc-linerec/linerec/linerec.toml").write_text(config)
    # The reboot: written down where the test can see it (the data partition's directory).
    (tmp_path / "systemctl").write_text(
        '#!/bin/sh\necho "$*" >> /var/lib/linerec/systemctl-calls\n'
    )
    (tmp_path / "systemctl").chmod(0o755)
    if pending_slot is not None:  # written by linerec's own code, as the recorder does
        box.state.set_pending(
            Pending(
                version="0.2.0",
                slot=pending_slot,
                previous="0.1.0",
                previous_slot="A" if pending_slot == "B" else "B",
                boot_id=INSTALL_BOOT,
            )
        )
    return box


def test_a_trial_boot_never_marked_good_is_rebooted_after_the_configured_time(
    tmp_path: Path,
) -> None:
    box = make_box(tmp_path, pending_slot="B", timeout="1")
    box.boot("B")
    code, out, err = box.run()
    assert code == 0, err
    assert "trial boot of 0.2.0 in slot B: rebooting unless it is marked good within 1 s" in out
    assert "slot B not marked good within 1 s: rebooting" in out
    assert box.calls.read_text() == "reboot\n"
    assert box.pending.exists()  # the verdict is U-Boot's and the old slot's, not the watchdog's


def test_a_trial_boot_marked_good_in_time_is_left_running(tmp_path: Path) -> None:
    box = make_box(tmp_path, pending_slot="B", timeout="600")
    box.boot("B")
    process = box.start()
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "trial boot of 0.2.0 in slot B" in line and "within 600 s" in line, line
    box.pending.unlink()  # what linerec does once READY and connected (marked good)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "marked good" in out
    assert not box.calls.exists()


def test_without_a_setting_the_trial_lasts_fifteen_minutes(tmp_path: Path) -> None:
    box = make_box(tmp_path, pending_slot="A", timeout=None)
    box.boot("A")
    process = box.start()
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "trial boot of 0.2.0 in slot A: rebooting unless it is marked good within 900 s" in (
        line
    ), line
    box.pending.unlink()
    process.communicate(timeout=60)
    assert not box.calls.exists()


def test_the_boot_of_the_install_and_the_old_slot_are_no_trial(tmp_path: Path) -> None:
    # In the boot that installed the update the recorder has yet to ask for the reboot; back
    # on the old slot (the new one used up its tries) linerec reports the rollback: neither
    # is the watchdog's to reboot.
    for slot, boot_id, case in (
        ("A", INSTALL_BOOT, "install"),
        ("B", INSTALL_BOOT, "install-other"),
        ("A", THIS_BOOT, "old slot"),
    ):
        box = make_box(tmp_path / case, pending_slot="B", timeout="1")
        box.boot(slot, boot_id)
        code, out, err = box.run()
        assert code == 0 and out == "" and err == "", (case, out, err)
        assert not box.calls.exists(), case
        assert box.pending.exists(), case


def test_an_ordinary_boot_or_a_pending_file_cut_short_is_no_trial(tmp_path: Path) -> None:
    box = make_box(tmp_path / "none", pending_slot=None, timeout="1")
    box.boot("B")
    assert box.run() == (0, "", "")
    cut = make_box(tmp_path / "cut", pending_slot="B", timeout="1")
    cut.pending.write_text(cut.pending.read_text()[:20])  # a power cut while it was written
    cut.boot("B")
    assert cut.run() == (0, "", "")
    assert not box.calls.exists() and not cut.calls.exists()


def test_a_setting_that_is_not_a_positive_number_falls_back_to_the_default(
    tmp_path: Path,
) -> None:
    for value in ('"soon"', "0", "-5", "true"):
        box = make_box(tmp_path / value.strip('"-'), pending_slot="B", timeout=value)
        box.boot("B")
        process = box.start()
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "within 900 s" in line, (value, line)
        box.pending.unlink()
        process.communicate(timeout=60)
        assert not box.calls.exists()


def test_the_reboot_units_watch_the_file_the_recorder_writes() -> None:
    """The recorder asks for the reboot into an update with a file (it may not reboot);
    root's path unit must watch, and its service remove, exactly that file."""
    request = UpdateState(DEFAULT_STORE).dir / REBOOT
    path_unit = (REPO / "image/files/linerec-update-reboot.path").read_text()
    service = (REPO / "image/files/linerec-update-reboot.service").read_text()
    assert f"PathExists={request}\n" in path_unit
    assert f"ExecStart=/bin/rm -f {request}\n" in service
