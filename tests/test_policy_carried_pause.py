"""A call paused before a daemon restart, taken over paused (`CallPolicy.carry_pause`): nothing
of it is kept until it resumes, under any consent mode; the forgotten-pause limit counts from
the pause's first moment; the notice played again keeps nothing and still offers the opt-out."""

from __future__ import annotations

import pytest

from linerec.call.consent import ConsentMode
from linerec.call.events import CallEvent, Dialled, OptedOut, RecordingResumed
from linerec.call.machine import State
from linerec.call.policy import Keep, Note, Phase, Retag
from linerec.hardware.sense import OffHook, OnHook, RingStart
from test_policy import events, keys, policy


def kept_any(p_spans: list[tuple[float, Keep]]) -> bool:
    return any(keep is not Keep.DROP for _, keep in p_spans)


@pytest.mark.parametrize("consent", [mode.value for mode in ConsentMode])
def test_a_carried_pause_keeps_nothing_until_the_resume(consent: str) -> None:
    p = policy(consent, opt_out_key="9")
    p.machine.take_over(None)
    p.carry_pause(30.0)
    out = p.line_event(OffHook(t=0.0))
    assert [e.name for e in out if isinstance(e, CallEvent)][:2] == ["answered", "recording_paused"]
    assert [d for d in out if isinstance(d, Retag) and d.keep is not Keep.DROP] == []
    assert p.paused and p.phase(0.0) is Phase.PAUSED
    if p.machine.state is State.NOTICE:  # the notice plays again, kept by no one
        p.notice_done(6.0)
    assert p.machine.state is State.RECORDING
    assert not kept_any(p.keep_spans(0.0, 20.0))
    keys(p, "4111111111111111", 20.0)  # the card number, keyed
    assert not kept_any(p.keep_spans(20.0, 24.0))
    out = keys(p, "*2", 30.0)
    assert [e.name for e in out if isinstance(e, CallEvent)][-1] == "recording_resumed"
    assert p.keep_spans(30.5, 31.0) == [(30.5, Keep.RECORD)]
    (pauses,) = [d.value for d in out if isinstance(d, Note) and d.key == "pauses"]
    assert pauses[0]["seconds"] == pytest.approx(60.0)  # type: ignore[index]


def test_the_forgotten_pause_limit_counts_from_before_the_restart() -> None:
    p = policy(pause_limit=180.0)
    p.carry_pause(170.0)
    p.line_event(OffHook(t=100.0))
    assert p.quiet_until() == pytest.approx(110.0)
    assert p.tick(109.0) == []
    assert p.paused
    out = p.tick(110.0)
    assert [d.by for d in out if isinstance(d, RecordingResumed)] == ["auto"]
    assert p.keep_spans(110.0, 111.0) == [(110.0, Keep.RECORD)]


def test_a_pause_older_than_the_limit_resumes_at_once() -> None:
    p = policy(pause_limit=180.0)
    p.carry_pause(500.0)
    p.line_event(OffHook(t=0.0))
    out = p.tick(0.02)
    assert any(isinstance(d, CallEvent) and d.name == "recording_resumed" for d in out)


def test_a_resume_while_the_notice_plays_again_keeps_its_rest_as_the_head() -> None:
    p = policy("notice")
    p.carry_pause(5.0)
    p.line_event(OffHook(t=0.0))
    p.command("resume", 2.0)
    assert p.keep_spans(1.0, 3.0) == [(1.0, Keep.DROP), (2.0, Keep.NOTICE)]
    p.notice_done(6.0)
    assert p.keep_spans(6.0, 7.0) == [(6.0, Keep.RECORD)]


def test_the_opt_out_key_works_in_the_notice_played_again_while_paused() -> None:
    p = policy("notice", opt_out_key="9", opt_out_window=5.0)
    p.machine.take_over(None)
    p.line_event(RingStart(t=0.0))
    p.carry_pause(10.0)
    p.line_event(OffHook(t=1.0))  # inbound
    out = keys(p, "9", 2.0)
    assert events(out, OptedOut) != []
    assert p.opted_out and not p.paused


def test_keys_of_a_carried_paused_outbound_call_are_no_number() -> None:
    p = policy()
    p.carry_pause(3.0)
    p.line_event(OffHook(t=0.0))  # outbound, as taken over
    out = keys(p, "4111111111111111", 1.0)
    out += p.line_event(OnHook(t=20.0))
    assert events(out, Dialled) == []
    assert not any(isinstance(d, Note) and d.key == "called_number" for d in out)


def test_a_carried_pause_is_for_the_next_pick_up_only() -> None:
    p = policy()
    p.carry_pause(3.0)
    p.carry_pause(None)  # the line went on hook while the daemon was down
    p.line_event(OffHook(t=0.0))
    assert not p.paused
