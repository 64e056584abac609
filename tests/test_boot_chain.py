"""RAUC and U-Boot together, for real: RAUC's `uboot` bootloader backend writes the slot order
and tries with fw_setenv (libubootenv) into uboot.env, and the image's own boot script
(image/files/boot.cmd, made into boot.scr with mkimage) runs in Debian's qemu_arm64 U-Boot
under qemu-system-aarch64 from a FAT partition holding that uboot.env.

There is no kernel on the slots, so every boot "fails" and U-Boot resets (QEMU exits:
-no-reboot): exactly a slot that never comes up. What is checked is which slot each boot
picks and what the counters are afterwards: a new slot gets three tries, then the old one
boots again; marking good restores the tries; after a rollback mark-active puts the old slot
first. The flash environment only saves the autoboot delay and says where boot.scr is."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rauc_system import RaucService, make_bundle, make_signer, write_system_conf

REPO = Path(__file__).resolve().parent.parent
UBOOT = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")
MTOOLS = dict(os.environ, MTOOLS_SKIP_CHECK="1")
BOOT_START = 2048  # sectors: the FAT partition holding boot.scr and uboot.env
FLASH_ENV = (
    "bootdelay=0\n"
    "bootcmd=virtio scan; setenv devtype virtio; setenv devnum 0; setenv distro_bootpart 1; "
    "load virtio 0:1 ${scriptaddr} boot.scr; source ${scriptaddr}\n"
    "scriptaddr=0x40200000\nkernel_addr_r=0x40400000\nramdisk_addr_r=0x44000000\n"
    "fdt_addr=0x40000000\n"
)


def run(*cmd: str, **kwargs: object) -> str:
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    return str(done.stdout)


class Card:
    """A disk like the image's (boot FAT, slots A and B, data), with U-Boot to boot it."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True)
        self.disk = directory / "disk.img"
        self.env = directory / "uboot.env"  # the environment file RAUC edits (the box's copy)
        self.fw_config = directory / "fw_env.config"
        self.fw_config.write_text(f"{self.env} 0x0000 0x4000\n")
        (directory / "env.txt").write_text("BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n")
        run("mkenvimage", "-s", "0x4000", "-o", str(self.env), str(directory / "env.txt"))
        run(
            "mkimage",
            "-A",
            "arm64",
            "-T",
            "script",
            "-C",
            "none",
            "-n",
            "linerec",
            "-d",
            str(REPO / "image/files/boot.cmd"),
            str(directory / "boot.scr"),
        )
        self.disk.write_bytes(b"")
        os.truncate(self.disk, 48 << 20)
        run(
            "sfdisk",
            "-q",
            str(self.disk),
            input=(
                "label: dos\nlabel-id: 0x4c494e45\n"
                "start=2048, size=32768, type=c, bootable\n"
                "start=34816, size=8192, type=83\nstart=43008, size=8192, type=83\n"
                "start=51200, size=8192, type=83\n"
            ),
        )
        boot = directory / "boot.fs"
        run("mkfs.vfat", "-n", "LINERECBOOT", "-C", str(boot), "16384")
        run("mcopy", "-i", str(boot), str(directory / "boot.scr"), "::/", env=MTOOLS)
        run(
            "dd",
            f"if={boot}",
            f"of={self.disk}",
            "bs=512",
            f"seek={BOOT_START}",
            "conv=notrunc",
            "status=none",
        )
        (directory / "flash-env.txt").write_text(FLASH_ENV)
        flash_env = directory / "flash-env.bin"
        run("mkenvimage", "-s", "0x40000", "-o", str(flash_env), str(directory / "flash-env.txt"))
        self.flash = directory / "flash1.img"
        self.flash.write_bytes(b"")
        os.truncate(self.flash, 64 << 20)
        with self.flash.open("r+b") as f:
            f.write(flash_env.read_bytes())
        # RAUC finds fw_setenv/fw_printenv on its PATH: these use this card's configuration.
        self.bin = directory / "bin"
        self.bin.mkdir()
        for tool in ("fw_setenv", "fw_printenv"):
            wrapper = self.bin / tool
            wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/{tool} -c {self.fw_config} "$@"\n')
            wrapper.chmod(0o755)

    def variables(self) -> dict[str, str]:
        out = run("fw_printenv", "-c", str(self.fw_config))
        return dict(line.split("=", 1) for line in out.splitlines())

    def boot(self) -> str:
        """Put the box's uboot.env on the card, power on, read back what U-Boot wrote; the
        line where the boot script says which slot it boots."""
        image = f"{self.disk}@@{BOOT_START * 512}"
        run("mcopy", "-o", "-i", image, str(self.env), "::/uboot.env", env=MTOOLS)
        console = subprocess.run(
            [
                "qemu-system-aarch64",
                "-M",
                "virt",
                "-cpu",
                "cortex-a53",
                "-m",
                "512",
                "-nographic",
                "-no-reboot",
                "-bios",
                str(UBOOT),
                "-drive",
                f"if=pflash,unit=1,format=raw,file={self.flash}",
                "-drive",
                f"if=none,file={self.disk},format=raw,id=hd",
                "-device",
                "virtio-blk-pci,drive=hd",
                "-nic",
                "none",
            ],
            capture_output=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            check=False,
        ).stdout.decode(errors="replace")
        run("mcopy", "-o", "-i", image, "::/uboot.env", str(self.env), env=MTOOLS)
        lines = [line.strip() for line in console.splitlines() if line.startswith("linerec:")]
        assert lines, console[-2000:]
        return lines[0]


