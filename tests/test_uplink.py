"""Appliance to collector over a real mosquitto broker on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import databases
from broker import Mosquitto
from linerec.collector.config import load_collector_config
from linerec.collector.service import Collector
from linerec.config import load_config
from linerec.daemon.simulate import example_call, simulate
from linerec.store.keys import keygen
from linerec.store.ring import read_entry

LINEREC = [sys.executable, "-m", "linerec.cli"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path).start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
def site(tmp_path: Path, broker: Mosquitto, engine: str) -> dict[str, Path]:
    """An appliance and a collector (its database on the test's engine) on one broker."""
    keygen(tmp_path / "keys")
    appliance = tmp_path / "linerec.toml"
    appliance.write_text(
        '[device]\nid = "box1"\n[store]\ndir = "ring"\nrecipients = ["keys/collector.pub"]\n'
        f'[uplink]\nbroker = "{broker.url}"\nallow_plaintext = true\n'
    )
    collector = tmp_path / "collector.toml"
    collector.write_text(
        f'[collector]\nbroker = "{broker.url}"\nallow_plaintext = true\ndata_dir = "central"\n'
        'key = "keys/collector.key"\n' + databases.selected.config_line(tmp_path / "central")
    )
    return {"appliance": appliance, "collector": collector, "root": tmp_path}


def run_collector(config: Path) -> tuple[Collector, threading.Event, threading.Thread]:
    collector = Collector(
        load_collector_config(config), client_id=f"collector-{time.monotonic_ns()}"
    )
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    thread.start()
    assert collector.ready.wait(10)
    return collector, stop, thread


def run_flush(
    site: dict[str, Path], timeout: int | None = None
) -> subprocess.CompletedProcess[str]:
    """`linerec uplink flush` for the site's appliance, as an operator runs it."""
    extra = [] if timeout is None else ["--timeout", str(timeout)]
    return subprocess.run(
        [*LINEREC, "uplink", "flush", "--config", str(site["appliance"]), *extra],
        capture_output=True,
        text=True,
    )


def test_recordings_and_events_reach_the_collector_once(site: dict[str, Path]) -> None:
    config = load_config(site["appliance"])
    emitted: list[str] = []
    for call in ("inbound.toml", "outbound.toml"):  # two runs: the outbox is reopened between
        simulate(
            [example_call(call)],
            config=config,
            store_dir=None,
            emit=lambda e: emitted.append(e.name),
        )
    outbox = sorted((site["root"] / "ring" / "outbox").glob("*.json"))
    assert len(outbox) >= 12  # every event waits on the card
    collector, stop, thread = run_collector(site["collector"])
    try:
        flush = run_flush(site, timeout=30)
        assert flush.returncode == 0, flush.stderr
        assert "everything acknowledged" in flush.stdout
        # again: nothing is sent twice, nothing is stored twice
        again = run_flush(site, timeout=10)
        assert again.returncode == 0, again.stderr
    finally:
        stop.set()
        thread.join(10)
    assert list((site["root"] / "ring" / "outbox").glob("*.json")) == []
    ring = site["root"] / "ring"
    entries = [read_entry(p) for p in sorted(ring.glob("*.lrec"))]
    assert [e.acknowledged for e in entries] == [True, True]
    rows = collector.store.recordings()
    assert sorted(r["id"] for r in rows) == sorted(e.id for e in entries)
    inbound = next(r for r in rows if r["caller_number"])
    assert inbound["caller_number"] == "5551234567"
    assert next(r for r in rows if r["called_number"])["called_number"] == "5551234"
    seqs = [
        row[0]
        for row in collector.store.db.execute(
            "SELECT seq FROM events WHERE device = 'box1' ORDER BY seq"
        )
    ]
    assert seqs == list(range(1, len(outbox) + 1))
    bodies = [
        json.loads(row[0])
        for row in collector.store.db.execute(
            "SELECT body FROM events WHERE device = 'box1' ORDER BY seq"
        )
    ]
    assert [body["event"] for body in bodies] == emitted  # in order, across the restart
    # sealed on the card and on the wire, opened by the collector's key
    callerid = next(body for body in bodies if body["event"] == "callerid")
    assert (callerid["number"], callerid["caller_name"]) == ("5551234567", "JOHN DOE")
    assert "sealed" not in callerid
    listed = subprocess.run(
        [*LINEREC, "collector", "list", "--json", "--config", str(site["collector"])],
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(listed.stdout.splitlines()) == 2
    out = site["root"] / "export.wav"
    exported = subprocess.run(
        [
            *LINEREC,
            "collector",
            "export",
            inbound["id"],
            "--reason",
            "customer request #12",
            "-o",
            str(out),
            "--config",
            str(site["collector"]),
        ],
        capture_output=True,
        text=True,
    )
    assert exported.returncode == 0, exported.stderr
    assert json.loads(out.with_suffix(".json").read_text())["metadata"]["caller_name"] == "JOHN DOE"
    audit = collector.store.db.execute(
        "SELECT action, recording, reason FROM audit ORDER BY at"
    ).fetchall()
    assert [a[0] for a in audit] == ["list", "export"]
    assert audit[1][1:] == (inbound["id"], "customer request #12")


def test_personal_data_on_the_card_is_sealed_and_private(
    site: dict[str, Path], broker: Mosquitto
) -> None:
    """While the collector is away, caller ID waits on the card sealed to the collector's key,
    and everything the appliance makes under the store directory is 0600 in 0700, even when
    it runs with a permissive umask."""
    previous = os.umask(0)
    try:
        simulate(
            [example_call("inbound.toml")],
            config=load_config(site["appliance"]),
            store_dir=None,
            emit=lambda e: None,
        )
        collector, stop, thread = run_collector(site["collector"])
        try:  # the flush (with this umask too) adds its counter and progress files
            flush = run_flush(site, timeout=30)
            assert flush.returncode == 0, flush.stderr
        finally:
            stop.set()
            thread.join(10)
        simulate(  # and one more call that waits for the collector
            [example_call("inbound.toml")],
            config=load_config(site["appliance"]),
            store_dir=None,
            emit=lambda e: None,
        )
    finally:
        os.umask(previous)
    store = site["root"] / "ring"
    waiting = sorted((store / "outbox").glob("*.json"))
    bodies = [json.loads(path.read_bytes()) for path in waiting]
    callerid = next(body for body in bodies if body["event"] == "callerid")
    assert set(callerid) == {"seq", "device", "at", "t", "event", "line", "sealed"}
    for path in [store, *store.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        if path.is_dir():
            assert mode == 0o700, f"{path}: {mode:o}"
        else:
            assert mode == 0o600, f"{path}: {mode:o}"
            data = path.read_bytes()
            for personal in (b"5551234567", b"JOHN DOE", b"JOHN"):
                assert personal not in data, f"{path} holds {personal!r} in clear"
    stored = [
        json.loads(row[0])
        for row in collector.store.db.execute("SELECT body FROM events WHERE device = 'box1'")
    ]
    assert any(body.get("number") == "5551234567" for body in stored)


def test_the_main_loop_only_queues_events(
    site: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Emitting an event costs the main loop no fsync; the store's writer thread makes it
    durable, in order, and a clean stop writes everything queued."""
    from linerec.call.events import CallerIdHeard
    from linerec.daemon.storage import open_outbox, queueing

    syncs: list[str] = []
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name)

        def counted(fd: int, real: Any = real) -> None:
            syncs.append(threading.current_thread().name)
            real(fd)

        monkeypatch.setattr(os, name, counted)
    config = load_config(site["appliance"])
    outbox = open_outbox(config)
    report = queueing(lambda event: None, outbox, device_id="box1", t0=0.0)
    syncs.clear()
    for n in range(40):
        report(
            CallerIdHeard(
                t=float(n),
                line="line1",
                number=f"55512{n:05d}",
                caller_name="JOHN DOE",
                number_absent="",
                standard="bell202",
                in_call=False,
            )
        )
    assert syncs.count(threading.current_thread().name) == 0
    outbox.close()  # a clean stop
    assert syncs.count("store-writer") >= 2  # the events' files and their directory
    reopened = open_outbox(config)
    pending = reopened.pending()
    assert [seq for seq, _ in pending] == list(range(1, 41))
    assert all(b"5551" not in body for _, body in pending)
    reopened.close()


def test_paho_thread_neither_hashes_nor_syncs(
    site: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acks arrive on paho's network thread; checking them (a hash of the whole recording)
    and keeping them (fsync) happen on the store's writer thread."""
    import hashlib

    from linerec.daemon.storage import open_store, open_uplink

    config = load_config(site["appliance"])
    simulate([example_call("inbound.toml")], config=config, store_dir=None, emit=lambda e: None)
    work: list[tuple[str, str]] = []  # (what, thread)

    def watch(module: Any, name: str) -> None:
        real = getattr(module, name)

        def watched(*args: Any, **kwargs: Any) -> Any:
            work.append((name, threading.current_thread().name))
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, watched)

    for module, name in ((os, "fsync"), (os, "fdatasync"), (hashlib, "sha256")):
        watch(module, name)
    ring = open_store(config, emit=lambda e: None, clock=time.monotonic)
    uplink = open_uplink(config, ring)
    outbox = uplink.outbox
    last_event = max(seq for seq, _ in outbox.pending())
    events_acked, recording_acked = threading.Event(), threading.Event()
    acknowledge_events, acknowledge_recording = outbox.acknowledge, ring.acknowledge

    def events_ack(upto: int) -> int:
        gone = acknowledge_events(upto)
        if upto >= last_event:
            events_acked.set()
        return gone

    def recording_ack(recording_id: str, ack: bytes) -> None:
        acknowledge_recording(recording_id, ack)
        recording_acked.set()

    outbox.acknowledge = events_ack  # type: ignore[method-assign]
    ring.acknowledge = recording_ack  # type: ignore[method-assign]
    _collector, stop, thread = run_collector(site["collector"])
    uplink.start()
    try:
        assert events_acked.wait(30) and recording_acked.wait(30)
    finally:
        uplink.stop()
        stop.set()
        thread.join(10)
    paho = f"paho-mqtt-client-linerec-{config.uplink.device_id}"  # type: ignore[union-attr]
    assert [what for what, name in work if name == paho] == []
    on_writer = {what for what, name in work if name == "store-writer"}
    assert {"sha256", "fsync"} <= on_writer
    assert uplink.waiting() == (0, [])


def test_flush_with_no_collector_times_out_saying_what_waits(site: dict[str, Path]) -> None:
    simulate(
        [example_call("inbound.toml")],
        config=load_config(site["appliance"]),
        store_dir=None,
        emit=lambda e: None,
    )
    flush = run_flush(site, timeout=3)
    assert flush.returncode == 1
    assert "still waiting" in flush.stderr and "1 recording(s)" in flush.stderr


def test_flush_with_the_broker_down_says_so(site: dict[str, Path], broker: Mosquitto) -> None:
    simulate(
        [example_call("inbound.toml")],
        config=load_config(site["appliance"]),
        store_dir=None,
        emit=lambda e: None,
    )
    broker.stop()
    flush = run_flush(site, timeout=2)
    assert flush.returncode == 1
    assert "not connected to mqtt://127.0.0.1" in flush.stderr


def test_broker_outage_in_the_middle_loses_nothing(
    site: dict[str, Path], broker: Mosquitto
) -> None:
    config = load_config(site["appliance"])
    simulate([example_call("inbound.toml")], config=config, store_dir=None, emit=lambda e: None)
    collector, stop, thread = run_collector(site["collector"])
    try:
        broker.stop()
        simulate(
            [example_call("outbound.toml")], config=config, store_dir=None, emit=lambda e: None
        )
        broker.start()
        flush = run_flush(site, timeout=60)
        assert flush.returncode == 0, flush.stderr
    finally:
        stop.set()
        thread.join(10)
    assert len(collector.store.recordings()) == 2
    assert collector.store.gaps("box1") == []


def test_malformed_messages_are_named_and_change_nothing(
    site: dict[str, Path], broker: Mosquitto
) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    collector, stop, thread = run_collector(site["collector"])
    try:
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        for name, payload in (
            ("linerec/v1/box9/event", b"not json"),
            ("linerec/v1/box9/event", b'{"seq": -1}'),
            ("linerec/v1/box9/upload/x", b"piece without properties"),
        ):
            client.publish(name, payload, qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while len(collector.problems) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        client.loop_stop()
        client.disconnect()
    finally:
        stop.set()
        thread.join(10)
    assert collector.problems == [
        "linerec/v1/box9/event: not JSON: Expecting value: line 1 column 1 (char 0)",
        "linerec/v1/box9/event: an event needs a positive integer seq",
        "linerec/v1/box9/upload/x: upload needs offset, size and sha256 user properties",
    ]
    assert collector.store.recordings() == []


def test_sealed_fields_the_collector_cannot_open_are_named_and_kept(
    site: dict[str, Path], broker: Mosquitto
) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from linerec.store.keys import load_public
    from linerec.uplink.outbox import EventOutbox

    keygen(site["root"] / "other")
    record = {
        "device": "box1",
        "event": "callerid",
        "line": "line1",
        "t": 1.0,
        "at": "2026-11-25T14:15:03.120+00:00",
        "number": "5551234567",
    }
    sealed: dict[str, list[dict[str, Any]]] = {}
    for name, key in (("own", "keys"), ("other", "other")):
        outbox = EventOutbox(
            site["root"] / f"{name}-outbox",
            recipients=[load_public(site["root"] / key / "collector.pub")],
        )
        outbox.append(record)
        outbox.close()
        sealed[name] = [json.loads(body) for _, body in outbox.pending()]
    (good,), (foreign,) = sealed["own"], sealed["other"]
    moved = {**good, "seq": 2}  # event 1's sealed fields under another number
    foreign["seq"] = 3  # sealed to a key this collector does not hold
    collector, stop, thread = run_collector(site["collector"])
    try:
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        for body in (good, moved, foreign):
            client.publish("linerec/v1/box1/event", json.dumps(body), qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while collector.store.contiguous_seq("box1") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        client.loop_stop()
        client.disconnect()
    finally:
        stop.set()
        thread.join(10)
    assert collector.problems == [
        "linerec/v1/box1/event: event 2: its sealed fields do not open "
        "(altered, or sealed to another key): stored sealed",
        "linerec/v1/box1/event: event 3: its fields are not sealed to this collector's key "
        f"(kid {collector.settings.key.kid}): stored sealed",
    ]
    rows = [
        json.loads(row[0])
        for row in collector.store.db.execute(
            "SELECT body FROM events WHERE device = 'box1' ORDER BY seq"
        )
    ]
    assert rows[0]["number"] == "5551234567" and "sealed" not in rows[0]
    assert "number" not in rows[1] and "sealed" in rows[1] and "sealed" in rows[2]
    assert collector.store.contiguous_seq("box1") == 3  # kept and acknowledged all the same


def test_forged_or_misaddressed_acks_change_nothing(
    site: dict[str, Path], broker: Mosquitto
) -> None:
    import paho.mqtt.client as mqtt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from paho.mqtt.enums import CallbackAPIVersion

    from linerec.daemon.storage import open_store, open_uplink
    from linerec.mqttapi import sign
    from linerec.store.keys import load_private

    config = load_config(site["appliance"])
    simulate([example_call("inbound.toml")], config=config, store_dir=None, emit=lambda e: None)
    ring = open_store(config, emit=lambda e: None, clock=time.monotonic)
    problems: list[str] = []
    uplink = open_uplink(config, ring, on_problem=problems.append)
    (entry,) = ring.sealed()
    collector_key = load_private(site["root"] / "keys" / "collector.key").signing
    forged = sign(
        Ed25519PrivateKey.generate(), {"kind": "recording", "device": "box1", "id": entry.id}
    )
    elsewhere = sign(collector_key, {"kind": "events", "device": "box2", "upto": 999})
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    online, subscribed = threading.Event(), threading.Event()
    client.on_message = lambda *args: b'"online"' in args[2].payload and online.set()
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect("127.0.0.1", broker.port)
    client.subscribe("linerec/v1/box1/status", qos=1)
    client.loop_start()
    try:
        assert subscribed.wait(10)
        uplink.start()
        # The uplink says it is online after subscribing, on the same connection: once that
        # is here, so is its subscription (`connected` is set before the broker has it, and
        # an ack sent then went to no one: the forged one was missed once under load).
        assert online.wait(30), problems
        for payload in (forged, elsewhere, b"garbage"):
            client.publish("linerec/v1/box1/ack", payload, qos=1).wait_for_publish(10)
        deadline = time.monotonic() + 30
        while len(problems) < 3:
            assert time.monotonic() < deadline, problems
            time.sleep(0.05)
    finally:
        client.loop_stop()
        client.disconnect()
        uplink.stop()
    assert any("bad signature" in p for p in problems)
    assert any("ack for device 'box2', not 'box1'" in p for p in problems)
    assert any("not JSON" in p for p in problems)
    assert [e.id for e in ring.sealed()] == [entry.id]  # still waiting for a real ack
    assert len(uplink.outbox.pending()) > 0


def test_commands_reach_a_running_daemon(site: dict[str, Path], broker: Mosquitto) -> None:
    """`linerec run` on the simulated line, a call in progress; the collector pauses and
    resumes it (PCI), holds a recording, and a replayed command is refused, all by MQTT."""
    import os
    import signal as signals

    from linerec.store.keys import load_private
    from linerec.store.reader import decrypt

    call = site["root"] / "long-call.toml"
    # About a minute of call (half that at speed 2): three `collector command` processes must
    # reach it before it ends on a busy machine; the test stops the daemon once they have.
    call.write_text(
        '[[call]]\nconsent = "one-party"\n[[call.step]]\nat = 0.5\noff_hook = true\n'
        + '[[call.step]]\nsay = "caller"\n[[call.step]]\nsay = "office"\n' * 5
    )
    config = site["appliance"]
    config.write_text(
        config.read_text().replace(
            "[uplink]",
            '[hardware]\nbackend = "sim"\n[sim]\n'
            f'calls = ["{call}"]\nspeed = 2.0\n[[line]]\nconsent = "one-party"\n[uplink]',
        )
    )
    collector, stop, thread = run_collector(site["collector"])
    daemon = subprocess.Popen(
        [*LINEREC, "run", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )

    def events() -> list[str]:
        rows = collector.store.db.execute(
            "SELECT body FROM events WHERE device = 'box1' ORDER BY seq"
        )
        return [json.loads(row[0])["event"] for row in rows]

    def wait_for(name: str, count: int = 1) -> None:
        deadline = time.monotonic() + 20
        while events().count(name) < count:
            assert time.monotonic() < deadline, f"no {name} event: {events()}"
            time.sleep(0.05)

    def command(*arguments: str, refused: bool = False) -> None:
        sent = subprocess.run(
            [
                *LINEREC,
                "collector",
                "command",
                "box1",
                *arguments,
                "--config",
                str(site["collector"]),
            ],
            capture_output=True,
            text=True,
        )
        # the command line waits for the device's answer: 1 and the reason if refused
        assert sent.returncode == (1 if refused else 0), sent.stderr
        if refused:
            assert "no line 'line9'" in sent.stderr

    try:
        wait_for("recording_started")
        command("pause", "--line", "line1")
        wait_for("recording_paused")
        command("resume", "--line", "line1")
        wait_for("recording_resumed")
        command("consent", "--line", "line9", "--mode", "beep", refused=True)  # no such line
        wait_for("command_refused")
        daemon.send_signal(signals.SIGTERM)
        daemon.wait(20)
        (recording,) = sorted((site["root"] / "ring").glob("*.lrec"))
        metadata = decrypt(
            recording.read_bytes(), load_private(site["root"] / "keys" / "collector.key")
        ).metadata
    finally:
        daemon.kill()
        stop.set()
        thread.join(10)
    assert events().count("command_done") == 2
    # the daemon's health telemetry is retained on the broker, in the documented shape
    import jsonschema
    import paho.mqtt.client as mqtt
    import yaml
    from paho.mqtt.enums import CallbackAPIVersion

    spec = yaml.safe_load((Path(__file__).parents[1] / "docs" / "asyncapi.yaml").read_text())
    got: list[bytes] = []
    reader = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    reader.on_message = lambda client, userdata, message: got.append(message.payload)
    reader.connect("127.0.0.1", broker.port)
    reader.subscribe("linerec/v1/box1/health")
    reader.loop_start()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    reader.loop_stop()
    health = json.loads(got[0])
    jsonschema.validate(health, spec["components"]["messages"]["health"]["payload"])
    assert health["lines"][0]["line"] == "line1"
    (pause,) = metadata["pauses"]
    assert pause["by"] == "command" and pause["seconds"] > 0
    refused = [
        json.loads(row[0])
        for row in collector.store.db.execute("SELECT body FROM events WHERE device = 'box1'")
        if '"command_refused"' in row[0]
    ]
    assert "no line 'line9'" in refused[0]["reason"]


@pytest.fixture
def delivered(site: dict[str, Path]) -> Collector:
    """A collector holding two recordings (inbound, outbound) from box1."""
    config = load_config(site["appliance"])
    for name in ("inbound.toml", "outbound.toml"):
        simulate([example_call(name)], config=config, store_dir=None, emit=lambda e: None)
    collector, stop, thread = run_collector(site["collector"])
    try:
        flush = run_flush(site)
        assert flush.returncode == 0, flush.stderr
    finally:
        stop.set()
        thread.join(10)
    return collector


def test_deleting_at_the_collector_shreds_every_copy(
    site: dict[str, Path], delivered: Collector
) -> None:
    import shutil

    from linerec.store.keys import load_private

    store = delivered.store
    (first_row, second) = store.recordings()
    backup = site["root"] / "backup"
    shutil.copytree(site["root"] / "central" / "recordings", backup)  # a backup, taken before
    deleted = subprocess.run(
        [
            *LINEREC,
            "collector",
            "delete",
            first_row["id"],
            "--reason",
            "customer asked",
            "--config",
            str(site["collector"]),
        ],
        capture_output=True,
        text=True,
    )
    assert deleted.returncode == 0, deleted.stderr
    copy = next(backup.rglob(f"{first_row['id']}*"))
    with pytest.raises(ValueError, match="its key is gone"):
        store.read_recording(first_row["id"], copy)
    key = load_private(site["root"] / "keys" / "collector.key")
    from linerec.store.reader import IntegrityError, decrypt

    with pytest.raises(IntegrityError):  # nor does the collector's own key open the copy
        decrypt(copy.read_bytes(), key)
    assert decrypt(store.read_recording(second["id"], Path(second["path"])), key).samples.size > 0
    (entry,) = store.deletions()
    assert (entry["id"], entry["reason"], entry["prev"]) == (first_row["id"], "customer asked", "")


def test_hold_blocks_deletion_and_retention(site: dict[str, Path], delivered: Collector) -> None:
    store = delivered.store
    rows = store.recordings()
    subprocess.run(
        [*LINEREC, "collector", "hold", rows[0]["id"], "--config", str(site["collector"])],
        check=True,
        capture_output=True,
    )
    refused = subprocess.run(
        [
            *LINEREC,
            "collector",
            "delete",
            rows[0]["id"],
            "--reason",
            "x",
            "--config",
            str(site["collector"]),
        ],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1 and "legal hold" in refused.stderr
    gone = store.enforce_retention(30, now=time.time() + 31 * 86400)
    assert gone == [rows[1]["id"]]
    deletions = store.deletions()
    assert deletions[0]["reason"] == "retention: older than 30 days"


def test_every_access_is_audited_and_exports_verify(
    site: dict[str, Path], delivered: Collector
) -> None:
    store = delivered.store
    row = store.recordings()[0]
    out = site["root"] / "copy.wav"
    cfg = ["--config", str(site["collector"])]
    subprocess.run(
        [*LINEREC, "collector", "list", "--reason", "weekly review", *cfg],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*LINEREC, "collector", "hold", row["id"], "--reason", "case 12", *cfg],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*LINEREC, "collector", "export", row["id"], "--reason", "dispute 7", "-o", str(out), *cfg],
        check=True,
        capture_output=True,
    )
    audit = subprocess.run(
        [*LINEREC, "collector", "audit", "--json", *cfg], check=True, capture_output=True, text=True
    )
    records = [json.loads(line) for line in audit.stdout.splitlines()]
    assert [(r["action"], r["recording"], r["reason"]) for r in records] == [
        ("list", None, "weekly review"),
        ("hold", row["id"], "case 12"),
        ("export", row["id"], "dispute 7"),
        ("audit", None, ""),
    ]
    verify = [
        *LINEREC,
        "collector",
        "verify-export",
        str(out),
        "--collector",
        str(site["root"] / "keys" / "collector.pub"),
    ]
    ok = subprocess.run(verify, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    data = bytearray(out.read_bytes())
    data[1000] ^= 0x40
    out.write_bytes(bytes(data))
    bad = subprocess.run(verify, capture_output=True, text=True)
    assert bad.returncode == 1 and "the audio is not the one exported (altered)" in bad.stderr
    refused = subprocess.run(
        [*LINEREC, "collector", "export", row["id"], "--reason", " ", "-o", str(out), *cfg],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2


def test_a_long_upload_resumes_where_the_collector_had_got_to(
    site: dict[str, Path], broker: Mosquitto
) -> None:
    """Progress acks during a long upload let the appliance resume, not start over."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    call = site["root"] / "minute.toml"
    call.write_text(
        "[[call]]\n[[call.step]]\nat = 0.5\noff_hook = true\n"
        + '[[call.step]]\nsay = "caller"\n[[call.step]]\nsay = "office"\n' * 4
        + "[[call.step]]\non_hook = true\n"
    )
    config = load_config(site["appliance"])
    simulate([call], config=config, store_dir=None, emit=lambda e: None)
    (recording,) = sorted((site["root"] / "ring").glob("*.lrec"))
    assert recording.stat().st_size > 10 * 32 * 1024  # many pieces
    offsets: list[int] = []
    acks: list[dict[str, object]] = []

    def seen(message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/ack"):
            acks.append(json.loads(message.payload))
        else:
            offsets.append(int(dict(message.properties.UserProperty)["offset"]))

    spy = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    spy.on_message = lambda c, u, m: seen(m)
    spy.connect("127.0.0.1", broker.port)
    spy.subscribe([("linerec/v1/box1/upload/+", 1), ("linerec/v1/box1/ack", 1)])
    spy.loop_start()
    _collector, stop, thread = run_collector(site["collector"])
    try:
        flush = run_flush(site)
        assert flush.returncode == 0, flush.stderr
    finally:
        stop.set()
        thread.join(10)
    uploads = site["root"] / "ring" / "outbox" / "uploads"
    assert list(uploads.glob("*.json")) == []  # acknowledged whole: its progress is forgotten
    *_, last = (ack for ack in acks if ack["kind"] == "progress")
    assert isinstance(last["received"], int)
    assert last["received"] >= 8 * 32 * 1024  # the collector said how far it had got, signed
    # Had the final ack been lost, the card would hold what the last progress ack said (as the
    # appliance wrote it then); the appliance is told to send it all again. It resumes from
    # there, not from byte 0.
    progress = {"sha256": last["sha256"], "received": last["received"]}
    (uploads / recording.name.replace(".lrec", ".json")).write_text(json.dumps(progress))
    from linerec.daemon.storage import open_store, open_uplink

    ring = open_store(config, emit=lambda e: None, clock=time.monotonic)
    uplink = open_uplink(config, ring)
    offsets.clear()
    uplink._chunk = 32 * 1024
    client_started = threading.Event()
    uplink.client.on_connect = lambda *a: client_started.set()
    uplink.client.connect("127.0.0.1", broker.port)
    uplink.client.loop_start()
    assert client_started.wait(5)
    uplink._connected.set()
    assert uplink._upload(recording.name.removesuffix(".lrec"), recording)
    deadline = time.monotonic() + 5
    while len(offsets) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    uplink.client.loop_stop()
    spy.loop_stop()
    assert min(offsets) == progress["received"] // (32 * 1024) * 32 * 1024 > 0


def test_a_recording_under_another_devices_topic_is_refused(
    site: dict[str, Path], broker: Mosquitto
) -> None:
    """The id names its device, and so does the sealed header; the collector stores a
    recording only under its own device (the header check: test_collector_attack.py)."""
    import hashlib

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from linerec.mqttapi import CHUNK

    config = load_config(site["appliance"])
    simulate([example_call("inbound.toml")], config=config, store_dir=None, emit=lambda e: None)
    (recording,) = sorted((site["root"] / "ring").glob("*.lrec"))
    data = recording.read_bytes()
    collector, stop, thread = run_collector(site["collector"])
    try:
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        name = f"linerec/v1/box2/upload/{recording.stem}"
        for offset in range(0, len(data), CHUNK):
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.UserProperty = [
                ("offset", str(offset)),
                ("size", str(len(data))),
                ("sha256", hashlib.sha256(data).hexdigest()),
            ]
            piece = data[offset : offset + CHUNK]
            client.publish(name, piece, qos=1, properties=properties).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while len(collector.problems) < len(range(0, len(data), CHUNK)):
            assert time.monotonic() < deadline, collector.problems
            time.sleep(0.05)
        client.loop_stop()
        client.disconnect()
    finally:
        stop.set()
        thread.join(10)
    assert set(collector.problems) == {
        f"{name}: '{recording.stem}' is not a recording id of device 'box2' "
        "(expected box2-<seq>-<yyyymmddThhmmssZ>-<line>): not stored"
    }
    assert collector.store.recordings() == []
    assert list(collector.store.data_dir.rglob("*.lrec*")) == []  # its bytes are gone too


def test_event_numbers_are_never_reused_after_acks_and_a_restart(tmp_path: Path) -> None:
    from linerec.uplink.outbox import EventOutbox

    def restarted() -> EventOutbox:  # a clean stop (which writes what is queued), a start
        outbox.close()
        return EventOutbox(tmp_path / "outbox")

    outbox = EventOutbox(tmp_path / "outbox")
    assert [outbox.append({"event": "ringing"}) for _ in range(3)] == [1, 2, 3]
    assert outbox.acknowledge(2) == 2
    outbox = restarted()
    assert outbox.append({"event": "answered"}) == 4
    assert outbox.acknowledge(4) == 2  # every file gone: only `seq` remembers
    assert [seq for seq, _ in outbox.pending()] == []
    outbox = restarted()
    assert outbox.append({"event": "hung_up"}) == 5
    outbox = restarted()
    assert [json.loads(body)["event"] for _, body in outbox.pending()] == ["hung_up"]
    outbox.close()


def test_the_chain_is_checked_against_both_neighbours_whatever_the_order(
    tmp_path: Path, engine: str
) -> None:
    from linerec.collector.store import CollectorStore

    store = CollectorStore(tmp_path / "data", databases.selected.location(tmp_path / "index.db"))
    assert store.follow_chain("box1", 1, "", "h1") == ""
    assert store.follow_chain("box1", 3, "h2", "h3") == (
        "recordings 2..2 have not arrived (deleted, or still coming)"
    )
    assert store.follow_chain("box1", 2, "h1", "h2") == ""  # the late one fills the hole
    assert store.follow_chain("box1", 5, "h4", "h5").startswith("recordings 4..4")
    assert store.follow_chain("box1", 4, "h3", "forged") == (
        "seq 5 does not follow on from seq 4 (its prev hash differs)"
    )
    assert store.follow_chain("box1", 6, "other", "h6") == (
        "seq 6 does not follow on from seq 5 (its prev hash differs)"
    )
    assert store.follow_chain("box2", 7, "x", "y") == ""  # each device has its own chain


def test_an_uplink_device_id_alone_names_the_recordings_and_they_arrive(
    tmp_path: Path, broker: Mosquitto
) -> None:
    keygen(tmp_path / "keys")
    appliance = tmp_path / "linerec.toml"
    appliance.write_text(  # no [device] id: the uplink's id is the box's one id
        '[store]\ndir = "ring"\nrecipients = ["keys/collector.pub"]\n'
        f'[uplink]\nbroker = "{broker.url}"\nallow_plaintext = true\ndevice_id = "bar-dev-1"\n'
    )
    collector_toml = tmp_path / "collector.toml"
    collector_toml.write_text(
        f'[collector]\nbroker = "{broker.url}"\nallow_plaintext = true\ndata_dir = "central"\n'
        'key = "keys/collector.key"\n'
    )
    config = load_config(appliance)
    simulate([example_call("inbound.toml")], config=config, store_dir=None, emit=lambda e: None)
    (entry,) = [read_entry(p) for p in (tmp_path / "ring").glob("*.lrec")]
    assert entry.id.startswith("bar-dev-1-")
    collector, stop, thread = run_collector(collector_toml)
    try:
        flush = run_flush({"appliance": appliance}, timeout=30)
        assert flush.returncode == 0, flush.stderr
    finally:
        stop.set()
        thread.join(10)
    assert [(r["device"], r["id"]) for r in collector.store.recordings()] == [
        ("bar-dev-1", entry.id)
    ]
    assert collector.problems == []


def test_an_export_cut_mid_write_leaves_the_copy_there_before_whole(
    site: dict[str, Path], delivered: Collector
) -> None:
    """`collector export` over an earlier copy, cut off by a full disk: each file of the
    earlier copy is whole (it still verifies), none is torn, the error names the file."""
    import resource

    row = delivered.store.recordings()[0]
    out = site["root"] / "copy.wav"
    export = [*LINEREC, "collector", "export", row["id"], "--reason", "dispute 7", "-o", str(out),
              "--config", str(site["collector"])]  # fmt: skip
    subprocess.run(export, check=True, capture_output=True)
    before = {p.name: p.read_bytes() for p in site["root"].glob("copy.*")}
    assert sorted(before) == ["copy.json", "copy.lrec", "copy.verify.json", "copy.wav"]

    # room for the database's writes (the export is audited), not for the audio
    if delivered.store.db.engine == "sqlite":
        delivered.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    room = len(before["copy.wav"]) - 1
    largest = max((p.stat().st_size for p in site["root"].rglob("collector.db*")), default=0)
    assert largest < room

    def full_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (room, room))

    cut = subprocess.run(export, capture_output=True, text=True, preexec_fn=full_disk)
    assert cut.returncode == 1
    assert cut.stderr.startswith(f"linerec: error: {row['id']}: {out}: not written"), cut.stderr
    assert len(cut.stderr.splitlines()) == 1, cut.stderr
    assert {p.name: p.read_bytes() for p in site["root"].glob("copy.*")} == before
    assert [p for p in site["root"].iterdir() if p.name.startswith(".copy.")] == []
    verified = subprocess.run(
        [*LINEREC, "collector", "verify-export", str(out), "--collector",
         str(site["root"] / "keys" / "collector.pub")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
