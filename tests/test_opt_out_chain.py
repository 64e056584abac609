"""Issue 16, defect 3: an opted-out call is deliberately absent from the device's chain.

End to end, as a site runs it: `linerec simulate` on an appliance with an [uplink] (events
queue on the card), a real mosquitto, `linerec collector run`, `linerec uplink flush`, then
`linerec collector chain`. The call opted out after its notice had begun a recording, so its
sequence number was taken; the collector must show that number as opted out, not as a
recording that has not arrived, and the next recording must still follow on from it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import databases
from broker import Mosquitto
from collectors import CollectorProcess
from linerec.store.keys import keygen
from linerec.store.ring import Entry, read_entry

LINEREC = [sys.executable, "-m", "linerec.cli"]

# Three inbound calls on line1: one recorded (seq 1); one that opts out by key just after the
# notice (a recording had begun: seq 2 was taken); one recorded (seq 3).
RECORDED = """
[[call]]
line = "line1"
[[call.step]]
at = {at}
ring = 1
[[call.step]]
wait = 0.5
[[call.step]]
off_hook = true
[[call.step]]
wait = 6.5
[[call.step]]
say = "caller"
seconds = 2.0
[[call.step]]
on_hook = true
"""
OPTED_OUT = """
[[call]]
line = "line1"
[[call.step]]
at = 20.0
ring = 1
[[call.step]]
wait = 0.5
[[call.step]]
off_hook = true
[[call.step]]
wait = 6.5
[[call.step]]
say = "caller"
seconds = 1.0
[[call.step]]
dtmf = "9"
[[call.step]]
say = "office"
seconds = 1.0
[[call.step]]
on_hook = true
"""

pytestmark = pytest.mark.usefixtures("engine")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path).start()
    yield mosquitto
    mosquitto.stop()


def seq(entry: Entry) -> int:
    return entry.seq


def linerec(*arguments: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LINEREC, *arguments], capture_output=True, text=True, timeout=timeout)


def test_an_opted_out_call_is_a_deliberate_absence_at_the_collector(
    tmp_path: Path, broker: Mosquitto
) -> None:
    keygen(tmp_path / "keys")
    appliance = tmp_path / "linerec.toml"
    appliance.write_text(
        '[device]\nid = "box1"\n[store]\ndir = "ring"\nrecipients = ["keys/collector.pub"]\n'
        f'[uplink]\nbroker = "{broker.url}"\nallow_plaintext = true\n'
        '[[line]]\nconsent = "notice"\nopt_out_key = "9"\nopt_out_window_s = 5\n'
    )
    collector_toml = tmp_path / "collector.toml"
    collector_toml.write_text(
        f'[collector]\nbroker = "{broker.url}"\nallow_plaintext = true\ndata_dir = "central"\n'
        'key = "keys/collector.key"\n' + databases.selected.config_line(tmp_path / "central")
    )
    callfile = tmp_path / "calls.toml"
    callfile.write_text(RECORDED.format(at=0.0) + OPTED_OUT + RECORDED.format(at=40.0))

    simulated = linerec("simulate", str(callfile), "--json", "--config", str(appliance))
    assert simulated.returncode == 0, simulated.stderr
    events = [json.loads(line) for line in simulated.stdout.splitlines()]
    names = [e["event"] for e in events]
    assert names.count("recording_started") == 3 and names.count("opted_out") == 1
    assert [e["recorded"] for e in events if e["event"] == "hung_up"] == [True, False, True]
    (deleted,) = [e for e in events if e["event"] == "recording_deleted"]
    assert (deleted["recording_seq"], deleted["reason"]) == (2, "opted-out")
    first, last = sorted((read_entry(p) for p in (tmp_path / "ring").glob("*.lrec")), key=seq)
    assert (first.seq, last.seq) == (1, 3)
    assert deleted["prev"] == first.header_hash  # the chain runs through the absent number
    assert deleted["header_hash"] not in ("", first.header_hash, last.header_hash)

    collector = CollectorProcess(collector_toml)
    try:
        collector.wait_for("collector subscribed")
        flush = linerec("uplink", "flush", "--config", str(appliance), "--timeout", "30")
        assert flush.returncode == 0, flush.stderr
        assert "everything acknowledged" in flush.stdout
    finally:
        log = collector.stop()
    assert "have not arrived" not in log and "does not follow on" not in log, log
    assert "WARNING" not in log, log

    chain = linerec("collector", "chain", "--json", "--config", str(collector_toml))
    assert chain.returncode == 0, chain.stderr
    links = [json.loads(line) for line in chain.stdout.splitlines()]
    assert [(link["seq"], link["state"]) for link in links] == [
        (1, "stored"),
        (2, "opted-out"),
        (3, "stored"),
    ]
    assert [link["id"] for link in links] == [first.id, deleted["id"], last.id]
    assert [link["follows_on"] for link in links] == [True, True, True]
    assert {link["device"] for link in links} == {"box1"}
    text = linerec("collector", "chain", "--config", str(collector_toml))
    assert text.returncode == 0, text.stderr
    assert "opted-out" in text.stdout and "have not arrived" not in text.stdout


def test_an_absence_links_into_the_chain_in_any_order(tmp_path: Path) -> None:
    from linerec.collector.store import CollectorStore

    store = CollectorStore(tmp_path / "central", databases.selected.location(tmp_path / "c.db"))
    assert store.follow_chain("box1", 1, "", "h1") == ""
    # seq 3 arrives before the event that says seq 2 was opted out: a gap, for now ...
    assert "recordings 2..2 have not arrived" in store.follow_chain("box1", 3, "h2", "h3")
    # ... then the absence fills it, and both neighbours check against it
    assert store.absent("box1", 2, "box1-2", "opted-out", "h1", "h2") == ""
    assert store.absent("box1", 2, "box1-2", "opted-out", "h1", "h2") == ""  # redelivered
    assert [(r["seq"], r["state"], r["follows_on"]) for r in store.chain("box1")] == [
        (1, "deleted", True),  # linked, but no recording row here
        (2, "opted-out", True),
        (3, "deleted", True),
    ]
    # an absence whose hashes do not fit is said, not hidden
    assert "does not follow on" in store.absent("box1", 4, "box1-4", "opted-out", "hX", "h4")
    assert store.absent("box1", True, "box1-6", "opted-out", "h5", "h6") != ""  # not a number
    assert "have not arrived" in store.follow_chain("box1", 6, "h5", "h6")
    report = store.chain("box1")
    assert [(r["seq"], r["state"]) for r in report][-3:] == [
        (4, "opted-out"),
        (5, "missing"),
        (6, "deleted"),
    ]
    assert report[3]["follows_on"] is False
