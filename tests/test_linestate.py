"""The audio-only hook rule, frame by frame, with the clock in the test's hands."""

from linerec.dsp.callerid import CallerId
from linerec.dsp.linestate import AudioHookSense
from linerec.dsp.progress import Quiet, Tone


def run(
    frames: list[tuple[float, list[object]]], sense: AudioHookSense | None = None
) -> list[tuple[bool, float]]:
    sense = sense or AudioHookSense()
    edges = []
    for index, (level, heard) in enumerate(frames):
        edges += sense.feed(index * 0.02, level, heard)
    return edges


def test_speech_starts_a_call_where_it_began() -> None:
    frames = [(-80.0, [])] * 50 + [(-20.0, [])] * 20
    assert run(frames) == [(True, 1.0)]


def test_a_click_does_not() -> None:
    assert run([(-80.0, [])] * 10 + [(-10.0, [])] * 5 + [(-80.0, [])] * 50) == []


def test_dial_tone_starts_a_call_at_once() -> None:
    assert run([(-80.0, [])] * 5 + [(-15.0, [Tone(t=0.1, name="dial", plan="na")])]) == [
        (True, 0.1)
    ]


def test_caller_id_on_hook_is_not_a_call() -> None:
    heard = [CallerId(t=0.0, standard="bell202", format="mdmf", number="5551234567")]
    assert run([(-15.0, heard)] + [(-15.0, [])] * 20) == []


def test_reorder_silence_and_a_dead_line_end_it() -> None:
    start = [(-20.0, [])] * 20
    assert run([*start, (-15.0, [Tone(t=0.5, name="reorder", plan="na")])]) == [
        (True, 0.0),
        (False, 0.5),
    ]
    assert run(start + [(-80.0, [])] * 200, AudioHookSense(silence_ends_call=3.0))[-1] == (
        False,
        3.38,
    )
    assert run([*start, (-90.0, [Quiet(t=0.42, name="line_dead")])]) == [(True, 0.0), (False, 0.42)]
