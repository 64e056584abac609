"""A call opted out after the daemon was restarted mid-call: the parts before the restart go too.

`linerec run` is killed mid-call (SIGKILL: a crash, or systemd's watchdog) and systemd starts it
again while the line stays off hook. The recording that was open is cut by recovery and the call
goes on in a new recording. The daemon kept, on the card, which recordings the call in progress
has (calls.json, noted in this boot), so when the caller then opts out, the part recorded before
the restart is deleted on the card with reason `opted-out`, reported, and crypto-shredded by the
collector, as for a part split off by a stall. Not when the line was seen on hook at the restart
(the call ended while the daemon was down), nor when the note is from another boot (a power
loss: the line off hook after it may be another call): then the earlier recording is its own
call's and stays.

A real mosquitto and collector; the hardware is the simulated line.
"""

from __future__ import annotations

import functools
import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from broker import Mosquitto
from calls import run_simulated, wait_until
from linerec.collector.service import Collector
from linerec.daemon.callnotes import NOTES
from linerec.store.keys import keygen
from test_streaming import LINEREC, central, daemon_site, opt_out  # noqa: F401  (central: the fixture)

STILL_OFF_HOOK = "at = 0.0\noff_hook = true"  # the line's state when the daemon starts
TALKING = 'say = "caller"\nseconds = 60.0'  # on past anything the test waits for


def on_card(root: Path) -> set[str]:
    return {path.name.removesuffix(".lrec") for path in (root / "ring").glob("*.lrec")}


def killed_mid_call(
    root: Path, broker: Mosquitto, collector: Collector, how: signal.Signals = signal.SIGKILL
) -> str:
    """`linerec run` answers a call, streams some of it, and is killed (`how`): the part's id."""
    config = daemon_site(root, broker, ["at = 0.5\noff_hook = true", TALKING])
    daemon = subprocess.Popen([*LINEREC, "run", "--config", str(config)], stderr=subprocess.PIPE)
    try:
        wait_until(
            lambda: any(
                int(str(r["received"])) > 4096 for r in collector.store.uploads.in_progress()
            ),
            "the call streaming",
            timeout=60,
        )
    finally:
        daemon.send_signal(how)
        daemon.wait(20)
    (part,) = on_card(root)
    return part


def noted(root: Path) -> list[str]:
    """The parts of line1's call in progress, as the daemon noted them."""
    notes = root / "ring" / NOTES
    call = json.loads(notes.read_text()).get("line1") if notes.exists() else None
    return list(call["parts"]) if call else []


def opted_out_after_restart(
    root: Path,
    central: tuple[Mosquitto, Collector],
    part: str,
    line_at_start: str,
    done: Callable[[], bool],
) -> str:
    """`linerec run` started again (the line as `line_at_start` has it); once the part from
    before is stored at the collector and a call is recording, the collector opts line1 out;
    when `done`, the daemon stops. Its log."""
    broker, collector = central
    config = daemon_site(root, broker, [line_at_start, TALKING])
    daemon = subprocess.Popen([*LINEREC, "run", "--config", str(config)], stderr=subprocess.PIPE)
    try:
        wait_until(
            lambda: collector.store.stored("box1", part) is not None and len(on_card(root)) == 2,
            "the part from before stored and a call recording",
            timeout=60,
        )
        opt_out(root)
        wait_until(done, "the opt-out carried out", timeout=30)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, log = daemon.communicate(timeout=20)
    return log.decode(errors="replace")[-6000:]


@pytest.mark.parametrize(
    "how",
    [signal.SIGKILL, signal.SIGTERM],  # a crash; the watchdog's stop (the part sealed)
)
def test_an_opt_out_after_a_restart_mid_call_takes_back_the_part_before_it(
    tmp_path: Path, central: tuple[Mosquitto, Collector], how: signal.Signals
) -> None:
    broker, collector = central
    part = killed_mid_call(tmp_path, broker, collector, how)
    said = opted_out_after_restart(
        tmp_path,
        central,
        part,
        STILL_OFF_HOOK,
        lambda: (
            not on_card(tmp_path)
            and not collector.store.recordings()
            and bool(collector.store.deletions())
        ),
    )
    logged = [
        json.loads(line) for line in (tmp_path / "ring" / "ring.log").read_text().splitlines()
    ]
    assert (part, "opted-out") in [(line["id"], line["event"]) for line in logged], said
    (deletion,) = collector.store.deletions()
    assert (deletion["id"], deletion["reason"]) == (part, "opted-out"), said
    assert not list((tmp_path / "central").rglob(f"{part}*.lrec"))
    chain = {link["seq"]: link["state"] for link in collector.store.chain("box1")}
    assert chain[1] == "opted-out", chain
    # the line still off hook when it stopped: the call noted as opted out, nothing of it left
    (note,) = json.loads((tmp_path / "ring" / NOTES).read_text()).values()
    assert (note["parts"], note["opted_out"]) == ([], True)
    assert f"its parts before the restart: ['{part}']" in said


def test_after_a_restart_with_the_line_on_hook_an_opt_out_keeps_the_earlier_call(
    tmp_path: Path, central: tuple[Mosquitto, Collector]
) -> None:
    """The caller hung up while the daemon was down: the next call is another one."""
    broker, collector = central
    part = killed_mid_call(tmp_path, broker, collector)
    opted_out_after_restart(
        tmp_path,
        central,
        part,
        "at = 1.0\noff_hook = true",  # on hook at the start, then a new call
        lambda: on_card(tmp_path) == {part} and not collector.store.uploads.in_progress(),
    )
    assert [row["id"] for row in collector.store.recordings()] == [part]
    assert collector.store.deletions() == []


