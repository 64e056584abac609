"""First boot survives a power cut (issue 17, item 7): provisioning cut at every point where it
makes something durable, then run again as the next boot does, ends as one clean run does,
and the site file (it may hold a Wi-Fi passphrase) never stays on the boot partition."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from linerec.cli import main
from linerec.collector.enroll import enroll
from linerec.provision import apply
from linerec.provision.site import RESULT_FILE
from linerec.store.keys import keygen
from linerec.uplink.tls import device_request

EXAMPLE = Path(__file__).parents[1] / "image" / "linerec-site.example.toml"


class PowerCut(Exception):
    pass


def make_boot(base: Path) -> Path:
    """A boot partition holding the example site file and the files it names."""
    boot = base / "boot"
    boot.mkdir(parents=True)
    shutil.copy(EXAMPLE, boot / "linerec-site.toml")
    _, public = keygen(base / "keys")
    shutil.copy(public, boot / "collector.pub")
    csr = device_request("bench-box", base / "bench")[1]
    enroll(csr, base / "ca-site", broker_names=["collector.example.net"])
    shutil.copy(base / "ca-site" / "ca.crt", boot / "ca.crt")
    return boot


def run(boot: Path, root: Path) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        status = main(["provision", "--site", str(boot / "linerec-site.toml"), "--root", str(root)])
    return status, out.getvalue()


def state(boot: Path, root: Path) -> dict[str, object]:
    """Every file and link under the root and on the boot partition, with its mode; what holds
    a time or a fresh key is compared by what must hold of it instead."""
    files: dict[str, object] = {}
    for base, name in ((root, "root"), (boot, "boot")):
        for path in sorted(base.rglob("*")):
            where = f"{name}/{path.relative_to(base)}"
            if path.is_symlink():
                files[where] = ("link", str(path.readlink()))
            elif path.is_file():
                data = path.read_bytes()
                if path.name == apply.MARKER:
                    data = json.dumps({**json.loads(data), "at": "-"}).encode()
                elif path.name == RESULT_FILE:
                    data = b"\n".join(data.split(b"\n")[1:])  # the first line has the time
                elif path.name == apply.JOURNAL:
                    # the last step's record may go with the power after the step itself:
                    # the site file gone from the boot partition is what says it was done
                    steps = set(json.loads(data)["done"]) - {"cleanup"}
                    data = json.dumps(sorted(steps)).encode()
                elif path.suffix == ".csr" or path.name == "device.key":
                    data = b"(a key or request: checked to match below)"
                data = data.replace(str(root).encode(), b"ROOT").replace(
                    str(boot).encode(), b"BOOT"
                )
                files[where] = (path.stat().st_mode & 0o777, data)
            elif path.is_dir():
                files[where] = ("dir", path.stat().st_mode & 0o777)
    return files


def key_matches_request(boot: Path, root: Path) -> bool:
    key = serialization.load_pem_private_key(
        (root / "etc/linerec/tls/device.key").read_bytes(), password=None
    )
    (csr_path,) = boot.glob("*.csr")
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*der) == csr.public_key().public_bytes(*der)


def test_a_cut_at_every_durable_point_then_the_next_boot_ends_as_one_clean_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = make_boot(tmp_path / "template")
    clean_boot = shutil.copytree(template, tmp_path / "clean" / "boot")
    points: list[str] = []
    real_sync = apply._sync_dir

    def counting(path: Path) -> None:
        points.append(str(path))
        real_sync(path)

    monkeypatch.setattr(apply, "_sync_dir", counting)
    assert run(clean_boot, tmp_path / "clean" / "root")[0] == 0
    monkeypatch.setattr(apply, "_sync_dir", real_sync)
    clean = state(clean_boot, tmp_path / "clean" / "root")
    assert not (clean_boot / "linerec-site.toml").exists()
    assert (clean_boot / RESULT_FILE).exists()
    assert len(points) > 20  # every file, rename and unlink is synced before the step is done

    for cut in range(len(points)):
        base = tmp_path / f"cut{cut}"
        boot, root = shutil.copytree(template, base / "boot"), base / "root"
        calls = 0

        def cutting(path: Path, cut: int = cut) -> None:
            nonlocal calls
            calls += 1
            if calls > cut:  # the power goes before this sync: nothing from here on is done
                raise PowerCut(f"cut before sync {cut} ({path})")
            real_sync(path)

        monkeypatch.setattr(apply, "_sync_dir", cutting)
        with pytest.raises(PowerCut):
            run(boot, root)
        monkeypatch.setattr(apply, "_sync_dir", real_sync)
        status, out = run(boot, root)  # the next boot
        assert status == 0, (cut, out)
        assert not (boot / "linerec-site.toml").exists(), cut
        assert state(boot, root) == clean, cut
        assert key_matches_request(boot, root), cut
        if (root / "etc/linerec" / apply.JOURNAL).exists():
            assert run(boot, root)[1].startswith(str(boot / "linerec-site.toml") + ": no site file")
        shutil.rmtree(base)


def test_what_an_earlier_version_left_after_a_cut_is_completed(tmp_path: Path) -> None:
    """The issue's case: provisioned.json on the card, the site file still on FAT, no result
    file, no journal. The next boot used to say "already set up from this file" for good."""
    boot, root = make_boot(tmp_path), tmp_path / "root"
    assert run(boot, root)[0] == 0
    clean = state(boot, root)
    shutil.copy(EXAMPLE, boot / "linerec-site.toml")
    (boot / RESULT_FILE).unlink()
    shutil.copy(tmp_path / "keys" / "collector.pub", boot / "collector.pub")
    (root / "etc/linerec" / apply.JOURNAL).unlink()
    status, out = run(boot, root)
    assert status == 0 and "provisioned from" in out
    assert state(boot, root) == clean
    # and a finished set-up's file put back is taken off again, not left there
    shutil.copy(EXAMPLE, boot / "linerec-site.toml")
    status, out = run(boot, root)
    assert status == 0 and "already set up from this file" in out
    assert not (boot / "linerec-site.toml").exists()
