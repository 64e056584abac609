"""A quiet 100 ms block taken in one step (one analysis call, one delay-line slot, one look at
the LED) keeps, silences and reports exactly what its five frames taken one by one do: the
same PCM through both paths gives the same recording sample for sample, the same events at
the same times and the same line output. Keys during the call, pause and resume codes at
their exact sample, an opt-out in the window after the notice, a key held long, and a delay
line that is not a whole number of blocks (its slots leave frame by frame)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import recording, sealed
from linerec.call.consent import ConsentMode
from linerec.call.policy import CallPolicy, Keep, PolicySettings
from linerec.codec import RATE, Samples
from linerec.config import load_config
from linerec.daemon import service
from linerec.daemon.delay import DelayLine, Slot
from linerec.daemon.line import LinePipeline
from linerec.daemon.simulate import Simulation, simulate
from linerec.dsp.analyzer import Heard, LineAnalyzer
from linerec.dsp.dtmf import DtmfDigit
from linerec.hardware.pcm import FRAME_SAMPLES, Frame
from linerec.hardware.sense import OffHook

OUTBOUND = """
[[call]]
[[call.step]]
at = 0.5
off_hook = true
[[call.step]]
wait = 1.0
[[call.step]]
dtmf = "0123"
[[call.step]]
say = "office"
[[call.step]]
dtmf = "*1"
[[call.step]]
say = "caller"
[[call.step]]
dtmf = "*2"
[[call.step]]
say = "office"
[[call.step]]
dtmf = "4"
[[call.step]]
say = "caller"
[[call.step]]
dtmf = "7"
tone_ms = 600
[[call.step]]
wait = 0.7
[[call.step]]
on_hook = true
[[call.step]]
wait = 3.0
"""

OPT_OUT = """
[[call]]
[[call.step]]
ring = 1
[[call.step]]
wait = 0.5
[[call.step]]
off_hook = true
[[call.step]]
say = "caller"
[[call.step]]
dtmf = "9"
[[call.step]]
say = "office"
[[call.step]]
on_hook = true
[[call.step]]
wait = 3.0
"""

_CLOCKED = {"recording_deleted"}


def _simulate(
    tmp_path: Path, name: str, call: str, line: str, delay_ms: int
) -> tuple[Simulation, list[tuple[str, float]], bytes]:
    config = tmp_path / f"{name}.linerec.toml"
    config.write_text(
        f'[store]\ndir = "{tmp_path / name}"\ndelay_ms = {delay_ms}\n[[line]]\n{line}\n'
    )
    callfile = tmp_path / f"{name}.call.toml"
    callfile.write_text(call)
    # Without the echo the capture thread runs ahead: blocks are handed over and taken.
    sim = simulate(
        [callfile], config=load_config(config), store_dir=None, emit=lambda e: None, echo=False
    )
    # The store stamps a sealed or deleted recording with the clock, which capture drives
    # and which runs ahead by however much it is ahead: those go by name alone.
    events = [
        (e.name, -1.0 if e.name in _CLOCKED else round(e.t, 4))
        for e in sim.events
        if e.name != "recording_sealed"
    ]
    return sim, events, sim.backend.line_out("line1").read_bytes()


@pytest.mark.parametrize(
    ("call", "line", "delay_ms"),
    [
        (OUTBOUND, 'consent = "one-party"', 200),
        (OUTBOUND, 'consent = "one-party"', 260),  # 13 frames: not a whole number of blocks
        (OPT_OUT, 'consent = "notice"\nopt_out_key = "9"\nopt_out_window_s = 10', 200),
    ],
    ids=["one-party", "one-party-delay-260", "opt-out-after-notice"],
)
def test_a_quiet_block_in_one_step_is_its_frames_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str, line: str, delay_ms: int
) -> None:
    blocks: list[float] = []
    heard_in_blocks: list[Heard] = []
    quiet_block = LinePipeline._quiet_block
    feed_block = LineAnalyzer.feed_block

    def counting(self: LinePipeline, block: Sequence[Frame], keep: Keep) -> Samples:
        blocks.append(block[0].t)
        return quiet_block(self, block, keep)

    def hearing(self: LineAnalyzer, samples: Samples) -> list[Heard]:
        heard = feed_block(self, samples)
        heard_in_blocks.extend(heard)
        return heard

    monkeypatch.setattr(LinePipeline, "_quiet_block", counting)
    monkeypatch.setattr(LineAnalyzer, "feed_block", hearing)
    fast, fast_events, fast_out = _simulate(tmp_path, "blocks", call, line, delay_ms)
    assert len(blocks) > 50
    # Keys were heard by a quiet block's analysis: decided at its last frame.
    assert any(isinstance(h, DtmfDigit) for h in heard_in_blocks)

    monkeypatch.setattr(service, "BATCH_FRAMES", 1)
    monkeypatch.setattr(service, "HANDOFF_FRAMES", 1)
    blocks.clear()
    slow, slow_events, slow_out = _simulate(tmp_path, "frames", call, line, delay_ms)
    assert not blocks  # the reference went frame by frame

    assert fast_events == slow_events
    common = min(len(fast_out), len(slow_out))  # capture's lead at the stop varies
    assert common >= 2 * RATE * 5
    assert fast_out[:common] == slow_out[:common]
    if call is OPT_OUT:
        assert "opted_out" in {n for n, _ in slow_events}
        assert not sealed(fast) and not sealed(slow)
        return
    assert {"recording_paused", "recording_resumed", "dtmf", "dialled"} <= {
        n for n, _ in slow_events
    }
    kept, reference = recording(fast), recording(slow)
    assert len(reference.samples) > RATE * 10
    assert np.array_equal(kept.samples, reference.samples)
    assert kept.metadata["markers"] == reference.metadata["markers"]


# -- the delay line: a block slot leaves as its frames would --------------------------------

_FRAME_T = FRAME_SAMPLES / RATE


def _frames(count: int) -> list[Slot]:
    samples = np.arange(count * FRAME_SAMPLES, dtype=np.int16) % 1000 + 1
    return [
        Slot(
            t=i * _FRAME_T,
            samples=samples[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES],
            keep=Keep.RECORD,
        )
        for i in range(count)
    ]


def _kept(slots: list[Slot]) -> list[tuple[int, str, int]]:
    """Released audio as (first sample index, keep, sample sum) per run kept alike."""
    runs: list[tuple[int, str, int]] = []
    for slot in slots:
        start = round(slot.t * RATE)
        if runs and runs[-1][1] == slot.keep.value:
            first, keep, total = runs[-1]
            runs[-1] = (first, keep, total + int(slot.samples.astype(np.int64).sum()))
        else:
            runs.append((start, slot.keep.value, int(slot.samples.astype(np.int64).sum())))
    return runs


_OPS = st.one_of(
    st.tuples(st.just("retag"), st.integers(0, 4000)),
    st.tuples(st.just("resume"), st.integers(0, 4000)),
    st.tuples(st.just("mute"), st.integers(0, 4000)),
    st.tuples(st.just("hold"), st.integers(0, 4000)),
    st.tuples(st.just("release"), st.integers(0, 4000)),  # a hang-up: dropped from there
    st.tuples(st.just("glitch"), st.just(0)),  # a flash or glitch: released, nothing dropped
    st.tuples(st.just("none"), st.just(0)),
)


@settings(max_examples=200, deadline=None)
@given(
    delay_frames=st.integers(1, 14),
    blocks=st.lists(st.tuples(st.integers(1, 5), _OPS), min_size=4, max_size=30),
)
def test_a_block_slot_leaves_the_delay_line_as_its_frames_would(
    delay_frames: int, blocks: list[tuple[int, tuple[str, int]]]
) -> None:
    """Frames pushed one by one against the same frames pushed in runs (one slot each), with
    the same retags, mutes, holds and releases between the runs: the same audio leaves, at
    the same pushes, kept the same way."""
    count = sum(n for n, _ in blocks)
    frames = _frames(count)
    one, run = DelayLine(delay_frames * _FRAME_T), DelayLine(delay_frames * _FRAME_T)
    i = 0
    for n, (op, at) in blocks:
        by_frame = [s for f in frames[i : i + n] for s in one.push(Slot(**_fields(f)))]
        joined = Slot(
            t=frames[i].t,
            samples=np.concatenate([f.samples for f in frames[i : i + n]]),
            keep=Keep.RECORD,
            frame=FRAME_SAMPLES,
        )
        by_run = run.push(joined)
        assert _kept(by_frame) == _kept(by_run)
        assert sum(len(s.samples) for s in by_frame) == sum(len(s.samples) for s in by_run)
        i += n
        t = at / RATE
        for line in (one, run):
            if op == "retag":
                line.retag(since=t, only=Keep.RECORD, keep=Keep.DROP)
            elif op == "resume":
                line.retag(since=t, only=Keep.DROP, keep=Keep.RECORD)
            elif op == "mute":
                line.mute(t, t + 0.03)
            elif op == "hold":
                line.hold(t)
            elif op == "release":
                line.release(drop_from=t)
            elif op == "glitch":
                line.release()
    assert _kept(one.drain()) == _kept(run.drain())


def _fields(slot: Slot) -> dict[str, object]:
    return {"t": slot.t, "samples": slot.samples, "keep": slot.keep}


# -- the policy's clock: nothing is due before quiet_until ----------------------------------


def test_the_policy_decides_nothing_on_its_clock_before_quiet_until() -> None:
    policy = CallPolicy(
        line="line1",
        settings=PolicySettings(consent=ConsentMode.ONE_PARTY, dial_gap=4.0, dial_limit=30.0),
        wall=lambda t: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=t),
    )
    assert policy.quiet_until() == float("inf")  # idle
    policy.line_event(OffHook(t=1.0))  # outbound: dialling until 30 s after pick-up
    assert policy.quiet_until() == pytest.approx(31.0)
    assert policy.tick(30.99) == []
    policy.heard(DtmfDigit(t=2.0, digit="5", duration=0.08))  # a digit: the gap counts
    assert policy.quiet_until() == pytest.approx(6.0)
    assert policy.tick(5.99) == []
    assert policy.tick(6.01)  # dialling is over: the number is noted
    assert policy.quiet_until() == float("inf")