def test_a_note_from_another_boot_links_nothing(
    tmp_path: Path, central: tuple[Mosquitto, Collector]
) -> None:
    """A power loss mid-call: after it, the line off hook at start may be another call."""
    broker, collector = central
    part = killed_mid_call(tmp_path, broker, collector)
    notes = tmp_path / "ring" / NOTES
    noted = json.loads(notes.read_text())
    assert noted["line1"]["parts"] == [part]  # written when the part began
    noted["line1"]["boot"] = "0" * 32  # as a reboot would leave it
    notes.write_text(json.dumps(noted))
    opted_out_after_restart(
        tmp_path,
        central,
        part,
        STILL_OFF_HOOK,
        lambda: on_card(tmp_path) == {part} and not collector.store.uploads.in_progress(),
    )
    assert [row["id"] for row in collector.store.recordings()] == [part]
    assert collector.store.deletions() == []


def test_an_opt_out_by_key_after_a_restart_takes_the_part_before_it_off_the_card(
    tmp_path: Path,
) -> None:
    """Under a notice, restarted mid-call in an inbound call: the call goes on as inbound (no
    ring is seen after the restart), the notice plays again as the line is taken, and the
    caller presses the opt-out key during it. No uplink: the card alone."""
    keygen(tmp_path / "keys")

    run = functools.partial(run_logged, tmp_path)
    daemon, _ = run(["at = 0.5\nring = 1", "wait = 0.5", "off_hook = true", TALKING])  # inbound
    try:
        wait_until(lambda: noted(tmp_path) != [], "the call recording, its part noted", timeout=60)
    finally:
        daemon.kill()
        daemon.wait(10)
    (part,) = on_card(tmp_path)
    assert noted(tmp_path) == [part]
    daemon, lines = run([STILL_OFF_HOOK, "wait = 1.0", 'dtmf = "9"', TALKING])
    try:
        wait_until(lambda: not on_card(tmp_path), "the part before the restart gone", timeout=60)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(20)
    said = "".join(lines)[-6000:]
    wait_until(
        lambda: any(word in "".join(lines) for word in ("opted_out", "opted-out")),
        f"the opt-out in the daemon's log:\n{said}",
    )
    logged = (tmp_path / "ring" / "ring.log").read_text()
    assert f'"event": "opted-out", "id": "{part}"' in logged, said


NOTICE_LINE = '[[line]]\nconsent = "notice"\nopt_out_key = "9"\nopt_out_window_s = 5\n'


def run_logged(root: Path, steps: list[str]) -> tuple[subprocess.Popen[bytes], list[str]]:
    """`linerec run` on the simulated line (inbound key opt-out under a notice, no uplink)."""
    return run_simulated(root, steps, NOTICE_LINE)


def stopped_once_taken(daemon: subprocess.Popen[bytes], said: list[str]) -> None:
    """Wait until the restarted daemon has taken the call (opted it out, or begun recording
    it), then stop it as systemd does."""
    try:
        wait_until(
            lambda: any("opted_out" in line or "recording_started" in line for line in said),
            "the call taken again: opted out, or recording",
            timeout=60,
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(20)


def test_an_inbound_call_restarted_during_its_notice_still_offers_the_opt_out_key(
    tmp_path: Path,
) -> None:
    """Killed while the notice plays to an inbound caller (nothing recorded yet, so no part to
    note): the restarted daemon must still take the call as inbound, so the caller's opt-out
    key during the notice played again keeps nothing."""
    keygen(tmp_path / "keys")
    run = functools.partial(run_logged, tmp_path)
    daemon, said = run(["at = 0.5\nring = 1", "wait = 0.5", "off_hook = true", TALKING])
    try:
        wait_until(lambda: any("notice_started" in line for line in said), "the notice")
    finally:
        daemon.kill()
        daemon.wait(10)
    assert on_card(tmp_path) == set()  # killed before anything was kept
    daemon, said = run([STILL_OFF_HOOK, "wait = 1.0", 'dtmf = "9"', TALKING])
    stopped_once_taken(daemon, said)
    assert any("direction=inbound" in line for line in said), "".join(said)[-4000:]
    assert any("opted_out" in line for line in said), "".join(said)[-4000:]
    assert on_card(tmp_path) == set(), "".join(said)[-4000:]


def test_a_call_opted_out_before_a_restart_stays_opted_out_after_it(tmp_path: Path) -> None:
    """The caller opted out by key; the daemon is then killed while the call goes on: the
    restarted daemon, finding the line still off hook, must keep nothing more of that call."""
    keygen(tmp_path / "keys")
    steps = ["at = 0.5\nring = 1", "wait = 0.5", "off_hook = true", "wait = 1.0"]
    daemon, said = run_logged(tmp_path, [*steps, 'dtmf = "9"', TALKING])
    try:
        wait_until(lambda: any("opted_out" in line for line in said), "the opt-out")
    finally:
        daemon.kill()
        daemon.wait(10)
    assert on_card(tmp_path) == set()
    daemon, said = run_logged(tmp_path, [STILL_OFF_HOOK, TALKING])
    stopped_once_taken(daemon, said)
    assert not any("recording_started" in line for line in said), "".join(said)[-4000:]
    assert on_card(tmp_path) == set(), "".join(said)[-4000:]
