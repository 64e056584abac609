"""The collector's and the console's systemd units (systemd/linerec-collector.service and
linerec-console.service): `systemd-analyze verify` passes them, `systemd-analyze security`
rates them as tight as the appliance's, each keeps what its program needs, and the collector's
tells systemd no more than the collector does (Type=notify only if it sends READY=1)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from broker import Mosquitto
from collectors import CollectorProcess
from streamed import collector_toml
from test_daemon import REQUIRED, NotifySocket, notify  # noqa: F401

ROOT = Path(__file__).parents[1]
SYSTEMD = ROOT / "systemd"
UNITS = ("linerec-collector.service", "linerec-console.service")
COMMANDS = {
    "linerec-collector.service": "collector run",
    "linerec-console.service": "collector web",
}
DATA_DIR = "/var/lib/linerec-collector"
# Exposure as `systemd-analyze security` rates it (0 best, 10 worst): both parse what others
# send them (appliances; browsers), as the appliance's daemon does (held at 3.0).
EXPOSURE_LIMIT = 2.0


def unit_copy(tmp_path: Path, name: str) -> Path:
    """The unit in a directory of its own, ExecStart pointing at the linerec under test
    (verify wants the program to exist)."""
    linerec = Path(sys.executable).with_name("linerec")
    copy = tmp_path / "units" / name
    copy.parent.mkdir(exist_ok=True)
    copy.write_text((SYSTEMD / name).read_text().replace("/usr/bin/linerec", str(linerec)))
    return copy


def directives(name: str) -> list[str]:
    lines = (SYSTEMD / name).read_text().splitlines()
    return [line for line in lines if line and not line.startswith(("#", "["))]


def setting(name: str, key: str) -> str:
    (value,) = [d.split("=", 1)[1] for d in directives(name) if d.startswith(f"{key}=")]
    return value


@pytest.mark.parametrize("name", UNITS)
def test_the_units_pass_systemd_analyze_verify(tmp_path: Path, name: str) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit_copy(tmp_path, name))],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.parametrize("name", UNITS)
def test_the_units_are_sandboxed(tmp_path: Path, name: str) -> None:
    copy = unit_copy(tmp_path, name)
    analyze = ["systemd-analyze", "security", "--offline=true", "--no-pager"]
    held = subprocess.run(
        [*analyze, f"--threshold={round(EXPOSURE_LIMIT * 10)}", str(copy)],
        capture_output=True,
        text=True,
    )
    overall = re.search(r"Overall exposure level for \S+: (\d+\.\d)", held.stdout)
    assert overall, held.stdout + held.stderr
    assert held.returncode == 0, f"{name}: exposure {overall.group(1)} > {EXPOSURE_LIMIT}"
    table = subprocess.run(
        [*analyze, "--json=short", str(copy)], capture_output=True, text=True, check=True
    )
    unset = {row["json_field"] for row in json.loads(table.stdout) if not row["set"]}
    assert not set(REQUIRED) & unset, sorted(set(REQUIRED) & unset)


@pytest.mark.parametrize("name", UNITS)
def test_each_unit_keeps_what_its_program_needs(name: str) -> None:
    """Its own user, the data directory writable (and nothing else), the network, a restart
    after a failure, and the configuration every `linerec collector` command reads."""
    found = directives(name)
    for needed in (
        "User=linerec-collector",
        "Group=linerec-collector",
        "StateDirectory=linerec-collector",
        f"ReadWritePaths={DATA_DIR}",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet=",
        "Restart=on-failure",
    ):
        assert needed in found, needed
    assert setting(name, "ExecStart") == (
        f"/usr/bin/linerec {COMMANDS[name]} --config /etc/linerec/collector.toml"
    )
    assert not any(d.startswith(("DynamicUser=yes", "PrivateNetwork=yes")) for d in found)


def test_the_docs_data_dir_is_the_one_the_units_may_write() -> None:
    for doc in ("docs/scale.md", "docs/database.md"):
        text = (ROOT / doc).read_text()
        assert f'data_dir = "{DATA_DIR}"' in text or f"{DATA_DIR}/collector.db" in text, doc
        assert 'data_dir = "/var/lib/linerec"' not in text, doc  # the appliance's directory


def test_the_collector_unit_waits_for_ready_only_if_the_collector_sends_it(
    tmp_path: Path, notify: NotifySocket
) -> None:
    """`linerec collector run` as systemd starts it, with a real NOTIFY_SOCKET: the unit is
    Type=notify exactly when the collector says READY=1 once it receives (a notify unit
    whose program never says so is killed when its start times out); either way STATUS= gets
    through (NotifyAccess=main) for a database outage to show in `systemctl status`."""
    broker = Mosquitto(tmp_path).start()
    config = collector_toml(tmp_path, broker)
    collector = CollectorProcess(config, env=dict(os.environ, NOTIFY_SOCKET=str(notify.path)))
    try:
        collector.wait_for("collector subscribed: receiving")
        collector.process.send_signal(signal.SIGTERM)
        assert collector.process.wait(30) == 0, collector.text()
    finally:
        collector.kill()
        broker.stop()
    notify.sock.setblocking(False)  # the process is gone: all it sent is queued here
    sent = []
    while True:
        try:
            sent.append(notify.sock.recv(4096).decode())
        except BlockingIOError:
            break
    name = "linerec-collector.service"
    says_ready = any("READY=1" in message.split("\n") for message in sent)
    assert (setting(name, "Type") == "notify") == says_ready, (setting(name, "Type"), sent)
    assert setting(name, "NotifyAccess") == "main"
