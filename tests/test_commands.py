"""Collector-to-appliance commands: signed, bound to the device, numbered, short-lived."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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
    ("payload", "message"),
    [
        (signed(1, key=Ed25519PrivateKey.generate()), "bad signature"),
        (signed(1, device="box2"), "command for device 'box2', not 'box1'"),
        (b"not json", "not JSON"),
        (
            sign(COLLECTOR, {"device": "box1", "action": "hold"}),
            "needs an integer counter and an expires time",
        ),
        (signed(1, "reboot"), "unknown action 'reboot'"),
        (sign(COLLECTOR, command_body("box1", 1, "hold")), "hold needs id"),
        (signed(1, "consent", line="line1"), "consent needs mode"),
    ],
)
def test_refused_commands_change_nothing(tmp_path: Path, payload: bytes, message: str) -> None:
    with pytest.raises(ApiError, match=message):
        gate(tmp_path).check(payload, "t")
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
