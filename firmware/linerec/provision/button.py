"""Factory reset by hand: hold line 1's button while the box powers on (docs/security.md).

For a box nobody can log in to (no SSH key in its site file, or the site is gone). At boot,
before the recorder and provisioning start, `linerec factory-reset --button` looks at the
button once: not pressed, and the boot goes on at once. Pressed, and the status LED blinks
fast for as long as it stays pressed; held for HOLD seconds without a release, the box is
wiped as by `factory-reset --yes` (the LED then stays lit) and reboots into a first boot.
Let go earlier and nothing happens: a button knocked while plugging in does not wipe a box.

`ResetHold` is the decision alone (edges in, verdict out); `watch` drives it from the pins
of a hardware backend, so the simulated line's pins test it with edges at set times.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from linerec.hardware.pins import PinFactory

HOLD = 10.0  # seconds the button must be held from power-on
BLINK = 0.1  # seconds between LED changes while it is held


class Verdict(Enum):
    NO = "no"  # not pressed at start, or let go too early
    HOLDING = "holding"
    RESET = "reset"


class ResetHold:
    def __init__(self, pressed: bool, t0: float, hold: float = HOLD) -> None:
        self.t0 = t0
        self.hold = hold
        self.verdict = Verdict.HOLDING if pressed else Verdict.NO

    def edge(self, pressed: bool, t: float) -> Verdict:
        if self.verdict is Verdict.HOLDING:
            if t - self.t0 >= self.hold:
                self.verdict = Verdict.RESET  # held long enough before this edge
            elif not pressed:
                self.verdict = Verdict.NO
        return self.verdict

    def at(self, t: float) -> Verdict:
        if self.verdict is Verdict.HOLDING and t - self.t0 >= self.hold:
            self.verdict = Verdict.RESET
        return self.verdict


def watch(
    pins: PinFactory,
    *,
    button: int,
    led: int,
    clock: Callable[[], float],
    wait: Callable[[float], None],
    hold: float = HOLD,
) -> bool:
    """Whether the button was held from now for `hold` seconds (the LED blinking meanwhile).

    `wait(seconds)` lets up to that much time pass; an edge may end it early (on the box it
    waits on an event the pin's callback sets; a test moves a simulated clock and drives
    edges)."""
    pin = pins.input(button, name="line[0] button (factory reset)")
    light = pins.output(led, name="status LED")
    edges: list[tuple[bool, float]] = []
    pin.on_edge(lambda level, t: edges.append((not level, t)))  # pulled up: pressed reads low
    decision = ResetHold(not pin.read(), clock(), hold)
    lit = False
    try:
        while decision.at(clock()) is Verdict.HOLDING:
            lit = not lit
            light.write(lit)
            wait(BLINK)
            while edges:
                pressed, t = edges.pop(0)
                decision.edge(pressed, t)
    finally:
        pin.on_edge(None)
    light.write(decision.verdict is Verdict.RESET)
    return decision.verdict is Verdict.RESET
