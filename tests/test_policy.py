"""The call policy on its own: events in, decisions out, no audio, no threads, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from linerec.call.consent import ConsentMode
from linerec.call.events import CallEvent, Dialled, HungUp, OptedOut
from linerec.call.policy import (
    CallPolicy,
    Decision,
    Discard,
    Keep,
    Note,
    Phase,
    PolicySettings,
    Retag,
    Seal,
    Silence,
)
from linerec.dsp.dtmf import DtmfDigit
from linerec.dsp.progress import Tone
from linerec.dsp.voice import Voice
from linerec.hardware.sense import OffHook, OnHook, RingStart

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def policy(consent: str = "one-party", **settings: object) -> CallPolicy:
    return CallPolicy(
        line="line1",
        settings=PolicySettings(consent=ConsentMode(consent), **settings),  # type: ignore[arg-type]
        wall=lambda t: EPOCH + timedelta(seconds=t),
    )


def keys(p: CallPolicy, digits: str, start: float, step: float = 0.2) -> list[Decision]:
    out: list[Decision] = []
    for i, digit in enumerate(digits):
        out += p.heard(DtmfDigit(t=start + i * step, digit=digit, duration=0.08))
    return out


def events(decisions: list[Decision], kind: type[CallEvent]) -> list[CallEvent]:
    return [d for d in decisions if isinstance(d, kind)]


def test_dialling_ends_at_ringback_and_later_keys_are_never_the_number() -> None:
    p = policy()
    out = p.line_event(OffHook(t=0.0))
    out += keys(p, "5551234", 1.0)
    assert p.phase(2.5) is Phase.DIALLING
    out += p.heard(Tone(t=3.0, name="ringback", plan="na"))
    assert p.phase(3.1) is Phase.RECORDING
    out += keys(p, "4111", 9.0)  # keyed after the call connected: a card, not dialling
    assert [e.number for e in events(out, Dialled)] == ["5551234"]  # type: ignore[attr-defined]
    assert [d.value for d in out if isinstance(d, Note)] == ["5551234"]
    assert len([d for d in out if isinstance(d, Silence)]) == 11  # every key silenced


def test_a_pause_code_keyed_while_dialling_is_not_part_of_the_number() -> None:
    p = policy(pause_code="*1")
    out = p.line_event(OffHook(t=0.0))
    out += keys(p, "5551234*1", 1.0)
    assert p.phase(3.0) is Phase.PAUSED
    assert [e.number for e in events(out, Dialled)] == ["5551234"]  # type: ignore[attr-defined]
    (pause,) = [d for d in out if isinstance(d, Retag) and d.keep is Keep.DROP]
    assert pause.since == pytest.approx(2.4)  # from the code's first key


@pytest.mark.parametrize(
    ("sign", "number"),
    [
        (Voice(t=3.0), "555"),  # somebody speaks after the digits
        (Tone(t=3.0, name="dial", plan="na"), None),  # dial tone is not an answer
    ],
)
def test_what_ends_dialling(sign: Voice | Tone, number: str | None) -> None:
    p = policy()
    p.line_event(OffHook(t=0.0))
    keys(p, "555", 1.0)
    out = p.heard(sign)
    assert [e.number for e in events(out, Dialled)] == ([number] if number else [])  # type: ignore[attr-defined]


def test_dialling_ends_after_the_gap_and_after_the_limit() -> None:
    p = policy(dial_gap=4.0, dial_limit=30.0)
    p.line_event(OffHook(t=0.0))
    keys(p, "12", 1.0)
    assert events(p.tick(5.1), Dialled) == []
    assert [e.number for e in events(p.tick(5.25), Dialled)] == ["12"]  # type: ignore[attr-defined]
    q = policy(dial_limit=10.0)
    q.line_event(OffHook(t=0.0))
    assert q.phase(9.0) is Phase.DIALLING
    q.tick(10.1)
    assert q.phase(10.2) is Phase.RECORDING


def test_voice_during_our_own_notice_is_not_an_answer() -> None:
    p = policy("notice")
    p.line_event(OffHook(t=0.0))
    keys(p, "555", 0.5)
    assert events(p.heard(Voice(t=1.5)), Dialled) == []  # the notice's echo
    assert p.phase(1.6) is Phase.DIALLING


def test_consent_changed_between_calls_is_the_one_opt_out_reads() -> None:
    p = policy("one-party", opt_out_key="9")
    p.set_consent(ConsentMode.NOTICE)
    p.line_event(RingStart(t=0.0))
    p.line_event(OffHook(t=1.0))
    assert p.phase(1.5) is Phase.OPT_OUT_OPEN
    out = keys(p, "9", 2.0)
    assert [type(d) for d in out if isinstance(d, OptedOut | Discard)] == [Discard, OptedOut]
    hung = p.line_event(OnHook(t=4.0))
    assert [e.recorded for e in events(hung, HungUp)] == [False]  # type: ignore[attr-defined]


def test_an_opted_out_call_is_hung_up_unrecorded_after_the_notice_too() -> None:
    p = policy("notice", opt_out_key="9", opt_out_window=5.0)
    p.line_event(RingStart(t=0.0))
    p.line_event(OffHook(t=1.0))
    p.notice_done(5.0)
    keys(p, "9", 7.0)
    out = p.line_event(OnHook(t=9.0))
    assert [e.recorded for e in events(out, HungUp)] == [False]  # type: ignore[attr-defined]
    assert any(isinstance(d, Seal) for d in out)


def test_the_opt_out_key_is_for_the_far_party_of_an_inbound_call_only() -> None:
    p = policy("notice", opt_out_key="9")
    p.line_event(OffHook(t=0.0))  # outbound: the notice played to whoever picked up
    out = keys(p, "9", 0.5)
    assert events(out, OptedOut) == []


def test_pause_and_resume_take_effect_at_their_own_sample() -> None:
    p = policy()
    p.line_event(OffHook(t=0.0))
    p.tick(40.0)  # dialling is long over
    p.button(10.013)
    assert p.keep_spans(10.0, 10.02) == [(10.0, Keep.RECORD), (10.013, Keep.DROP)]
    p.button(12.005)
    assert p.keep_spans(12.0, 12.02) == [(12.0, Keep.DROP), (12.005, Keep.RECORD)]


def test_a_call_hung_up_while_paused_keeps_nothing_after_the_hang_up() -> None:
    """The pause ends with the call (noted with the recording, reported), but what the line
    carried from the hang-up on, held back while the break was judged, stays dropped. (The
    hang-up's resume once retagged it to be kept: a second of line after every call that
    ended paused.)"""
    p = policy()
    p.line_event(OffHook(t=0.0))
    p.tick(40.0)
    p.button(10.0)
    out = p.line_event(OnHook(t=30.0))
    assert [e.name for e in out if isinstance(e, CallEvent)] == [
        "hung_up",
        "recording_resumed",
    ]
    assert [d for d in out if isinstance(d, Retag) and d.keep is Keep.RECORD] == []
    assert p.keep_spans(29.0, 31.0) == [(29.0, Keep.DROP)]
    (pauses,) = [d.value for d in out if isinstance(d, Note) and d.key == "pauses"]
    assert pauses[0]["seconds"] == 20.0  # type: ignore[index]


@pytest.mark.parametrize(
    "connected",
    [
        lambda p: p.heard(Voice(t=2.7)),  # the far end speaks between the code's two keys
        lambda p: p.tick(2.7),  # the dialling limit passes between them
        lambda p: p.heard(Tone(t=2.7, name="ringback", plan="na")),
    ],
    ids=["voice", "limit", "ringback"],
)
def test_a_pause_code_split_by_the_end_of_dialling_is_not_part_of_the_number(
    connected: object,
) -> None:
    p = policy(pause_code="*1", dial_limit=2.6)
    out = p.line_event(OffHook(t=0.0))
    out += keys(p, "5551234*", 1.0)  # the '*' at 2.4
    out += connected(p)  # type: ignore[operator]
    out += keys(p, "1", 3.0)  # the code's second key: paused from the '*'
    out += keys(p, "4111", 4.0)
    out += keys(p, "*2", 6.0)
    out += p.tick(9.0)
    assert [e.number for e in events(out, Dialled)] == ["5551234"]  # type: ignore[attr-defined]
    assert [d.value for d in out if isinstance(d, Note) and d.key == "called_number"] == ["5551234"]
    (pause,) = [d for d in out if isinstance(d, Retag) and d.keep is Keep.DROP]
    assert pause.since == pytest.approx(2.4)


def test_a_trailing_star_that_begins_no_code_stays_in_the_number() -> None:
    p = policy(pause_code="*1")
    out = p.line_event(OffHook(t=0.0))
    out += keys(p, "5551234*", 1.0)
    out += p.heard(Voice(t=2.7))
    out += p.tick(5.0)  # no second key came: the '*' was dialled
    out += p.line_event(OnHook(t=6.0))
    assert [e.number for e in events(out, Dialled)] == ["5551234*"]  # type: ignore[attr-defined]


def test_a_number_waiting_on_a_code_is_noted_at_hang_up() -> None:
    p = policy(pause_code="*1")
    out = p.line_event(OffHook(t=0.0))
    out += keys(p, "5551234*", 1.0)
    out += p.heard(Voice(t=2.7))
    out += p.line_event(OnHook(t=2.8))
    out += p.tick(3.5)
    assert [e.number for e in events(out, Dialled)] == ["5551234*"]  # type: ignore[attr-defined]


def test_a_code_keyed_wholly_after_dialling_takes_nothing_from_the_number() -> None:
    p = policy(pause_code="#1", resume_code="*2")
    out = p.line_event(OffHook(t=0.0))
    out += keys(p, "555*", 1.0)  # ends with the resume code's first key
    out += p.heard(Voice(t=2.0))
    out += keys(p, "#1", 2.2)  # the pause code, all of it after the call connected
    out += p.tick(6.0)
    assert [e.number for e in events(out, Dialled)] == ["555*"]  # type: ignore[attr-defined]
    assert p.paused


@pytest.mark.parametrize(
    "heard",
    [Voice(t=0.6), Tone(t=0.6, name="ringback", plan="etsi")],
    ids=["voice", "tone"],
)
def test_a_sound_that_began_before_the_last_key_does_not_end_dialling(
    heard: Voice | Tone,
) -> None:
    # CEPT dial tone (425 Hz) cut short by the first key, told late by analysis: not an answer.
    p = policy()
    out = p.line_event(OffHook(t=0.5))
    out += keys(p, "55", 1.3, step=0.16)
    out += p.heard(heard)
    out += keys(p, "51234", 1.62, step=0.16)
    out += p.tick(7.0)
    assert [e.number for e in events(out, Dialled)] == ["5551234"]  # type: ignore[attr-defined]
