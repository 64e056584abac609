"""The call flow as a pure state machine: whole event lists compared."""

import pytest

from linerec.call.consent import ConsentMode
from linerec.call.events import (
    Answered,
    Direction,
    HookFlashed,
    HungUp,
    MissedCall,
    NoticeAbandoned,
    NoticeDone,
    NoticePlayed,
    NoticeStarted,
    RecordingStarted,
    Ringing,
)
from linerec.call.machine import CallMachine, CallStateError, State
from linerec.hardware.sense import HookBreak, HookFlash, OffHook, OnHook, RingStart, RingStop

INBOUND = Direction.INBOUND
OUTBOUND = Direction.OUTBOUND


def machine(consent: str = "notice") -> CallMachine:
    return CallMachine(line="line1", consent=ConsentMode(consent))


def test_inbound_call_with_notice() -> None:
    m = machine("notice")
    events = []
    for event in (
        RingStart(t=0.0),
        RingStop(t=2.0),
        RingStart(t=6.0),
        OffHook(t=9.0),
        NoticeDone(t=14.7),
        HookBreak(t=30.0),
        OnHook(t=30.0),
    ):
        events += m.feed(event)
    assert events == [
        Ringing(t=0.0, line="line1"),
        Answered(t=9.0, line="line1", direction=INBOUND, rings=2),
        NoticeStarted(t=9.0, line="line1"),
        NoticePlayed(t=14.7, line="line1"),
        RecordingStarted(t=14.7, line="line1", direction=INBOUND, beep=False),
        HungUp(t=30.0, line="line1", recorded=True),
    ]
    assert m.state is State.IDLE


@pytest.mark.parametrize(("consent", "beep"), [("one-party", False), ("beep", True)])
def test_modes_without_notice_record_from_off_hook(consent: str, beep: bool) -> None:
    m = machine(consent)
    assert m.feed(OffHook(t=1.0)) == [
        Answered(t=1.0, line="line1", direction=OUTBOUND, rings=0),
        RecordingStarted(t=1.0, line="line1", direction=OUTBOUND, beep=beep),
    ]


def test_notice_and_beep_beeps_after_the_notice() -> None:
    m = machine("notice+beep")
    m.feed(OffHook(t=1.0))
    assert m.feed(NoticeDone(t=6.0)) == [
        NoticePlayed(t=6.0, line="line1"),
        RecordingStarted(t=6.0, line="line1", direction=OUTBOUND, beep=True),
    ]


def test_hang_up_during_notice_leaves_no_recording() -> None:
    m = machine("notice")
    m.feed(OffHook(t=1.0))
    assert m.feed(OnHook(t=2.0)) == [
        NoticeAbandoned(t=2.0, line="line1"),
        HungUp(t=2.0, line="line1", recorded=False),
    ]
    assert m.state is State.IDLE


def test_missed_call_after_ringing_stops() -> None:
    m = machine()
    m.feed(RingStart(t=0.0))
    m.feed(RingStop(t=2.0))
    assert m.tick(9.9) == []
    assert m.tick(10.0) == [MissedCall(t=2.0, line="line1", rings=1)]
    assert m.state is State.IDLE
    # the next call starts counting afresh
    m.feed(RingStart(t=20.0))
    assert m.feed(OffHook(t=21.0))[0] == Answered(t=21.0, line="line1", direction=INBOUND, rings=1)


def test_flash_during_recording_keeps_the_call() -> None:
    m = machine("one-party")
    m.feed(OffHook(t=1.0))
    assert m.feed(HookBreak(t=5.0)) == []
    assert m.feed(HookFlash(t=5.0, duration=0.4)) == [
        HookFlashed(t=5.0, line="line1", duration=0.4)
    ]
    assert m.state is State.RECORDING


def test_ring_while_off_hook_changes_nothing() -> None:
    m = machine("one-party")
    m.feed(OffHook(t=1.0))
    assert m.feed(RingStart(t=2.0)) == []
    assert m.state is State.RECORDING


def test_impossible_event_names_event_line_and_state() -> None:
    m = machine("one-party")
    m.feed(OffHook(t=1.0))
    with pytest.raises(
        CallStateError, match="line line1: OffHook cannot happen in state recording"
    ):
        m.feed(OffHook(t=2.0))


def test_a_call_taken_over_after_a_restart_keeps_its_direction_once() -> None:
    """The daemon restarted mid-call finds the line off hook: no ring is seen, yet an inbound
    call goes on as inbound; the next call is judged afresh, and so is the pick-up after a
    take-over was called off (the line went on hook)."""
    m = machine("notice")
    m.take_over(INBOUND)
    assert m.feed(OffHook(t=0.0)) == [
        Answered(t=0.0, line="line1", direction=INBOUND, rings=0),
        NoticeStarted(t=0.0, line="line1"),
    ]
    m.feed(OnHook(t=5.0))
    assert m.feed(OffHook(t=9.0))[0] == Answered(t=9.0, line="line1", direction=OUTBOUND, rings=0)
    m.feed(OnHook(t=12.0))
    m.take_over(INBOUND)
    m.take_over(None)
    assert m.feed(OffHook(t=20.0))[0] == Answered(t=20.0, line="line1", direction=OUTBOUND, rings=0)
