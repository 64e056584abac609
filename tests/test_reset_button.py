"""The factory-reset button hold at power-on, driven by simulated pin edges on a simulated
clock: held HOLD seconds wipes, let go earlier or not pressed at all does nothing."""

from __future__ import annotations

import pytest

from linerec.provision.button import HOLD, ResetHold, Verdict, watch
from linerec.sim.backend import SimClock, SimPinFactory

BUTTON, LED = 23, 5  # hw/pinmap.toml: line 1's button, the status LED


class Board:
    """Pins on a simulated clock; `script` is when the button goes up (False) or down (True)."""

    def __init__(self, pressed_at_start: bool, script: list[tuple[float, bool]]) -> None:
        self.clock = SimClock()
        self.pins = SimPinFactory(self.clock, {BUTTON: not pressed_at_start})
        self.script = sorted(script)

    def wait(self, seconds: float) -> None:
        until = self.clock.now + seconds
        while self.script and self.script[0][0] <= until:
            t, pressed = self.script.pop(0)
            self.clock.advance(t)
            self.pins.drive(BUTTON, not pressed, t)  # to ground when pressed
        self.clock.advance(until)

    def watch(self) -> bool:
        return watch(
            self.pins, button=BUTTON, led=LED, clock=lambda: self.clock.now, wait=self.wait
        )


def test_held_for_the_whole_time_wipes_and_the_led_stays_lit() -> None:
    board = Board(True, [(HOLD + 5, False)])
    assert board.watch() is True
    led = board.pins.outputs[LED].history
    assert led[-1][1] is True
    assert sum(1 for _, level in led if level) > HOLD / 0.1 / 3  # it blinked meanwhile
    assert board.clock.now == pytest.approx(HOLD, abs=0.11)  # no longer than needed


def test_let_go_early_does_nothing() -> None:
    board = Board(True, [(HOLD - 0.5, False)])
    assert board.watch() is False
    assert board.pins.outputs[LED].history[-1][1] is False
    assert board.clock.now < HOLD


def test_not_pressed_at_power_on_returns_at_once() -> None:
    board = Board(False, [(1.0, True)])  # pressed after boot: the line's button, not a reset
    assert board.watch() is False
    assert board.clock.now == 0.0


def test_a_bounce_counts_as_a_release() -> None:
    hold = ResetHold(True, 0.0)
    assert hold.edge(False, 0.02) is Verdict.NO
    assert hold.edge(True, 0.04) is Verdict.NO  # not again once let go
    assert ResetHold(True, 0.0).at(HOLD) is Verdict.RESET