@pytest.fixture
def card(tmp_path: Path) -> Iterator[Card]:
    yield Card(tmp_path / "card")


def rauc_on(card: Card, tmp_path: Path, booted: str) -> RaucService:
    signer = make_signer(tmp_path / "keys")
    conf = write_system_conf(tmp_path / f"system-{booted}", signer.ca)
    conf.write_text(conf.read_text().replace("bootloader=noop", "bootloader=uboot"))
    service = RaucService(conf.parent, conf, booted=booted, path=f"{card.bin}:{os.environ['PATH']}")
    service.signer = signer  # type: ignore[attr-defined]
    return service.start()


def test_a_new_slot_that_never_comes_up_gets_three_tries_then_the_old_one_boots(
    card: Card, tmp_path: Path
) -> None:
    assert card.boot() == "linerec: booting slot A (order A B; tries left A 2, B 3)"
    service = rauc_on(card, tmp_path, "A")
    try:
        run("rauc", "status", "mark-good", "booted")  # A came up: its tries back
        assert card.variables()["BOOT_A_LEFT"] == "3"
        bundle = make_bundle(tmp_path, service.signer, version="2.0.0")  # type: ignore[attr-defined]
        run("rauc", "install", str(bundle))
    finally:
        service.stop()
    assert card.variables() == {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}
    boots = [card.boot() for _ in range(4)]
    assert boots == [
        "linerec: booting slot B (order B A; tries left A 3, B 2)",
        "linerec: booting slot B (order B A; tries left A 3, B 1)",
        "linerec: booting slot B (order B A; tries left A 3, B 0)",
        "linerec: booting slot A (order B A; tries left A 2, B 0)",  # fallen back
    ]
    # back on A, linerec reports the rollback and puts A first again (mark-active)
    service = rauc_on(card, tmp_path, "A")
    try:
        run("rauc", "status", "mark-active", "booted")
    finally:
        service.stop()
    assert card.variables()["BOOT_ORDER"] == "A B"
    assert card.boot() == "linerec: booting slot A (order A B; tries left A 2, B 0)"


def test_a_new_slot_marked_good_keeps_its_tries(card: Card, tmp_path: Path) -> None:
    service = rauc_on(card, tmp_path, "A")
    try:
        run("rauc", "install", str(make_bundle(tmp_path, service.signer, version="2.0.0")))  # type: ignore[attr-defined]
    finally:
        service.stop()
    assert card.boot() == "linerec: booting slot B (order B A; tries left A 3, B 2)"
    service = rauc_on(card, tmp_path, "B")  # B came up: linerec marks it good
    try:
        run("rauc", "status", "mark-good", "booted")
    finally:
        service.stop()
    assert card.variables() == {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}
    assert card.boot() == "linerec: booting slot B (order B A; tries left A 3, B 2)"


def test_when_every_slot_is_used_up_both_get_their_tries_again(card: Card) -> None:
    run("fw_setenv", "-c", str(card.fw_config), "BOOT_A_LEFT", "0")
    run("fw_setenv", "-c", str(card.fw_config), "BOOT_B_LEFT", "0")
    assert card.boot() == "linerec: no slot has tries left; giving each 3 again"
    assert card.variables() == {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}
