"""`linerec run` as systemd runs it: a real NOTIFY_SOCKET, the watchdog, SIGTERM mid-call."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import clip, find
from linerec.daemon.notify import Notifier
from linerec.store.keys import keygen, load_private
from linerec.store.reader import Decrypted, IntegrityError, decrypt


def kept(tmp_path: Path) -> Decrypted:
    (path,) = (tmp_path / "ring").glob("*.lrec")
    return decrypt(path.read_bytes(), load_private(tmp_path / "keys" / "collector.key"))


LINEREC = [sys.executable, "-m", "linerec.cli"]


class NotifySocket:
    """The listening end of sd_notify, as systemd has it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, str]] = []

    def wait_for(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, message in self.messages:
                if text in message:
                    return message
            self.receive(deadline - time.monotonic())
        raise AssertionError(f"no {text!r} within {timeout} s; got {[m for _, m in self.messages]}")

    def receive(self, timeout: float) -> None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return
        self.messages.append((time.monotonic(), data.decode()))

    def collect(self, seconds: float) -> list[tuple[float, str]]:
        start = len(self.messages)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.receive(deadline - time.monotonic())
        return self.messages[start:]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.close()


def daemon_config(tmp_path: Path, call: str, consent: str = "one-party") -> Path:
    """A simulated line playing `call`, its recordings encrypted to a fresh collector key."""
    (tmp_path / "call.toml").write_text(call)
    if not (tmp_path / "keys").exists():
        keygen(tmp_path / "keys")
    config = tmp_path / "linerec.toml"
    config.write_text(
        f'[hardware]\nbackend = "sim"\n[store]\ndir = "{tmp_path / "ring"}"\n'
        'recipients = ["keys/collector.pub"]\n'
        f'[sim]\ncalls = ["call.toml"]\nspeed = 1.0\n[[line]]\nconsent = "{consent}"\n'
    )
    return config


def start_daemon(
    tmp_path: Path, notify: NotifySocket, call: str, consent: str = "one-party"
) -> subprocess.Popen[str]:
    config = daemon_config(tmp_path, call, consent)
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="200000")
    return subprocess.Popen(
        [*LINEREC, "run", "--config", str(config)],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


CALL = """
[[call]]
[[call.step]]
at = 0.5
off_hook = true
[[call.step]]
say = "caller"
[[call.step]]
on_hook = true
"""


def test_ready_status_watchdog_and_sigterm_mid_call(tmp_path: Path, notify: NotifySocket) -> None:
    daemon = start_daemon(tmp_path, notify, CALL)
    try:
        ready = notify.wait_for("READY=1")
        assert "STATUS=line1 idle" in ready
        notify.wait_for("STATUS=line1 recording")
        pings = [m for _, m in notify.collect(1.5) if m == "WATCHDOG=1"]
        assert len(pings) >= 8  # every 0.1 s for WATCHDOG_USEC=0.2 s
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=10)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, stderr
    notify.wait_for("STOPPING=1")
    recording = kept(tmp_path)
    assert recording.inspected.state == "complete"
    metadata = recording.metadata
    assert metadata["ended_by"] == "shutdown"
    assert 1.5 < metadata["duration"] < 7.0  # stopped mid-sentence
    audio = recording.samples
    assert len(audio) / 8000 == pytest.approx(metadata["duration"], abs=0.001)
    # Everything up to the stop is there and intact: it is the start of what the caller said.
    offset, snr = find(audio, clip("caller")[: len(audio) - 800])
    assert offset == 0
    assert snr > 30
    assert "recording_sealed" in stderr


