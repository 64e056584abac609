"""Update bundles are checked with the real `rauc info` before anything is written: another
key, a cut or altered bundle, another board's bundle and an older release are each refused
with a message that says which, and a good bundle passes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from linerec.update.bundle import BundleRefused, check_bundle
from linerec.update.system import UpdateSetupError, read_system
from linerec.update.version import older, parse_version
from rauc_system import Signer, make_bundle, write_system_conf
from update_fixtures import signers  # noqa: F401


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory, signers: tuple[Signer, Signer]) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundles"), signers[0], version="1.3.0")


def refusal(path: Path, conf: Path, running: str = "1.2.0") -> BundleRefused:
    with pytest.raises(BundleRefused) as caught:
        check_bundle(path, read_system(conf), running)
    assert str(path) in str(caught.value)  # the message names the bundle
    return caught.value


def test_a_good_bundle_passes(tmp_path: Path, signers: tuple[Signer, Signer], good: Path) -> None:
    conf = write_system_conf(tmp_path, signers[0].ca)
    bundle = check_bundle(good, read_system(conf), "1.2.0")
    assert (bundle.version, bundle.compatible) == ("1.3.0", "linerec-rpi-arm64")
    assert bundle.size == good.stat().st_size


def test_another_key_is_refused(tmp_path: Path, signers: tuple[Signer, Signer]) -> None:
    conf = write_system_conf(tmp_path / "sys", signers[0].ca)
    foreign = make_bundle(tmp_path, signers[1], version="1.3.0")
    refused = refusal(foreign, conf)
    assert refused.kind == "untrusted"
    assert "not signed by this box's update certificate" in str(refused)


def test_a_truncated_bundle_is_refused(
    tmp_path: Path, signers: tuple[Signer, Signer], good: Path
) -> None:
    conf = write_system_conf(tmp_path / "sys", signers[0].ca)
    data = good.read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 10, 0):
        path = tmp_path / f"cut-{cut}.raucb"
        path.write_bytes(data[:cut])
        refused = refusal(path, conf)
        assert refused.kind == "truncated", (cut, str(refused))
        assert "truncated or not a RAUC bundle" in str(refused)


def test_an_altered_bundle_is_refused(
    tmp_path: Path, signers: tuple[Signer, Signer], good: Path
) -> None:
    conf = write_system_conf(tmp_path / "sys", signers[0].ca)
    data = bytearray(good.read_bytes())
    # the squashfs header, its payload, the signature at the end
    for offset in (0, 100, len(data) // 2, len(data) - 600):
        altered = bytearray(data)
        altered[offset] ^= 0x01
        path = tmp_path / f"altered-{offset}.raucb"
        path.write_bytes(bytes(altered))
        refused = refusal(path, conf)
        assert refused.kind == "altered", (offset, str(refused))
        assert "do not match its signature" in str(refused)


def test_another_boards_bundle_is_refused(tmp_path: Path, signers: tuple[Signer, Signer]) -> None:
    conf = write_system_conf(tmp_path / "sys", signers[0].ca)
    other = make_bundle(tmp_path, signers[0], version="1.3.0", compatible="linerec-x86-64")
    refused = refusal(other, conf)
    assert refused.kind == "incompatible"
    assert "'linerec-x86-64'" in str(refused) and "'linerec-rpi-arm64'" in str(refused)


def test_an_older_bundle_is_refused(tmp_path: Path, signers: tuple[Signer, Signer]) -> None:
    conf = write_system_conf(tmp_path / "sys", signers[0].ca)
    old = make_bundle(tmp_path, signers[0], version="1.1.9")
    refused = refusal(old, conf, running="1.2.0")
    assert refused.kind == "older"
    assert "1.1.9 is older than the running 1.2.0" in str(refused)
    # the same release again is allowed (a repair), a newer one of course
    assert check_bundle(old, read_system(conf), "1.1.9").version == "1.1.9"
    assert check_bundle(old, read_system(conf), "1.1").version == "1.1.9"


def test_a_bundle_without_a_release_version_is_refused(
    tmp_path: Path, signers: tuple[Signer, Signer]
) -> None:
    conf = write_system_conf(tmp_path / "sys", signers[0].ca)
    odd = make_bundle(tmp_path, signers[0], version="latest")
    assert refusal(odd, conf).kind == "no-version"


def test_a_missing_bundle_is_refused(tmp_path: Path, signers: tuple[Signer, Signer]) -> None:
    conf = write_system_conf(tmp_path / "sys", signers[0].ca)
    assert refusal(tmp_path / "nothing.raucb", conf).kind == "missing"


def test_versions_compare_as_numbers() -> None:
    assert parse_version("0.10.0") == (0, 10, 0)
    assert older((0, 9, 3), (0, 10, 0)) and not older((0, 10, 0), (0, 9, 3))
    assert older((1, 2), (1, 2, 1)) and not older((1, 2, 0), (1, 2))
    for text in ("", "1.", "v1.2", "1.2.3.4.5", "1.2-rc1", " 1.2"):
        assert parse_version(text) is None, text


def test_a_broken_system_conf_is_named(tmp_path: Path) -> None:
    conf = tmp_path / "system.conf"
    conf.write_text("[system]\nbootloader=uboot\n")
    with pytest.raises(UpdateSetupError, match=r"system.conf: \[system\] compatible is missing"):
        read_system(conf)
    with pytest.raises(UpdateSetupError, match=r"not a readable RAUC system\.conf"):
        read_system(tmp_path / "absent.conf")


def test_a_box_without_unsquashfs_says_so_instead_of_blaming_the_bundle(
    tmp_path: Path, signers: tuple[Signer, Signer], good: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seen under QEMU: Debian's rauc only suggests squashfs-tools, and `rauc info` on a box
    # without unsquashfs failed; the good bundle was reported "truncated".
    conf = write_system_conf(tmp_path / "sys", signers[0].ca)
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "rauc").symlink_to(shutil.which("rauc") or "/usr/bin/rauc")
    monkeypatch.setenv("PATH", str(bare))
    refused = refusal(good, conf)
    assert refused.kind == "tool"
    assert "unsquashfs" in str(refused) and "not the bundle's fault" in str(refused)
