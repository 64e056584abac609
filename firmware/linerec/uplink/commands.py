"""Collector-to-appliance commands: signed, bound to one device, numbered, and short-lived.

A command is canonical JSON signed with the collector's Ed25519 key (mqttapi.sign):

    {"device": "box1", "counter": 42, "expires": 1764081000.0, "action": "hold",
     "id": "box1-00000012-...", "sig": "..."}

The appliance accepts it only if the signature holds, it names this device, its counter is
above every counter accepted before (kept on the card, so a replay after a reboot fails too),
and it has not expired. Anything else is refused with a reason and changes nothing; the
refusal carries the highest counter accepted so far, so a collector that lost its own count
(a new or restored database) can carry on above it.

Numbers are checked as numbers: JSON lets `NaN` and `Infinity` through, and `NaN < now` is
false, so an unchecked `"expires": NaN` would never expire. A command lives at most MAX_TTL.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from linerec.ids import shown
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
    "rekey": ("epoch", "x25519"),  # the collector's recipient key of a new epoch (base64)
    "cert": ("pem",),  # the device's renewed TLS certificate (`collector enroll --renew`)
    "update": ("url",),  # fetch a signed RAUC bundle and install it (docs/updates.md)
}


MAX_TTL = 86400.0  # seconds: no command is valid for longer than a day
MAX_COUNTER = 2**53  # the largest integer every JSON reader keeps exact


class Refusal(ApiError):
    """Why a command is refused, which one (`counter`, 0 if it named none) and the highest
    counter this device has accepted (`last`)."""

    def __init__(self, message: str, *, counter: int, last: int) -> None:
        super().__init__(message)
        self.counter = counter
        self.last = last


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
        """The command, or Refusal saying why it is refused (nothing is changed then)."""
        counter = 0
        try:
            body = verify(self.collector, payload, where)
            if _is_integer(body.get("counter")):
                counter = body["counter"]
            command = self._check(body, where)
        except Refusal:
            raise
        except ApiError as exc:
            raise Refusal(str(exc), counter=counter, last=self.last) from exc
        self._accept(command.counter)
        return command

    def _check(self, body: dict[str, Any], where: str) -> Command:
        if body.get("device") != self.device_id:
            raise ApiError(
                f"{where}: command for device {body.get('device')!r}, not {self.device_id!r}"
            )
        counter, expires, action = body.get("counter"), body.get("expires"), body.get("action")
        if not _is_integer(counter) or not _is_number(expires):
            raise ApiError(f"{where}: a command needs an integer counter and an expires time")
        assert isinstance(counter, int) and isinstance(expires, int | float)
        if not 1 <= counter <= MAX_COUNTER:
            raise ApiError(f"{where}: counter must be from 1 to {MAX_COUNTER} (got {counter})")
        if isinstance(expires, float) and not math.isfinite(expires):
            raise ApiError(f"{where}: expires must be a finite unix time (got {expires!r})")
        if counter <= self.last:
            raise ApiError(f"{where}: replayed: counter {counter} is not above {self.last}")
        now = self.clock()
        if expires < now:
            raise ApiError(f"{where}: expired at {_unix_time(expires)} (now {now:.0f})")
        if expires > now + MAX_TTL:
            raise ApiError(
                f"{where}: expires is more than {MAX_TTL:.0f} s ahead ({_unix_time(expires)}, "
                f"now {now:.0f}): no command lives that long"
            )
        if not isinstance(action, str) or action not in ACTIONS:
            raise ApiError(f"{where}: unknown action {action!r} (known: {', '.join(ACTIONS)})")
        arguments = {}
        for name in ACTIONS[action]:
            value = body.get(name)
            if not isinstance(value, str) or not value:
                raise ApiError(f"{where}: {action} needs {name}")
            arguments[name] = value
        return Command(counter=counter, action=action, arguments=arguments)

    def _accept(self, counter: int) -> None:
        self.last = counter
        write_private(self.state, str(counter).encode())


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _unix_time(value: int | float) -> str:
    """A time for a message; an integer too large for a float is shown, not converted."""
    return f"{value:.0f}" if abs(value) < 1e15 else shown(str(value), 24)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def valid_ttl(ttl: float) -> str:
    """'' if `ttl` (seconds) is a lifetime a command may have, else what is wrong with it."""
    if not math.isfinite(ttl) or not 1 <= ttl <= MAX_TTL:
        return f"must be a number of seconds from 1 to {MAX_TTL:.0f}"
    return ""


def command_body(
    device: str, counter: int, action: str, ttl: float = 300.0, **arguments: str
) -> dict[str, Any]:
    """What the collector signs (see `linerec collector command`)."""
    problem = valid_ttl(ttl)
    if problem:
        raise ValueError(f"ttl {problem} (got {ttl!r})")
    return {
        "device": device,
        "counter": counter,
        "expires": round(time.time() + ttl, 3),
        "action": action,
        **arguments,
    }


def describe(command: Command) -> str:
    return json.dumps({"action": command.action, **command.arguments}, sort_keys=True)