def test_no_watchdog_pings_once_capture_is_stuck(tmp_path: Path, notify: NotifySocket) -> None:
    call = CALL.replace(
        'say = "caller"', 'say = "caller"\nseconds = 1.0\n[[call.step]]\nstall = true'
    )
    daemon = start_daemon(tmp_path, notify, call)
    try:
        notify.wait_for("READY=1")
        notify.wait_for("audio fault", timeout=10)
        after = notify.collect(1.5)
        assert [m for _, m in after if m == "WATCHDOG=1"] == []
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=10)
    finally:
        daemon.kill()
    before = [m for _, m in notify.messages if m == "WATCHDOG=1"]
    assert len(before) >= 5  # it did ping while capture was alive
    assert daemon.returncode == 0, stderr
    assert "capture stalled on line line1" in stderr
    # What was recorded before the stall is sealed, not lost.
    assert kept(tmp_path).metadata["duration"] == pytest.approx(1.0, abs=0.05)


def test_run_refuses_a_bad_config_with_its_location(tmp_path: Path) -> None:
    config = tmp_path / "linerec.toml"
    config.write_text("[[line]]\nhook_pin = 99\n")
    result = subprocess.run(
        [*LINEREC, "run", "--config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert f"{config}:2: line[0].hook_pin: must be a BCM GPIO number 0-27 (got 99)" in result.stderr


def test_gpio_backend_off_a_pi_says_what_is_missing(tmp_path: Path) -> None:
    config = tmp_path / "linerec.toml"
    config.write_text(f'[store]\ndir = "{tmp_path}"\n')
    result = subprocess.run(
        [*LINEREC, "run", "--config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "[hardware] backend = 'gpio' needs RPi.GPIO (pip install 'linerec[pi]'" in result.stderr


@pytest.mark.parametrize("name", ["linerec.service", "linerec-provision.service"])
def test_unit_files_pass_systemd_analyze_verify(tmp_path: Path, name: str) -> None:
    # verify insists the ExecStart binary exists: point it at the linerec we are testing.
    linerec = Path(sys.executable).with_name("linerec")
    unit = Path(__file__).parents[1] / "systemd" / name
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/usr/bin/linerec", str(linerec)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


SYSTEMD = Path(__file__).parents[1] / "systemd"
DROP_IN = Path(__file__).parents[1] / "image/files/provision-readonly-root.conf"


def _unit_copy(tmp_path: Path, name: str) -> Path:
    """The unit as installed, in a directory of its own, with the image's drop-in for the
    provisioning unit; ExecStart points at the linerec under test (verify wants it to exist)."""
    linerec = Path(sys.executable).with_name("linerec")
    copy = tmp_path / "units" / name
    copy.parent.mkdir()
    copy.write_text((SYSTEMD / name).read_text().replace("/usr/bin/linerec", str(linerec)))
    if name == "linerec-provision.service":
        drop_ins = copy.parent / f"{name}.d"
        drop_ins.mkdir()
        (drop_ins / "readonly-root.conf").write_text(DROP_IN.read_text())
    return copy


def test_provisioning_with_the_images_drop_in_passes_verify(tmp_path: Path) -> None:
    copy = _unit_copy(tmp_path, "linerec-provision.service")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


# Exposure as `systemd-analyze security` rates it (0 best, 10 worst): the daemon faces the
# network and the sound card, provisioning reads a file anyone with the card may have written.
EXPOSURE_LIMITS = {"linerec.service": 3.0, "linerec-provision.service": 5.0}
# What each unit must keep, whatever else changes (json_field names of the analysis).
REQUIRED = (
    "NoNewPrivileges",
    "ProtectSystem",
    "PrivateTmp",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectClock",
    "ProtectControlGroups",
    "RestrictNamespaces_user",
    "RestrictAddressFamilies_AF_PACKET",
    "RestrictAddressFamilies_AF_NETLINK",
    "RestrictAddressFamilies_OTHER",
    "CapabilityBoundingSet_CAP_SYS_ADMIN",
    "CapabilityBoundingSet_CAP_SYS_MODULE",
    "CapabilityBoundingSet_CAP_NET_ADMIN",
    "SystemCallFilter_mount",
    "SystemCallFilter_module",
    "SystemCallFilter_reboot",
    "SystemCallFilter_debug",
    "SystemCallArchitectures",
    "MemoryDenyWriteExecute",
    "UMask",
)


@pytest.mark.parametrize("name", sorted(EXPOSURE_LIMITS))
def test_units_are_sandboxed(tmp_path: Path, name: str) -> None:
    import json
    import re

    copy = _unit_copy(tmp_path, name)
    limit = EXPOSURE_LIMITS[name]
    analyze = ["systemd-analyze", "security", "--offline=true", "--no-pager"]
    # --threshold is on the analysis's internal 0-100 scale.
    held = subprocess.run(
        [*analyze, f"--threshold={round(limit * 10)}", str(copy)], capture_output=True, text=True
    )
    overall = re.search(r"Overall exposure level for \S+: (\d+\.\d)", held.stdout)
    assert overall, held.stdout + held.stderr
    assert held.returncode == 0, f"{name}: exposure {overall.group(1)} > {limit}"
    assert float(overall.group(1)) <= limit
    table = subprocess.run(
        [*analyze, "--json=short", str(copy)], capture_output=True, text=True, check=True
    )
    unset = [row["json_field"] for row in json.loads(table.stdout) if not row["set"]]
    assert not set(REQUIRED) & set(unset), sorted(set(REQUIRED) & set(unset))


def test_the_daemon_keeps_what_it_needs() -> None:
    """The sandbox leaves the recorder its devices, its store, its network and its watchdog."""
    unit = (SYSTEMD / "linerec.service").read_text()
    directives = [line for line in unit.splitlines() if line and not line.startswith("#")]
    for needed in (
        "User=linerec",
        "SupplementaryGroups=audio gpio",
        "DevicePolicy=closed",
        "DeviceAllow=char-alsa rw",
        "DeviceAllow=char-gpiochip rw",
        "DeviceAllow=/dev/gpiomem rw",
        "ReadWritePaths=/var/lib/linerec",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet=",
        "UMask=0077",
        "Type=notify",
        "WatchdogSec=10",
        # glibc's default raises the mmap threshold after the first large free, so later
        # large blocks stay in the heap for good: fixed, the recorder peaks 1 MB lower.
        "Environment=MALLOC_MMAP_THRESHOLD_=131072",
    ):
        assert needed in directives, needed
    # /run stays readable (the time-sync flag, the notify socket): nothing hides it.
    assert not any(
        d.startswith(("InaccessiblePaths=", "TemporaryFileSystem=")) and "/run" in d
        for d in directives
    )
    assert "ProcSubset=pid" not in directives  # RPi.GPIO reads /proc/device-tree


def test_the_daemon_unit_is_watched() -> None:
    unit = (Path(__file__).parents[1] / "systemd" / "linerec.service").read_text()
    assert "Type=notify" in unit
    assert "WatchdogSec=" in unit


def test_power_cut_mid_call_then_restart_recovers_the_recording(
    tmp_path: Path, notify: NotifySocket
) -> None:
    daemon = start_daemon(tmp_path, notify, CALL)
    try:
        notify.wait_for("STATUS=line1 recording")
        notify.collect(2.5)
        daemon.send_signal(signal.SIGKILL)  # no chance to seal: as good as pulling the plug
        daemon.wait(10)
    finally:
        daemon.kill()
    (path,) = (tmp_path / "ring").glob("*.lrec")
    with pytest.raises(IntegrityError, match="no trailer and no cut marker"):
        decrypt(path.read_bytes(), load_private(tmp_path / "keys" / "collector.key"))
    notify.messages.clear()
    restarted = start_daemon(tmp_path, notify, "[[call]]\n[[call.step]]\nwait = 1.0\n")
    try:
        notify.wait_for("READY=1")
        restarted.send_signal(signal.SIGTERM)
        _, stderr = restarted.communicate(timeout=10)
    finally:
        restarted.kill()
    assert "ended_by=power-loss" in stderr
    recording = kept(tmp_path)
    assert recording.inspected.state == "cut"
    assert recording.inspected.end["reason"] == "power-loss"  # type: ignore[index]
    # What the call was survives the cut: it was written with the header, before any audio.
    assert (recording.metadata["line"], recording.metadata["consent"]) == ("line1", "one-party")
    assert recording.metadata["ended_by"] is None
    # chunks are synced every half second: at most that, plus the delay line, is missing
    audio = recording.samples
    assert len(audio) / 8000 >= 1.5
    offset, snr = find(audio, clip("caller")[: len(audio) - 800])
    assert (offset, snr > 30) == (0, True)


def test_run_refuses_to_start_without_a_recipient(tmp_path: Path) -> None:
    config = tmp_path / "linerec.toml"
    config.write_text(f'[hardware]\nbackend = "sim"\n[store]\ndir = "{tmp_path / "ring"}"\n')
    result = subprocess.run(
        [*LINEREC, "run", "--config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "store.recipients: no recipient: name at least one collector .pub file" in result.stderr


# What `linerec run` must not load when its configuration does not ask for it (issue 19: the
# daemon's memory and start-up): MQTT and the uplink without an `[uplink]`, the collector
# never, the update installer without RAUC set up, the store's reader (decryption is the
# collector's) and cryptography's key serialization (PEM, SSH, X.509: the appliance's keys
# are raw bytes), python-systemd (sd_notify is one datagram; libsystemd with it is 1.7 MB).
# (cryptography's backend module is not on the list: its own X25519 key loading imports it.)
# Nor the standard library's shutil (with bz2, lzma and their libraries: 0.5 MB), which
# argparse's help formatter imports for the terminal's width, or tempfile, which atomic writes
# used for one exclusive create. (random stays: cryptography's backend, above, imports it.)
NOT_FOR_THE_RECORDER = (
    "paho",
    "linerec.uplink",
    "linerec.collector",
    "linerec.update",
    "linerec.store.reader",
    "cryptography.hazmat.primitives.serialization",
    "cryptography.x509",
    "bcrypt",
    "systemd",
    "shutil",
    "bz2",
    "lzma",
    "tempfile",
)


def test_run_without_uplink_or_updates_loads_only_the_recorder(
    tmp_path: Path, notify: NotifySocket
) -> None:
    listed = tmp_path / "modules.txt"
    code = (
        "import atexit, sys\n"
        "def listing() -> None:\n"
        f"    open({str(listed)!r}, 'w').write('\\n'.join(sorted(sys.modules)))\n"
        "atexit.register(listing)\n"
        "from linerec.cli import main\n"
        "sys.exit(main())\n"
    )
    config = daemon_config(tmp_path, "[[call]]\n[[call.step]]\nwait = 30.0\n")
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path))
    daemon = subprocess.Popen(
        [sys.executable, "-c", code, "run", "--config", str(config)],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        notify.wait_for("READY=1")
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=10)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, stderr
    modules = listed.read_text().split()
    assert "linerec.daemon.recorder" in modules and "numpy" in modules  # it did run
    loaded = [
        m for m in modules if any(m == p or m.startswith(f"{p}.") for p in NOT_FOR_THE_RECORDER)
    ]
    assert loaded == [], loaded


def test_notify_reaches_a_socket_in_the_abstract_namespace(tmp_path: Path) -> None:
    name = f"linerec-notify-{os.getpid()}-{tmp_path.name}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind("\0" + name)
    listener.settimeout(10)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": f"@{name}", "WATCHDOG_USEC": "10000000"})
        notifier.ready("line1 idle")
        notifier.watchdog()
        assert listener.recv(4096) == b"READY=1\nSTATUS=line1 idle"
        assert listener.recv(4096) == b"WATCHDOG=1"
    finally:
        listener.close()
    assert notifier.watchdog_interval == 10.0


def test_notify_with_nobody_listening_says_so_once_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gone = tmp_path / "gone.sock"
    notifier = Notifier({"NOTIFY_SOCKET": str(gone)})
    notifier.ready("line1 idle")
    notifier.watchdog()
    notifier.stopping("stopping")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(gone) in warnings[0]
