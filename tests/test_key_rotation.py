"""Recipient keys by epoch (issue 17, item 5): `linerec collector rotate-key` makes a new key,
keeps the old one, and tells the appliances in a signed command; what they record and seal
after it opens only with the new key, and everything before still opens."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker import Mosquitto
from killed import killed_mid_write
from linerec.collector.sealed import open_event
from linerec.config import load_config
from linerec.daemon.simulate import example_call, simulate
from linerec.daemon.storage import open_outbox, open_store, rekeying
from linerec.mqttapi import ApiError, event_envelope, sign
from linerec.store import keys as keyfiles
from linerec.store import ring as ring_module
from linerec.store.keys import CollectorPrivate, load_private, load_public, rotate
from linerec.store.reader import IntegrityError, decrypt, inspect
from linerec.store.seal import seal_fields, wrap_key_v1
from linerec.uplink.commands import Command, CommandGate, command_body
from test_store import make_ring, record, speech_like

LINEREC = [sys.executable, "-m", "linerec.cli"]


@pytest.fixture
def keys(tmp_path: Path) -> CollectorPrivate:
    private, _ = keyfiles.keygen(tmp_path / "keys")
    return load_private(private)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path).start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
def site(tmp_path: Path, broker: Mosquitto) -> dict[str, Path]:
    keyfiles.keygen(tmp_path / "keys")
    appliance = tmp_path / "linerec.toml"
    appliance.write_text(
        '[device]\nid = "box1"\n[store]\ndir = "ring"\nrecipients = ["keys/collector.pub"]\n'
        f'[uplink]\nbroker = "{broker.url}"\nallow_plaintext = true\n'
    )
    collector = tmp_path / "collector.toml"
    collector.write_text(
        f'[collector]\nbroker = "{broker.url}"\nallow_plaintext = true\ndata_dir = "central"\n'
        'key = "keys/collector.key"\n'
    )
    return {"appliance": appliance, "collector": collector, "root": tmp_path}


def public_b64(key: CollectorPrivate) -> str:
    return keyfiles.b64(keyfiles.raw_public(key.encryption.public_key()))


def test_recordings_before_and_after_a_rotation_decrypt_and_new_ones_not_with_the_old_key(
    tmp_path: Path, keys: CollectorPrivate, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = make_ring(tmp_path, keys)
    before = record(ring, speech_like(1.0, seed=1))
    with monkeypatch.context() as old_appliance:  # what appliances wrote before format v2
        old_appliance.setattr(ring_module, "VERSION", 1)
        old_appliance.setattr(ring_module, "wrap_key", wrap_key_v1)
        version_1 = record(ring, speech_like(1.0, seed=2))
    assert inspect(version_1.read_bytes()).header["v"] == 1
    assert inspect(before.read_bytes()).header["v"] == 2
    shutil.copy(keys.path, tmp_path / "epoch1.key")

    rotated = rotate(keys.path, datetime(2026, 11, 30, tzinfo=UTC))
    public = load_public(keys.path.with_suffix(".pub"))
    assert (rotated.epoch, public.epoch, public.kid) == (2, 2, rotated.kid)
    assert [(r.kid, r.epoch) for r in rotated.retired] == [(keys.kid, 1)]
    reread = load_private(keys.path)
    assert (reread.kid, reread.epoch, [r.kid for r in reread.retired]) == (
        rotated.kid,
        2,
        [keys.kid],
    )
    assert keyfiles.raw_private(reread.signing) == keyfiles.raw_private(keys.signing)  # kept
    assert keys.path.stat().st_mode & 0o777 == 0o600
    ring.set_recipients([public])
    after = record(ring, speech_like(1.0, seed=3))
    (entry,) = inspect(after.read_bytes()).header["recipients"]
    assert entry["kid"] == rotated.kid and set(entry) == {"kid", "enc", "ct"}

    current = load_private(keys.path)
    for path, seed in ((before, 1), (version_1, 2), (after, 3)):
        samples = decrypt(path.read_bytes(), current).samples
        assert len(samples) == len(speech_like(1.0, seed=seed))
    with pytest.raises(IntegrityError, match="is not a recipient of this recording"):
        decrypt(after.read_bytes(), load_private(tmp_path / "epoch1.key"))
    assert np.array_equal(
        decrypt(before.read_bytes(), load_private(tmp_path / "epoch1.key")).samples,
        decrypt(before.read_bytes(), current).samples,
    )


def test_a_running_collector_opens_what_was_sealed_to_an_epoch_made_after_it_loaded_its_key(
    tmp_path: Path, keys: CollectorPrivate
) -> None:
    loaded_before = load_private(keys.path)  # `collector run` loaded its key months ago
    shutil.copy(keys.path, tmp_path / "epoch1.key")
    clear = {"device": "box1", "seq": 7, "event": "ringing", "at": "2026-11-30T00:00:00+00:00"}
    old_event = {
        **clear,
        "sealed": seal_fields([keys.encryption.public_key()], {"n": 1}, event_envelope(clear)),
    }
    rotated = rotate(keys.path)
    new_event = {
        **clear,
        "sealed": seal_fields([rotated.encryption.public_key()], {"n": 2}, event_envelope(clear)),
    }
    assert new_event["sealed"]["v"] == 2
    assert open_event(loaded_before, old_event)["n"] == 1
    assert open_event(loaded_before, new_event)["n"] == 2
    with pytest.raises(KeyError):
        open_event(load_private(tmp_path / "epoch1.key"), new_event)
    keyfiles.forget_retired(keys.path, keys.kid)  # retention is over: shred epoch 1
    with pytest.raises(KeyError):
        open_event(load_private(keys.path), old_event)
    assert open_event(load_private(keys.path), new_event)["n"] == 2
    with pytest.raises(keyfiles.KeyFileError, match="current epoch"):
        keyfiles.forget_retired(keys.path, rotated.kid)


COLLECTOR = Ed25519PrivateKey.generate()


def rekey(
    counter: int, epoch: str = "2", key: Ed25519PrivateKey = COLLECTOR, ttl: float = 300
) -> bytes:
    return sign(
        key, command_body("box1", counter, "rekey", ttl=ttl, epoch=epoch, x25519="A" * 43 + "=")
    )


def test_the_rekey_command_is_signed_numbered_and_expiring(tmp_path: Path) -> None:
    gate = CommandGate("box1", COLLECTOR.public_key(), tmp_path / "counter")
    with pytest.raises(ApiError, match="bad signature"):
        gate.check(rekey(1, key=Ed25519PrivateKey.generate()), "t")  # forged
    accepted = gate.check(rekey(1), "t")
    assert accepted == Command(
        counter=1, action="rekey", arguments={"epoch": "2", "x25519": "A" * 43 + "="}
    )
    with pytest.raises(ApiError, match="replayed"):
        gate.check(rekey(1), "t")
    with pytest.raises(ApiError, match="replayed"):  # after a restart too
        CommandGate("box1", COLLECTOR.public_key(), tmp_path / "counter").check(rekey(1), "t")
    later = CommandGate(
        "box1", COLLECTOR.public_key(), tmp_path / "counter", clock=lambda: time.time() + 600
    )
    with pytest.raises(ApiError, match="expired"):
        later.check(rekey(2), "t")
    with pytest.raises(ApiError, match="rekey needs x25519"):
        gate.check(sign(COLLECTOR, command_body("box1", 3, "rekey", epoch="2")), "t")


def appliance(tmp_path: Path) -> Path:
    keyfiles.keygen(tmp_path / "keys")
    config = tmp_path / "linerec.toml"
    config.write_text(
        '[device]\nid = "box1"\n[store]\ndir = "ring"\nrecipients = ["keys/collector.pub"]\n'
        '[uplink]\nbroker = "mqtt://127.0.0.1:1"\nallow_plaintext = true\n'
    )
    return config


def test_an_appliance_keeps_the_new_epoch_and_refuses_an_older_or_bad_one(tmp_path: Path) -> None:
    config = load_config(appliance(tmp_path))
    store = open_store(config, emit=lambda event: None, clock=time.monotonic)
    outbox = open_outbox(config)
    apply = rekeying(config, store, outbox)
    new = rotate(tmp_path / "keys" / "collector.key")
    for arguments, message in (
        ({"epoch": "1", "x25519": public_b64(new)}, "epoch 1 is not above the current epoch 1"),
        ({"epoch": "two", "x25519": public_b64(new)}, "epoch must be an integer"),
        ({"epoch": "2", "x25519": "not base64"}, "x25519: not base64"),
        ({"epoch": "2", "x25519": keyfiles.b64(b"short")}, "expected a 32-byte key"),
    ):
        with pytest.raises(ValueError, match=message):
            apply(arguments)
        assert not (tmp_path / "ring" / keyfiles.EPOCH_FILE).exists()
    apply({"epoch": "2", "x25519": public_b64(new)})
    outbox.append({"device": "box1", "event": "ringing", "at": "x", "t": 0.0, "number": "555"})
    outbox.close()
    (event,) = [json.loads(p.read_text()) for p in (tmp_path / "ring" / "outbox").glob("*.json")]
    assert [r["kid"] for r in event["sealed"]["recipients"]] == [new.kid]
    with pytest.raises(ValueError, match="epoch 2 is not above the current epoch 2"):
        apply({"epoch": "2", "x25519": public_b64(new)})
    # after a restart, the store and the outbox open with the kept epoch
    reopened = open_store(config, emit=lambda event: None, clock=time.monotonic)
    assert [(r.kid, r.epoch) for r in reopened.recipients] == [(new.kid, 2)]
    assert (tmp_path / "ring" / keyfiles.EPOCH_FILE).stat().st_mode & 0o777 == 0o600
    path = record(reopened, speech_like(0.5))
    assert decrypt(path.read_bytes(), load_private(tmp_path / "keys" / "collector.key"))


def test_rotate_key_reaches_a_running_appliance_and_a_forged_rekey_does_not(
    site: dict[str, Path], broker: Mosquitto
) -> None:
    """`linerec collector rotate-key` against `linerec run` over a real broker: the device
    takes the new epoch; the recording it makes next opens only with the new key file; one
    made before still opens; a rekey signed by another key changes nothing."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    root = site["root"]
    config_path = site["appliance"]
    simulate(
        [example_call("inbound.toml")],
        config=load_config(config_path),
        store_dir=None,
        emit=lambda event: None,
    )
    (before,) = sorted((root / "ring").glob("*.lrec"))
    shutil.copy(root / "keys" / "collector.key", root / "epoch1.key")
    config_path.write_text(
        config_path.read_text().replace(
            "[uplink]", '[hardware]\nbackend = "sim"\n[sim]\ncalls = []\n[uplink]'
        )
    )
    statuses: list[bytes] = []
    watcher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    watcher.on_message = lambda client, userdata, message: statuses.append(message.payload)
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe("linerec/v1/box1/status", qos=1)
    watcher.loop_start()
    daemon = subprocess.Popen(
        [*LINEREC, "run", "--config", str(config_path)], text=True, stderr=subprocess.PIPE
    )

    def collector(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*LINEREC, "collector", *arguments, "--config", str(site["collector"])],
            capture_output=True,
            text=True,
            timeout=60,
        )

    try:
        deadline = time.monotonic() + 20
        while not any(b'"online"' in s for s in statuses):
            assert daemon.poll() is None, daemon.stderr.read() if daemon.stderr else ""
            assert time.monotonic() < deadline, statuses
            time.sleep(0.05)
        rotated = collector("rotate-key", "--device", "box1", "--timeout", "20")
        assert rotated.returncode == 0, rotated.stderr
        assert "box1: rekey to epoch 2: done" in rotated.stdout
        epoch_file = root / "ring" / keyfiles.EPOCH_FILE
        assert load_public(epoch_file).epoch == 2
        forged_body = command_body(
            "box1", 10_000, "rekey", epoch="3", x25519=public_b64(load_private(root / "epoch1.key"))
        )
        watcher.publish(
            "linerec/v1/box1/command", sign(Ed25519PrivateKey.generate(), forged_body), qos=1
        ).wait_for_publish(5)
        status = collector("command", "box1", "status", "--timeout", "20")  # after the forgery
        assert status.returncode == 0, status.stderr
        assert load_public(epoch_file).epoch == 2
        listed = collector("rotate-key", "--list")
        assert "epoch 2  current" in listed.stdout and "epoch 1  retired" in listed.stdout
    finally:
        watcher.loop_stop()
        watcher.disconnect()
        daemon.terminate()
        daemon.wait(20)
    simulate(
        [example_call("inbound.toml")],
        config=load_config(config_path),
        store_dir=None,
        emit=lambda event: None,
    )
    (after,) = [p for p in sorted((root / "ring").glob("*.lrec")) if p != before]
    current = load_private(root / "keys" / "collector.key")
    assert decrypt(before.read_bytes(), current).metadata
    assert decrypt(after.read_bytes(), current).metadata
    with pytest.raises(IntegrityError, match="not a recipient"):
        decrypt(after.read_bytes(), load_private(root / "epoch1.key"))


