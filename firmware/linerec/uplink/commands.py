"""Collector-to-appliance commands: signed, bound to one device, numbered, and short-lived.

A command is canonical JSON signed with the collector's Ed25519 key (mqttapi.sign):

    {"device": "box1", "counter": 42, "expires": 1764081000.0, "action": "hold",
     "id": "box1-00000012-...", "sig": "..."}

The appliance accepts it only if the signature holds, it names this device, its counter is
above every counter accepted before (kept on the card, so a replay after a reboot fails too),
and it has not expired. Anything else is refused with a reason and changes nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from linerec.mqttapi import ApiError, verify
from linerec.store.private import write_private

ACTIONS = {
    "status": (),
    "pause": ("line",),
    "resume": ("line",),
    "opt_out": ("line",),
    "hold": ("id",),
    "release": ("id",),
    "delete": ("id",),
    "consent": ("line", "mode"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    counter: int
    action: str
    arguments: dict[str, str]


class CommandGate:
    """Checks commands and remembers the highest counter accepted."""

    def __init__(
        self, device_id: str, collector: Ed25519PublicKey, state: Path, clock: Any = time.time
    ) -> None:
        self.device_id = device_id
        self.collector = collector
        self.state = state
        self.clock = clock
        try:
            self.last = int(state.read_text())
        except (OSError, ValueError):
            self.last = 0

    def check(self, payload: bytes, where: str) -> Command:
        """The command, or ApiError saying why it is refused (nothing is changed then)."""
        body = verify(self.collector, payload, where)
        if body.get("device") != self.device_id:
            raise ApiError(
                f"{where}: command for device {body.get('device')!r}, not {self.device_id!r}"
            )
        counter, expires, action = body.get("counter"), body.get("expires"), body.get("action")
        if not isinstance(counter, int) or not isinstance(expires, int | float):
            raise ApiError(f"{where}: a command needs an integer counter and an expires time")
        if counter <= self.last:
            raise ApiError(f"{where}: replayed: counter {counter} is not above {self.last}")
        if expires < self.clock():
            raise ApiError(f"{where}: expired at {expires:.0f} (now {self.clock():.0f})")
        if action not in ACTIONS:
            raise ApiError(f"{where}: unknown action {action!r} (known: {', '.join(ACTIONS)})")
        arguments = {}
        for name in ACTIONS[action]:
            value = body.get(name)
            if not isinstance(value, str) or not value:
                raise ApiError(f"{where}: {action} needs {name}")
            arguments[name] = value
        self._accept(counter)
        return Command(counter=counter, action=action, arguments=arguments)

    def _accept(self, counter: int) -> None:
        self.last = counter
        write_private(self.state, str(counter).encode())


def command_body(
    device: str, counter: int, action: str, ttl: float = 300.0, **arguments: str
) -> dict[str, Any]:
    """What the collector signs (see `linerec collector command`)."""
    return {
        "device": device,
        "counter": counter,
        "expires": round(time.time() + ttl, 3),
        "action": action,
        **arguments,
    }


def describe(command: Command) -> str:
    return json.dumps({"action": command.action, **command.arguments}, sort_keys=True)
