"""LED patterns: what the recording and status LEDs show, as a pure function of time.

A pattern is a repeating list of (lit, seconds) steps. `Led` drives one output pin from the
pattern it is showing and the time the daemon's loop gives it, touching the pin only when the
level changes. The patterns are the user interface of the box, listed in README.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from linerec.hardware.pins import OutputPin


@dataclass(frozen=True, slots=True)
class Pattern:
    steps: tuple[tuple[bool, float], ...]

    def lit_at(self, elapsed: float) -> bool:
        if len(self.steps) == 1:
            return self.steps[0][0]
        period = sum(seconds for _, seconds in self.steps)
        position = elapsed % period
        for lit, seconds in self.steps:
            if position < seconds:
                return lit
            position -= seconds
        return self.steps[-1][0]

    def next_change(self, elapsed: float) -> float:
        """The elapsed time at which the LED next changes (inf for a steady pattern): the
        daemon's loop sleeps until then rather than looking at the LED on a fixed beat."""
        steps = self.steps
        lit = self.lit_at(elapsed)
        if all(step_lit == lit for step_lit, _ in steps):
            return math.inf
        position = elapsed % sum(seconds for _, seconds in steps)  # as `lit_at` counts
        index = 0
        while index < len(steps) - 1 and position >= steps[index][1]:
            position -= steps[index][1]
            index += 1
        ahead = steps[index][1] - position  # what is left of the current step
        index = (index + 1) % len(steps)
        while steps[index][0] == lit:
            ahead += steps[index][1]
            index = (index + 1) % len(steps)
        # Just past the boundary, so that `lit_at` there gives the new level whatever the
        # rounding (a microsecond is no LED's business).
        return elapsed + ahead + 1e-6


def _blinks(count: int, *, on: float = 0.2, off: float = 0.3, pause: float = 1.5) -> Pattern:
    steps: list[tuple[bool, float]] = []
    for _ in range(count):
        steps += [(True, on), (False, off)]
    steps[-1] = (False, pause)
    return Pattern(tuple(steps))


class Show(Enum):
    """Every pattern the box can show. Values are (LED, pattern)."""

    # Recording LED (one per line)
    OFF = Pattern(((False, 1.0),))
    NOTICE = Pattern(((True, 0.25), (False, 0.25)))  # 2 Hz blink while the notice plays
    RECORDING = Pattern(((True, 1.0),))  # solid while audio is being kept
    PAUSED = Pattern(((True, 0.1), (False, 0.9)))  # short blink each second (PCI pause)
    # Status LED (one per box)
    IDLE = Pattern(((True, 0.1), (False, 2.9)))  # heartbeat every 3 s: alive, no fault
    RINGING = Pattern(((True, 0.5), (False, 0.5)))
    FAULT_AUDIO = _blinks(2)  # no audio device / capture stalled
    FAULT_STORE = _blinks(3)  # store error or card full
    FAULT_UPLINK = _blinks(4)  # broker unreachable
    FAULT_CONFIG = _blinks(5)  # configuration or site file invalid


class Led:
    def __init__(self, pin: OutputPin) -> None:
        self._pin = pin
        self._show = Show.OFF
        self._since = 0.0
        self._lit: bool | None = None

    @property
    def show(self) -> Show:
        return self._show

    def set(self, show: Show, now: float) -> None:
        if show is not self._show:
            self._show = show
            self._since = now
        self.update(now)

    def update(self, now: float) -> None:
        lit = self._show.value.lit_at(now - self._since)
        if lit != self._lit:
            self._pin.write(lit)
            self._lit = lit

    def next_change(self, now: float) -> float:
        """When the LED next changes, on the clock `set` and `update` are given (inf: not
        unless it is set to another show)."""
        return self._since + self._show.value.next_change(now - self._since)

    def off(self) -> None:
        self._pin.write(False)
        self._lit = False
