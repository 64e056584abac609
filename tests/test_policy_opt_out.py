"""Once a caller opts out, nothing more of that call is kept, whatever comes after.

The call policy on its own (no audio, no threads, no clock): decisions about audio a stalled
or lagging capture hands over late, the end of a notice the line output had finished while a
hook break was judged, and any input at all after the opt-out, until the next call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from linerec.call.consent import ConsentMode
from linerec.call.events import CallEvent, HungUp, OptedOut, RecordingResumed, RecordingStarted
from linerec.call.machine import State
from linerec.call.policy import CallPolicy, Decision, Keep, PolicySettings, Retag
from linerec.dsp.dtmf import DtmfDigit
from linerec.dsp.voice import Voice
from linerec.hardware.sense import HookFlash, OffHook, OnHook, RingStart

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def policy(consent: str = "one-party", **settings: object) -> CallPolicy:
    return CallPolicy(
        line="line1",
        settings=PolicySettings(consent=ConsentMode(consent), **settings),  # type: ignore[arg-type]
        wall=lambda t: EPOCH + timedelta(seconds=t),
    )


def answered(p: CallPolicy, at: float = 1.0) -> None:
    p.line_event(RingStart(t=at - 0.5))
    p.line_event(OffHook(t=at))


def kept(decisions: list[Decision]) -> list[Decision]:
    """What would keep audio, or say that it is kept."""
    return [
        d
        for d in decisions
        if (isinstance(d, Retag) and d.keep is not Keep.DROP)
        or isinstance(d, RecordingStarted | RecordingResumed)
    ]


def test_audio_from_before_an_opt_out_handed_over_after_it_is_not_kept() -> None:
    """A command acts at the moment it came; a capture that stalled (or lagged) hands the
    audio from just before that moment over after the opt-out was carried out. It belongs to
    the opted-out call: none of it is kept (it once began a second recording of the call)."""
    p = policy()
    answered(p)
    assert p.keep_spans(3.0, 3.02) == [(3.0, Keep.RECORD)]
    out = p.command("opt_out", 5.0)
    assert [type(d) for d in out if isinstance(d, OptedOut)] == [OptedOut]
    assert p.keep_spans(4.8, 4.82) == [(4.8, Keep.DROP)]
    assert p.keep_spans(4.99, 5.01) == [(4.99, Keep.DROP)]
    assert p.keep_spans(1.0, 9.0) == [(1.0, Keep.DROP)]
    assert p.opted_out


def test_a_notice_ending_after_an_opt_out_starts_no_recording() -> None:
    """The notice ended while a hook break was judged, the caller opted out meanwhile (a
    command, the button), and the break was a flash: the end of the notice comes after the
    opt-out. No recording starts, nothing is kept, and the hang-up says so."""
    p = policy("notice")
    answered(p)
    p.command("opt_out", 3.0)
    out = p.line_event(HookFlash(t=6.2, duration=0.3))
    out += p.notice_done(6.0)
    assert kept(out) == []
    assert [e.name for e in out if isinstance(e, CallEvent)] == ["notice_played"]
    assert p.keep_spans(6.0, 30.0) == [(6.0, Keep.DROP)]
    out = p.line_event(OnHook(t=30.0))
    assert [e.recorded for e in out if isinstance(e, HungUp)] == [False]  # type: ignore[attr-defined]


def test_the_next_call_is_recorded_again() -> None:
    p = policy()
    answered(p)
    p.command("opt_out", 5.0)
    p.line_event(OnHook(t=10.0))
    assert p.opted_out  # what the delay line still holds is the opted-out call's
    assert p.keep_spans(9.0, 10.02) == [(9.0, Keep.DROP)]
    answered(p, at=20.0)
    assert not p.opted_out
    assert p.keep_spans(20.0, 20.02) == [(20.0, Keep.RECORD)]
    assert p.keep_spans(19.9, 19.92) == [(19.9, Keep.DROP)]  # between the calls


_AFTER = st.lists(
    st.one_of(
        st.tuples(st.just("button"), st.floats(0.0, 60.0)),
        st.tuples(st.sampled_from(["pause", "resume", "opt_out"]), st.floats(0.0, 60.0)),
        st.tuples(st.just("notice_done"), st.floats(0.0, 60.0)),
        st.tuples(st.just("tick"), st.floats(0.0, 400.0)),
        st.tuples(st.just("voice"), st.floats(0.0, 60.0)),
        st.tuples(st.just("flash"), st.floats(0.0, 60.0)),
        st.tuples(st.sampled_from(["*", "1", "2", "9", "#"]), st.floats(0.0, 60.0)),
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(
    consent=st.sampled_from(["one-party", "beep", "notice", "notice+beep"]),
    inbound=st.booleans(),
    opt_out_at=st.floats(1.0, 40.0),
    how=st.sampled_from(["command", "key", "button"]),
    after=_AFTER,
)
def test_nothing_after_an_opt_out_keeps_any_of_the_call(
    consent: str, inbound: bool, opt_out_at: float, how: str, after: list[tuple[str, float]]
) -> None:
    """Whatever follows an opt-out in the same call (a resume, the button, a pause code and
    a resume code, the end of the notice, a forgotten pause's limit, a flash), no audio of
    the call at any time is kept and no event says a recording started or resumed."""
    p = policy(consent, opt_out_key="9", opt_out_window=60.0, pause_limit=180.0)
    if inbound:
        p.line_event(RingStart(t=0.5))
    p.line_event(OffHook(t=1.0))
    if how == "command":
        out = p.command("opt_out", opt_out_at)
    elif how == "key":
        out = p.heard(DtmfDigit(t=opt_out_at, digit="9", duration=0.08))
    else:
        out = p.button(opt_out_at)
    if not any(isinstance(d, OptedOut) for d in out):
        return  # not open to this way of opting out in this call
    decisions: list[Decision] = []
    for what, t in after:
        if what == "button":
            decisions += p.button(t)
        elif what in ("pause", "resume", "opt_out"):
            decisions += p.command(what, t)
        elif what == "notice_done":
            if p.machine.state is State.NOTICE:  # the line output ends a notice it plays
                decisions += p.notice_done(t)
        elif what == "tick":
            decisions += p.tick(t)
        elif what == "voice":
            decisions += p.heard(Voice(t=t))
        elif what == "flash":
            decisions += p.line_event(HookFlash(t=t, duration=0.3))
        else:
            decisions += p.heard(DtmfDigit(t=t, digit=what, duration=0.08))
    assert kept(decisions) == []
    assert p.keep_spans(0.0, 500.0) == [(0.0, Keep.DROP)]
    hung = p.line_event(OnHook(t=500.0))
    assert [e.recorded for e in hung if isinstance(e, HungUp)] == [False]  # type: ignore[attr-defined]
    assert kept(hung) == []
