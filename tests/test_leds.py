import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linerec.hardware.leds import Led, Show
from linerec.hardware.pins import OutputPin


class RecordingPin(OutputPin):
    def __init__(self) -> None:
        super().__init__(22, "test LED")
        self.writes: list[bool] = []

    def write(self, level: bool) -> None:
        self.writes.append(level)


def test_patterns_are_distinct() -> None:
    # Enum members with equal values become aliases that iteration skips: compare by name.
    assert len(Show.__members__) == len(list(Show))


def test_recording_is_solid_and_notice_blinks_at_2_hz() -> None:
    assert all(Show.RECORDING.value.lit_at(t / 10) for t in range(100))
    notice = [Show.NOTICE.value.lit_at(t * 0.125) for t in range(8)]
    assert notice == [True, True, False, False, True, True, False, False]


def test_fault_codes_blink_their_number() -> None:
    pattern = Show.FAULT_STORE.value
    period = sum(seconds for _, seconds in pattern.steps)
    samples = [pattern.lit_at(t * 0.05) for t in range(round(period / 0.05))]
    rising = sum(1 for a, b in zip([False, *samples], samples, strict=False) if b and not a)
    assert rising == 3


def test_led_writes_only_on_change() -> None:
    pin = RecordingPin()
    led = Led(pin)
    led.set(Show.RECORDING, 0.0)
    for t in range(50):
        led.update(t * 0.02)
    led.set(Show.OFF, 1.0)
    assert pin.writes == [True, False]


@given(
    show=st.sampled_from(list(Show)),
    elapsed=st.floats(min_value=0.0, max_value=1e5, allow_nan=False, allow_infinity=False),
)
@settings(max_examples=300, deadline=None)
def test_next_change_is_when_the_pattern_next_changes(show: Show, elapsed: float) -> None:
    """The daemon sleeps until an LED changes next: no change may come sooner, and one
    comes then (a steady pattern never changes)."""
    pattern = show.value
    change = pattern.next_change(elapsed)
    lit = pattern.lit_at(elapsed)
    if len({lit for lit, _ in pattern.steps}) == 1:
        assert change == math.inf
        return
    assert elapsed < change <= elapsed + sum(seconds for _, seconds in pattern.steps)
    assert pattern.lit_at(change) != lit
    step = min(seconds for _, seconds in pattern.steps) / 4
    t = elapsed
    while t < change - 1e-6:
        assert pattern.lit_at(t) == lit, (t, change)
        t += step


def test_led_next_change_counts_from_when_the_show_began() -> None:
    led = Led(RecordingPin())
    led.set(Show.PAUSED, 10.0)  # lit 0.1 s, dark 0.9 s
    assert led.next_change(10.05) == pytest.approx(10.1, abs=1e-5)
    assert led.next_change(10.5) == pytest.approx(11.0, abs=1e-5)
    led.set(Show.RECORDING, 12.0)
    assert led.next_change(12.5) == math.inf
