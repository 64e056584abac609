"""Collector-to-appliance commands: signed, bound to the device, numbered, short-lived."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import databases
from linerec.mqttapi import ApiError, sign
from linerec.uplink.commands import Command, CommandGate, command_body

COLLECTOR = Ed25519PrivateKey.generate()


def gate(tmp_path: Path, clock: float | None = None) -> CommandGate:
    return CommandGate(
        "box1",
        COLLECTOR.public_key(),
        tmp_path / "counter",
        clock=(lambda: clock) if clock is not None else time.time,
    )


def signed(
    counter: int,
    action: str = "hold",
    key: Ed25519PrivateKey = COLLECTOR,
    device: str = "box1",
    **arguments: str,
) -> bytes:
    arguments = arguments or ({"id": "box1-00000001"} if action == "hold" else {})
    return sign(key, command_body(device, counter, action, **arguments))


def test_a_good_command_is_accepted_and_its_counter_kept(tmp_path: Path) -> None:
    assert gate(tmp_path).check(signed(1), "t") == Command(
        counter=1, action="hold", arguments={"id": "box1-00000001"}
    )
    assert (tmp_path / "counter").read_text() == "1"
    assert gate(tmp_path).last == 1  # after a restart too


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: signed(1, key=Ed25519PrivateKey.generate()), "bad signature"),
        (lambda: signed(1, device="box2"), "command for device 'box2', not 'box1'"),
        (lambda: b"not json", "not JSON"),
        (
            lambda: sign(COLLECTOR, {"device": "box1", "action": "hold"}),
            "needs an integer counter and an expires time",
        ),
        (lambda: signed(1, "reboot"), "unknown action 'reboot'"),
        (lambda: sign(COLLECTOR, command_body("box1", 1, "hold")), "hold needs id"),
        (lambda: signed(1, "consent", line="line1"), "consent needs mode"),
    ],
)
def test_refused_commands_change_nothing(
    tmp_path: Path, make: Callable[[], bytes], message: str
) -> None:
    with pytest.raises(ApiError, match=message):
        gate(tmp_path).check(make(), "t")
    assert not (tmp_path / "counter").exists()


def test_replays_are_refused_even_after_a_restart(tmp_path: Path) -> None:
    first = signed(5)
    gate(tmp_path).check(first, "t")
    with pytest.raises(ApiError, match="replayed: counter 5 is not above 5"):
        gate(tmp_path).check(first, "t")
    with pytest.raises(ApiError, match="replayed: counter 3 is not above 5"):
        gate(tmp_path).check(signed(3), "t")


def test_expired_commands_are_refused(tmp_path: Path) -> None:
    late = gate(tmp_path, clock=time.time() + 3600)  # the command said 300 s
    with pytest.raises(ApiError, match="expired at"):
        late.check(signed(1), "t")


def body(**changes: object) -> bytes:
    return sign(COLLECTOR, {**command_body("box1", 1, "status"), **changes})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: body(expires=float("nan")), "expires must be a finite unix time"),
        (lambda: body(expires=float("inf")), "expires must be a finite unix time"),
        (lambda: body(expires=1e30), "expires is more than 86400 s ahead"),
        (lambda: body(expires=True), "needs an integer counter and an expires time"),
        (lambda: body(counter=True), "needs an integer counter and an expires time"),
        (lambda: body(counter=0), "counter must be from 1 to"),
        (lambda: body(counter=2**64), "counter must be from 1 to"),
        # an integer too large for a float, and an action no table can hold: refused, said why
        (lambda: body(expires=10**400), "expires is more than 86400 s ahead"),
        (lambda: body(expires=-(10**400)), "expired at"),
        (lambda: body(action=["status"]), "unknown action"),
        (lambda: body(action={"status": 1}), "unknown action"),
    ],
)
def test_numbers_must_be_finite_and_in_range(
    tmp_path: Path, make: Callable[[], bytes], message: str
) -> None:
    with pytest.raises(ApiError, match=message):
        gate(tmp_path).check(make(), "t")
    assert not (tmp_path / "counter").exists()


def test_a_refusal_says_which_command_and_the_last_counter_accepted(tmp_path: Path) -> None:
    from linerec.uplink.commands import Refusal

    gate(tmp_path).check(signed(7), "t")
    with pytest.raises(Refusal) as refused:
        gate(tmp_path).check(signed(3), "t")
    assert (refused.value.counter, refused.value.last) == (3, 7)
    with pytest.raises(Refusal) as forged:
        gate(tmp_path).check(b"not json", "t")
    assert (forged.value.counter, forged.value.last) == (0, 7)


@pytest.mark.parametrize("ttl", ["inf", "nan", "1e30", "-5", "0", "ten"])
def test_the_command_line_refuses_a_ttl_out_of_range(tmp_path: Path, ttl: str) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "linerec.cli",
            "collector",
            "command",
            "box1",
            "status",
            "--ttl",
            ttl,
            "--config",
            str(tmp_path / "none.toml"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert f"--ttl: must be a number of seconds from 1 to 86400 (got {ttl!r})" in out.stderr


def test_the_collector_learns_a_device_counter(tmp_path: Path, engine: str) -> None:
    from linerec.collector.store import CollectorStore

    store = CollectorStore(tmp_path / "data", databases.selected.location(tmp_path / "index.db"))
    assert store.next_command_counter("box1") == 1
    store.learn_command_counter("box1", 41)  # the device says it has accepted 41
    assert store.next_command_counter("box1") == 42
    store.learn_command_counter("box1", 5)  # older news changes nothing
    assert store.next_command_counter("box1") == 43
    assert store.next_command_counter("box2") == 1


def test_counters_a_device_reports_cannot_break_or_exhaust_the_numbering(
    tmp_path: Path, engine: str
) -> None:
    """A device's events and status are its own to write: a counter that is text, a float,
    beyond what a device accepts (2**53) or beyond SQLite's integers is not learnt."""
    from linerec.collector.commands import _counter
    from linerec.collector.store import CollectorStore
    from linerec.uplink.commands import MAX_COUNTER

    store = CollectorStore(tmp_path / "data", databases.selected.location(tmp_path / "index.db"))
    hostile: list[object] = ["abc", 1e300, 10**30, MAX_COUNTER + 5, -5, [1], {"a": 1}, True, 7.5]
    for seq, bad in enumerate(hostile, start=1):
        event = "command_done" if seq % 2 else "command_refused"
        store.add_event("box1", {"seq": seq, "event": event, "counter": bad}, 0.0)
        store.add_event("box1", {"seq": 100 + seq, "event": event, "last_counter": bad}, 0.0)
        assert _counter(bad) is None, bad
    assert store.next_command_counter("box1") == 1
    store.add_event("box1", {"seq": 200, "event": "command_done", "counter": 9}, 0.0)
    assert store.next_command_counter("box1") == 10
    assert _counter(MAX_COUNTER - 1) == MAX_COUNTER - 1
