"""Hook and ring sense: edges in, events out, with the clock in the test's hands."""

import pytest

from linerec.hardware.sense import (
    HookBreak,
    HookFlash,
    HookGlitch,
    HookSense,
    OffHook,
    OnHook,
    RingSense,
    RingStart,
    RingStop,
)


def run(
    sense: HookSense, edges: list[tuple[float, bool]], until: float, step: float = 0.02
) -> list[object]:
    """Feed edges, advancing the clock in frame steps as the daemon does."""
    events: list[object] = []
    pending = sorted(edges)
    t = 0.0
    while t <= until + 1e-9:
        while pending and pending[0][0] < t:
            at, level = pending.pop(0)
            events += sense.feed_edge(level, at)
        events += sense.advance(t)
        t = round(t + step, 6)
    return events


def test_first_reading_fires_nothing() -> None:
    sense = HookSense(initial_off_hook=True)
    assert sense.advance(10.0) == []
    assert sense.off_hook


def test_off_hook_is_stamped_at_its_edge_once_it_holds() -> None:
    sense = HookSense(initial_off_hook=False)
    assert sense.feed_edge(True, 1.000) == []
    assert sense.advance(1.029) == []
    assert sense.advance(1.030) == [OffHook(t=1.000)]  # exactly at the debounce limit
    assert sense.advance(2.0) == []


def test_bounce_shorter_than_debounce_is_one_edge() -> None:
    sense = HookSense(initial_off_hook=False)
    edges = [(1.000, True), (1.002, False), (1.004, True), (1.006, False), (1.008, True)]
    assert run(sense, edges, until=1.2) == [OffHook(t=1.008)]


def test_glitch_shorter_than_debounce_is_ignored() -> None:
    sense = HookSense(initial_off_hook=False)
    assert run(sense, [(1.0, True), (1.029, False)], until=2.0) == []


@pytest.mark.parametrize("duration", [0.100, 0.500, 0.960])
def test_hook_flash(duration: float) -> None:
    sense = HookSense(initial_off_hook=True)
    events = run(sense, [(1.0, False), (1.0 + duration, True)], until=3.0)
    assert events == [HookBreak(t=1.0), HookFlash(t=1.0, duration=pytest.approx(duration))]
    assert sense.off_hook


def test_break_shorter_than_a_flash_is_a_glitch() -> None:
    sense = HookSense(initial_off_hook=True)
    events = run(sense, [(1.0, False), (1.06, True)], until=2.0)
    assert events == [HookBreak(t=1.0), HookGlitch(t=1.0, duration=pytest.approx(0.06))]


def test_hang_up_is_stamped_when_the_break_began() -> None:
    sense = HookSense(initial_off_hook=True)
    events = run(sense, [(1.0, False)], until=3.0)
    assert events == [HookBreak(t=1.0), OnHook(t=1.0)]
    assert not sense.off_hook


def test_back_off_hook_just_before_flash_max_is_still_a_flash() -> None:
    # The off-hook edge at 1.99 is confirmed only at 2.02, after flash_max has passed.
    sense = HookSense(initial_off_hook=True)
    events = run(sense, [(1.0, False), (1.99, True)], until=3.0, step=0.01)
    assert events == [HookBreak(t=1.0), HookFlash(t=1.0, duration=pytest.approx(0.99))]


def test_edges_delivered_in_one_batch_late() -> None:
    # Edges that arrive together (a busy loop) are judged by their own timestamps.
    sense = HookSense(initial_off_hook=False)
    events = sense.feed_edge(True, 1.0) + sense.feed_edge(False, 1.5) + sense.advance(3.0)
    assert events == [OffHook(t=1.0), HookBreak(t=1.5), OnHook(t=1.5)]


def test_bad_timing_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="debounce < flash_min < flash_max"):
        HookSense(initial_off_hook=False, debounce=0.2, flash_min=0.1)


def pulses(start: float, seconds: float, hz: float) -> list[tuple[float, bool]]:
    half = 0.5 / hz
    count = round(seconds * hz)
    return [(start + i * half, i % 2 == 0) for i in range(2 * count)]


def test_ring_burst_of_20_hz_pulses_is_one_ring() -> None:
    sense = RingSense()
    events: list[object] = []
    for t, active in pulses(1.0, 2.0, 20.0):
        events += sense.feed_edge(active, t)
    events += sense.advance(3.5)
    assert events == [RingStart(t=1.0), RingStop(t=pytest.approx(2.975))]


def test_a_single_spike_is_not_a_ring() -> None:
    sense = RingSense()
    events = (
        sense.feed_edge(True, 1.0)
        + sense.feed_edge(False, 1.01)
        + sense.advance(1.15)
        + sense.advance(2.0)
    )
    assert events == []


def test_steady_ring_signal_counts_too() -> None:
    sense = RingSense()
    events = (
        sense.feed_edge(True, 1.0)
        + sense.advance(1.2)
        + sense.feed_edge(False, 3.0)
        + sense.advance(3.3)
    )
    assert events == [RingStart(t=1.0), RingStop(t=3.0)]