def test_a_retired_key_is_destroyed_only_once_no_recording_held_needs_it(
    site: dict[str, Path], broker: Mosquitto
) -> None:
    """Retention lets the key go: while the collector holds a recording only the retired key
    opens, `rotate-key --forget` refuses and names it; after `collector delete` it destroys
    the key, and what it alone opened (a copy left anywhere) no longer opens."""
    import threading

    from linerec.collector.config import load_collector_config
    from linerec.collector.service import Collector

    root = site["root"]
    simulate(
        [example_call("inbound.toml")],
        config=load_config(site["appliance"]),
        store_dir=None,
        emit=lambda event: None,
    )
    (copy,) = sorted((root / "ring").glob("*.lrec"))
    epoch1 = load_private(root / "keys" / "collector.key").kid
    collector = Collector(load_collector_config(site["collector"]), client_id="rotation-test")
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert collector.ready.wait(10)
        flush = subprocess.run(
            [*LINEREC, "uplink", "flush", "--config", str(site["appliance"]), "--timeout", "30"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert flush.returncode == 0, flush.stderr
    finally:
        stop.set()
        thread.join(10)

    def collector_cli(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*LINEREC, "collector", *arguments, "--config", str(site["collector"])],
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert collector_cli("rotate-key", "--timeout", "0").returncode == 0  # box1 is offline
    (row,) = collector.store.recordings()
    refused = collector_cli("rotate-key", "--forget", epoch1)
    assert refused.returncode == 1
    assert f"box1/{row['id']}" in refused.stderr and "retention" in refused.stderr
    assert load_private(root / "keys" / "collector.key").decryption_key(epoch1) is not None
    deleted = collector_cli("delete", row["id"], "--reason", "retention test")
    assert deleted.returncode == 0, deleted.stderr
    forgotten = collector_cli("rotate-key", "--forget", epoch1)
    assert forgotten.returncode == 0, forgotten.stderr
    key = load_private(root / "keys" / "collector.key")
    assert key.decryption_key(epoch1) is None and key.epoch == 2
    with pytest.raises(IntegrityError, match="not a recipient"):
        decrypt(copy.read_bytes(), key)  # the copy on the card is shredded


def test_a_rotation_replaces_the_public_key_through_atomic_files_only(
    tmp_path: Path, keys: CollectorPrivate, caplog: pytest.LogCaptureFixture
) -> None:
    """The new `collector.pub` is written as every small file is (linerec.atomic): a link
    planted at any name beside it is never followed, and what a rotation cut off mid-write
    left (its temporary files, or an older version's `collector.pub.tmp`) is swept, named in
    the log, by the next one, whose keys are whole."""
    directory = keys.path.parent
    outside = tmp_path / "elsewhere"
    outside.write_text("not the collector's")
    (directory / "collector.pub.tmp").symlink_to(outside)
    left = [killed_mid_write(directory / "collector.pub"), killed_mid_write(keys.path)]
    caplog.set_level(logging.INFO)
    new = rotate(keys.path)
    assert outside.read_text() == "not the collector's"
    public = directory / "collector.pub"
    assert not public.is_symlink()
    assert load_public(public).kid == new.kid == load_private(keys.path).kid
    assert public.stat().st_mode & 0o777 == 0o644  # the appliances' copy: no secret
    assert keys.path.stat().st_mode & 0o777 == 0o600
    assert [path for path in left if path.exists()] == []
    for path in left:
        assert str(path) in caplog.text
    assert (directory / "collector.pub.tmp").is_symlink()  # not ours: left alone
    (directory / "collector.pub.tmp").unlink()
    (directory / "collector.pub.tmp").write_text("torn by an older linerec's rotation")
    rotate(keys.path)
    assert sorted(p.name for p in directory.iterdir()) == ["collector.key", "collector.pub"]
