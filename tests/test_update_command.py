"""The signed `update` command: refused unless signed, fresh and not replayed; and end to end,
`linerec collector command box1 update --url URL` reaching a running recorder (TLS broker,
real `rauc service` on a private bus) that fetches the bundle over loopback HTTP, installs it
into slot B while recording goes on, reports it, and asks for the reboot once idle. Then
`linerec update install` on the box."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from enrolled import Site
from linerec.mqttapi import ApiError, sign
from linerec.update.state import UpdateState
from linerec.uplink.commands import Command, command_body
from rauc_system import SLOT_BYTES, RaucService, Signer, make_bundle
from test_commands import COLLECTOR, gate
from update_fixtures import service, signers, web  # noqa: F401

LINEREC = [sys.executable, "-m", "linerec.cli"]
URL = "https://updates.example.net/linerec-1.3.0.raucb"


def update(counter: int, key: Ed25519PrivateKey = COLLECTOR, **arguments: str) -> bytes:
    return sign(key, command_body("box1", counter, "update", **(arguments or {"url": URL})))


def test_a_signed_update_command_is_accepted(tmp_path: Path) -> None:
    assert gate(tmp_path).check(update(1), "t") == Command(
        counter=1, action="update", arguments={"url": URL}
    )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("forged", "bad signature"),
        ("no-url", "update needs url"),
        ("empty-url", "update needs url"),
    ],
)
def test_an_unsigned_or_incomplete_update_command_is_refused(
    tmp_path: Path, case: str, message: str
) -> None:
    # made here, not at collection: a command lives 300 s, and the suite takes longer
    payload = {
        "forged": lambda: update(1, key=Ed25519PrivateKey.generate()),
        "no-url": lambda: sign(COLLECTOR, command_body("box1", 1, "update")),
        "empty-url": lambda: update(1, url=""),
    }[case]()
    with pytest.raises(ApiError, match=message):
        gate(tmp_path).check(payload, "t")
    assert not (tmp_path / "counter").exists()


def test_a_replayed_update_command_is_refused_even_after_a_restart(tmp_path: Path) -> None:
    first = update(7)
    gate(tmp_path).check(first, "t")
    with pytest.raises(ApiError, match="replayed: counter 7 is not above 7"):
        gate(tmp_path).check(first, "t")


def test_an_expired_update_command_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ApiError, match="expired at"):
        gate(tmp_path, clock=time.time() + 3600).check(update(1), "t")


# -- end to end ----------------------------------------------------------------------------


class Log:
    """A process's stderr, line by line, and a wait for a line with some text."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.changed = threading.Condition()
        assert process.stderr is not None
        self._thread = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()

    def wait_for(self, text: str, timeout: float = 60) -> str:
        with self.changed:
            found = self.changed.wait_for(
                lambda: next((line for line in self.lines if text in line), None), timeout
            )
        assert found, f"no {text!r} within {timeout:g} s:\n{''.join(self.lines[-30:])}"
        return str(found)


def command(site: Site, tmp_path: Path, url: str) -> subprocess.CompletedProcess[str]:
    collector_config = site.collector_config(tmp_path / "central")
    return subprocess.run(
        [
            *LINEREC,
            "collector",
            "command",
            "box1",
            "update",
            "--url",
            url,
            "--config",
            str(collector_config),
            "--timeout",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_collector_updates_a_running_box(
    enrolled_site: Site,
    tmp_path: Path,
    service: RaucService,
    signers: tuple[Signer, Signer],
    web: tuple[str, Path],
) -> None:
    url, www = web
    make_bundle(www, signers[0], version="9.0.0", name="good.raucb")
    make_bundle(www, signers[1], version="9.0.0", name="foreign.raucb")
    update = f'[update]\nsystem_conf = "{service.conf}"\nmax_wait_s = 600\n'
    config = enrolled_site.sim_box_config("box1", tmp_path, update)
    daemon = subprocess.Popen(
        [*LINEREC, "run", "--config", str(config)], text=True, stderr=subprocess.PIPE
    )
    log = Log(daemon)
    try:
        log.wait_for("linerec running")
        log.wait_for("updates: running")
        # another key: refused on the box, nothing written
        sent = command(enrolled_site, tmp_path, f"{url}/foreign.raucb")
        assert sent.returncode == 0, sent.stderr
        assert "box1: update done" in sent.stdout  # the install began
        refused = log.wait_for("update_refused")
        assert "untrusted" in refused and "foreign.raucb" in refused
        assert (service.directory / "rootB.img").read_bytes() == b"\0" * SLOT_BYTES
        # the release key: installed into B, then the reboot asked for (no call: idle)
        sent = command(enrolled_site, tmp_path, f"{url}/good.raucb")
        assert sent.returncode == 0, sent.stderr
        installed = log.wait_for("update_installed")
        assert "version=9.0.0" in installed and "slot=B" in installed
        log.wait_for("update_rebooting")
        assert (service.directory / "rootB.img").read_bytes().startswith(b"linerec root 9.0.0")
        assert UpdateState(tmp_path / "ring").reboot_requested()
        pending = UpdateState(tmp_path / "ring").pending()
        assert pending is not None and (pending.version, pending.slot) == ("9.0.0", "B")
    finally:
        daemon.terminate()
        daemon.wait(20)


def test_update_install_on_the_box(
    tmp_path: Path, service: RaucService, signers: tuple[Signer, Signer]
) -> None:
    config = tmp_path / "linerec.toml"
    config.write_text(
        f'[store]\ndir = "{tmp_path / "ring"}"\n[update]\nsystem_conf = "{service.conf}"\n'
    )
    foreign = make_bundle(tmp_path, signers[1], version="9.0.0", name="foreign.raucb")
    done = subprocess.run(
        [*LINEREC, "update", "install", str(foreign), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "update refused" in done.stderr and "not signed by this box's update certificate" in (
        done.stderr
    )
    assert "nothing was changed" in done.stderr
    assert (service.directory / "rootB.img").read_bytes() == b"\0" * SLOT_BYTES

    good = make_bundle(tmp_path, signers[0], version="9.0.0", name="good.raucb")
    done = subprocess.run(
        [*LINEREC, "update", "install", str(good), "--config", str(config), "--no-reboot"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "update_installed" in done.stdout
    assert "9.0.0 installed in slot B" in done.stdout
    assert (service.directory / "rootB.img").read_bytes().startswith(b"linerec root 9.0.0")
    status = subprocess.run(
        [*LINEREC, "update", "status", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "from slot A" in status.stdout and "pending: 9.0.0 in slot B" in status.stdout
