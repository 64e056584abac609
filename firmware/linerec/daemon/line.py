"""One line's wiring, frame by frame: sense -> analysis -> call policy -> line output -> delay
-> store.

`LinePipeline` is driven by the daemon's main loop with pin edges and captured frames, in the
order they happened, and returns for each frame the frame to play to the line (silence, the
notice, or the warning tone). What the call flow decides is the call policy's
(`linerec.call.policy`); this module only carries its decisions out: the delay line, the
recording writer, the line output, the LED and the talk switch. It owns no thread and no
device.

A quiet block (a whole analysis block of frames, 100 ms, in which no hook or ring level, notice,
beep, key, command or clock-driven policy decision is under way and the audio is kept one way
throughout) goes through in one step: one analysis call, one delay-line slot, silence out. It
is decided exactly as its frames one by one would be: only the analysis at its last frame can
change anything, and if it hears something that frame is taken on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

import numpy as np

from linerec.call.consent import BeepSchedule, ConsentMode
from linerec.call.events import (
    Answered,
    CallEvent,
    Direction,
    RecordingPaused,
    RecordingResumed,
)
from linerec.call.machine import CallMachine, State
from linerec.call.policy import (
    KEY_MARGIN,
    CallPolicy,
    Decision,
    Discard,
    Keep,
    Note,
    Play,
    PolicySettings,
    Retag,
    Seal,
    Silence,
)
from linerec.codec import RATE, Samples
from linerec.config import LineConfig
from linerec.daemon.delay import DelayLine, Slot
from linerec.daemon.events import AudioGap, Fault, RecordingSealed
from linerec.dsp.analyzer import STREAM_FRAMES, LineAnalyzer
from linerec.dsp.linestate import AudioHookSense
from linerec.hardware.leds import Led, Show
from linerec.hardware.pcm import FRAME_SAMPLES, Frame
from linerec.hardware.sense import (
    HookBreak,
    HookFlash,
    HookGlitch,
    HookSense,
    LineEvent,
    OnHook,
    RingSense,
)
from linerec.hardware.talk import TalkSwitch
from linerec.store.base import RecordingInfo, RecordingWriter, Store
from linerec.tones import Oscillator

log = logging.getLogger(__name__)

STORE_RETRY = 5.0  # seconds after a store error before the call is kept again
# Slack on the policy's deadline: a quiet block ends clearly before it (rounding of times).
_TIME_SLACK = 1e-6
AUDIO_HOOK_DELAY = 0.8  # seconds of delay line on a line whose hook state comes from its audio

Emit = Callable[[CallEvent], None]


def policy_settings(line: LineConfig) -> PolicySettings:
    """The call policy of a configured line."""
    return PolicySettings(
        consent=line.consent,
        label=line.label,
        opt_out_key=line.opt_out_key,
        opt_out_window=line.opt_out_window,
        pause_code=line.pause_code,
        resume_code=line.resume_code,
        pause_limit=line.pause_limit,
        dial_gap=line.dial_gap,
        dial_limit=line.dial_limit,
        retention_days=line.retention_days,
    )


class LinePipeline:
    def __init__(
        self,
        *,
        line: LineConfig,
        device_id: str,
        store: Store,
        notice: Samples,
        delay: float,
        led: Led,
        talk: TalkSwitch,
        emit: Emit,
        wall: Callable[[float], datetime],
        clock_synchronized: Callable[[], bool],
        initial_off_hook: bool,
        on_parts: Callable[[list[str], str, bool, bool], None] = (
            lambda parts, direction, out, paused: None
        ),
    ) -> None:
        self.config = line
        self.name = line.name
        self._device_id = device_id
        self._store = store
        self._notice = notice
        self._led = led
        self._talk = talk
        self._emit = emit
        self._wall = wall
        self._clock_synchronized = clock_synchronized
        self.hook = HookSense(
            initial_off_hook=initial_off_hook,
            debounce=line.hook_debounce,
            flash_min=line.flash_min,
            flash_max=line.flash_max,
        )
        self.ring = RingSense()
        self.policy = CallPolicy(line=line.name, settings=policy_settings(line), wall=wall)
        self._audio_hook = (
            AudioHookSense(silence_ends_call=line.silence_ends_call)
            if line.hook_source == "audio"
            else None
        )
        # Audio-decided hook changes come up to half a second after the fact: hold that much.
        self.delay = DelayLine(
            max(delay, AUDIO_HOOK_DELAY) if line.hook_source == "audio" else delay
        )
        # Analysis in blocks hears a key up to a block late, and the key's audio must still be
        # in the delay line then: the receiver's own latency and the key margin take 100 ms.
        held = self.delay.samples / RATE - 0.1
        self.analyzer = LineAnalyzer(
            block_frames=max(1, min(STREAM_FRAMES, int(held * RATE + 1e-6) // FRAME_SAMPLES)),
            frame_levels=self._audio_hook is not None,
        )
        self._beeps = BeepSchedule(rate=RATE)
        self._oscillator = Oscillator(line.beep_hz, line.beep_level_dbfs)
        self._notice_at: int | None = None  # next notice sample to play
        self._notice_done_at: float | None = None  # notice ended during a hook break
        self._beep_at: int | None = None  # samples since the warning tone schedule began
        self._head: list[Samples] = []  # notice as played, until the conversation is kept
        self._writer: RecordingWriter | None = None
        # Recordings of the call in progress already sealed: a stall or a store error splits
        # a call, and an opt-out takes every part of it off the card. A part whose seal
        # failed is left for the next start's recovery, unless the call is opted out: its
        # writer is all that can still discard it.
        self._call_parts: list[str] = []
        self._unsealed: list[RecordingWriter] = []
        # Told every part of the call in progress when that changes (daemon/callnotes.py), and
        # given those of a call the daemon was restarted in: the pickup at start is that call.
        self._on_parts = on_parts
        self._carried: list[str] = []
        self._carried_opt_out = False  # the call carried over was opted out before the restart
        self._store_retry_at = float("-inf")  # after a store error: keep nothing before this
        self._silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        self._silence_block = np.zeros(FRAME_SAMPLES * self.analyzer.block_frames, np.int16)
        self._led_show: Show | None = None
        self._batching = False  # within `frames`: slots released are written together
        self._kept: list[Slot] = []
        self.last_t = 0.0
        self.frames = 0
        self.lost_samples = 0

    @property
    def machine(self) -> CallMachine:
        return self.policy.machine

    # -- inputs ----------------------------------------------------------------------------

    def hook_edge(self, level: bool, t: float) -> None:
        if self._audio_hook is not None:
            return  # this line's hook state comes from its audio (no hook-sense wire)
        off_hook = level != self.config.pins.hook_active_low
        self._on_line_events(self.hook.feed_edge(off_hook, t))

    def ring_edge(self, level: bool, t: float) -> None:
        active = level != self.config.pins.ring_active_low
        self._on_line_events(self.ring.feed_edge(active, t))

    def frame_run(self, frames: Sequence[Frame]) -> Samples:
        """Several captured frames in a row: each as `frame` takes it, in order, with what
        they release from the delay line written to the store in one piece; returns the
        line output for them all. A quiet block (`_quiet_keep`) is taken in one step."""
        if len(frames) == 1:
            return self.frame(frames[0])
        self._batching = True
        outs = []
        size = self.analyzer.block_frames
        try:
            i = 0
            while i < len(frames):
                block = frames[i : i + size]
                aligned = not self.analyzer.pending and len(block) == size > 1
                keep = self._quiet_keep(block) if aligned else None
                if keep is not None:
                    outs.append(self._quiet_block(block, keep))
                    i += size
                else:
                    outs.append(self.frame(frames[i]))
                    i += 1
        finally:
            self._batching = False
            self._flush_kept()
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def _quiet_keep(self, block: Sequence[Frame]) -> Keep | None:
        """How a block of frames is kept, if it is quiet: one whole analysis block from its
        start, and nothing in it that frame by frame could decide or play differently from
        one frame to the next (no hook or ring level or notice under way, no key sounding,
        nothing the policy's clock is due to decide, one way of keeping it throughout, no
        gap in the audio). None if not: then it goes frame by frame."""
        if self.needs_periods() or self._talk.closed:
            return None
        if self.analyzer.dtmf.sounding_since is not None:
            return None
        previous = None
        for frame in block:
            if frame.lost or len(frame.samples) != FRAME_SAMPLES:
                return None
            if previous is not None and abs(frame.t - previous) > 0.5 / RATE:
                return None
            previous = frame.t + FRAME_SAMPLES / RATE
        start, end = block[0].t, block[-1].t + FRAME_SAMPLES / RATE
        if end + _TIME_SLACK >= self.policy.quiet_until():
            return None
        if start < self._store_retry_at <= end:
            return None
        spans = self.policy.keep_spans(start, end)
        if len(spans) != 1 or spans[0][1] is Keep.NOTICE:
            return None
        return spans[0][1]

    def _quiet_block(self, block: Sequence[Frame], keep: Keep) -> Samples:
        """A quiet block in one step: what `frame` does for each of its frames, where nothing
        but the analysis at its last frame can change anything (see `_quiet_keep`)."""
        last = block[-1]
        end = last.t + FRAME_SAMPLES / RATE
        self._show(block[0].t + FRAME_SAMPLES / RATE)  # what frame by frame shows first
        self.last_t = end
        self.frames += len(block)
        samples = np.concatenate([frame.samples for frame in block])
        heard = self.analyzer.feed_block(samples)
        if heard:  # decided at the last frame, before it goes into the delay line
            head = samples[:-FRAME_SAMPLES]
            slot = Slot(t=block[0].t, samples=head, keep=keep, frame=FRAME_SAMPLES)
            self._keep(self.delay.push(slot))
            for event in heard:
                self._carry_out(self.policy.heard(event))
            out = self._frame_out(last, end)
            return np.concatenate((self._silence_block[: len(head)], out))
        slot = Slot(t=block[0].t, samples=samples, keep=keep, frame=FRAME_SAMPLES)
        self._keep(self.delay.push(slot))
        sounding = self.analyzer.dtmf.sounding_since
        if sounding is not None and self.policy.in_call:
            self.delay.mute(sounding - KEY_MARGIN, end)
        self._show(end)
        return self._silence_block

    def frame(self, frame: Frame) -> Samples:
        """Process one captured frame; returns the frame to play to the line."""
        end = frame.t + len(frame.samples) / RATE
        self.last_t = end
        self.frames += 1
        self._on_line_events(self.hook.advance(end))
        self._on_line_events(self.ring.advance(end))
        self._carry_out(self.policy.tick(end))
        heard = self.analyzer.feed(frame.samples)
        for event in heard:
            self._carry_out(self.policy.heard(event))
        if self._audio_hook is not None:
            level = self.analyzer.level.level
            for off_hook, t in self._audio_hook.feed(frame.t, level, list(heard)):
                self._on_line_events(self.hook.feed_edge(off_hook, t))
            self._on_line_events(self.hook.advance(end))
        if frame.lost:
            self.lost_samples += frame.lost
            self._emit(
                AudioGap(
                    t=frame.t,
                    line=self.name,
                    seconds=frame.lost / RATE,
                    in_recording=self.machine.state is State.RECORDING,
                )
            )
        return self._frame_out(frame, end)

    def _frame_out(self, frame: Frame, end: float) -> Samples:
        """The rest of `frame`, once what analysis heard is carried out: the line output,
        the frame into the delay line, a key held long, the notice's end, the LED."""
        out, notice_done = self._line_output()
        self._talk.update(out is not self._silence, end)
        self._hold_back(frame, out, end)
        sounding = self.analyzer.dtmf.sounding_since
        if sounding is not None and self.policy.in_call:
            self.delay.mute(sounding - KEY_MARGIN, end)  # a key held long: none of it is kept
        if notice_done:
            if self.hook.in_break:  # flash or hang-up? the call flow must hear that first
                self._notice_done_at = end
            else:
                self._carry_out(self.policy.notice_done(end))
        self._show(end)
        return out

    @property
    def sounding(self) -> bool:
        """Notice or beep audio went out within the last `talk.HOLD` (which is longer than
        the sound card's playback queue): while False, all that is queued is silence."""
        return self._talk.closed

    def needs_periods(self) -> bool:
        """Whether the line output may change before the next block (200 ms), so the main
        loop must see each period as it comes: a hook or ring level not yet settled, a notice
        or beep being played, a notice whose end waits on a hook break, or hook sense from
        the audio."""
        return (
            self._audio_hook is not None
            or self._notice_at is not None
            or self._beep_at is not None
            or self._notice_done_at is not None
            or not self.hook.settled
            or not self.ring.settled
        )

    def button(self, pressed: bool, t: float) -> None:
        """The line's push button: opts out while that is open, else pauses or resumes."""
        if pressed:
            self._carry_out(self.policy.button(t))

    def command(self, action: str, t: float) -> None:
        """A signed command for this line: "pause", "resume" or "opt_out"."""
        self._carry_out(self.policy.command(action, t))

    def set_consent(self, mode: ConsentMode) -> None:
        """From the next call on (a call in progress keeps the notice it was given)."""
        self.policy.set_consent(mode)

    def health(self) -> dict[str, object]:
        return {
            "line": self.name,
            "state": self.machine.state.value,
            "off_hook": self.hook.off_hook,
            "rings": self.machine.rings,
            "callerid_errors": self.policy.callerid_errors,
            "silent_for": round(self.analyzer.level.silent_for, 1),
            "overrun_seconds": round(self.lost_samples / RATE, 3),
        }

    def refresh_led(self, now: float) -> None:
        """Advance the LED's blink pattern (the daemon calls this every 50 ms or so)."""
        self._led.update(now)

    def shutdown(self) -> None:
        """Keep what is still in the delay line and seal the recording in progress."""
        self.interrupt("shutdown")
        self._led.off()

    def interrupt(self, reason: str) -> None:
        """Audio stopped coming (shutdown, a stalled capture): seal what was kept so far.

        If the call goes on, its audio goes into a new recording (none once it is opted out).
        """
        self._flush_kept()
        self._write_kept(self.delay.drain())
        self._seal(reason, self.last_t)
        self._talk.open()  # no frames come to open it: nothing must stay on the line

    # -- carrying out the policy's decisions -------------------------------------------------

    def _carry_out(self, decisions: Sequence[Decision]) -> None:
        if decisions:
            self._flush_kept()  # what was released before a decision is written before it
        opted_out_at: float | None = None
        for decision in decisions:
            if isinstance(decision, CallEvent):
                if isinstance(decision, Answered):
                    # A new call: the last one's parts are its own (those carried over a
                    # restart are this one's).
                    self._call_parts, self._carried = self._carried, []
                    self._unsealed.clear()
                    if self._carried_opt_out:  # the caller said no before the restart
                        self._carried_opt_out, opted_out_at = False, decision.t
                    self._note_parts(opted_out=opted_out_at is not None)  # noted so meanwhile
                elif isinstance(decision, RecordingPaused | RecordingResumed):
                    self._note_parts()  # a restart in the pause keeps the call paused
                self._emit(decision)
            elif isinstance(decision, Retag):
                self.delay.retag(since=decision.since, only=decision.only, keep=decision.keep)
                if decision.keep is Keep.DROP and decision.only is Keep.NOTICE:
                    self._head.clear()
            elif isinstance(decision, Silence):
                self.delay.mute(decision.start, decision.end)
            elif isinstance(decision, Note):
                if self._writer is not None:
                    self._writer.annotate(decision.key, decision.value)
            elif isinstance(decision, Play):
                self._play(decision.what)
            elif isinstance(decision, Discard):
                self._discard(decision.t)
            elif isinstance(decision, Seal):
                self._notice_done_at = None
                self._write_kept(self.delay.drain())
                self._seal(decision.reason, decision.t)
                self._store_retry_at = float("-inf")  # the next call tries the store afresh
                self._note_parts(ended=True)
        if opted_out_at is not None:
            self._carry_out(self.policy.command("opt_out", opted_out_at))

    def _play(self, what: str) -> None:
        self._notice_at = 0 if what == "notice" else None
        self._beep_at = 0 if what == "beep" else None
        self._oscillator.reset()

    def _discard(self, t: float) -> None:
        """Nothing of the call is kept: the recording being written, every part of the call
        sealed before it, and every part the card failed to seal (the ring reports each; the
        collector drops what it got of them)."""
        self._head.clear()
        writer, self._writer = self._writer, None
        unsealed, self._unsealed = self._unsealed, []
        for each in [*unsealed, *([writer] if writer is not None else [])]:
            try:
                each.discard("opted-out")
            except OSError as exc:
                self._emit(
                    Fault(t=t, line=self.name, kind="store", message=f"opt-out discard: {exc}")
                )
        parts, self._call_parts = self._call_parts, []
        for recording_id in parts:
            try:
                self._store.delete(recording_id, "opted-out")
            except KeyError:
                log.warning(
                    "line %s: opt-out: %s has already left the card", self.name, recording_id
                )
            except (PermissionError, OSError) as exc:  # on legal hold, or the card failed
                self._emit(
                    Fault(
                        t=t,
                        line=self.name,
                        kind="store",
                        message=f"opt-out: {recording_id} kept: {exc}",
                    )
                )
        self._note_parts(opted_out=True)  # kept until the call ends: a restart keeps nothing

    def carry(
        self,
        parts: list[str],
        direction: str,
        opted_out: bool = False,
        paused_for: float | None = None,
    ) -> None:
        """The line was off hook when the daemon started, and `parts` are the recordings of
        the call in progress before the restart, `direction` its direction ("" if not known),
        `paused_for` how long it has been paused (None: it is not): the call picked up now is
        that one."""
        self._carried = list(parts)
        self._carried_opt_out = opted_out
        self.policy.carry_pause(None if opted_out else paused_for)
        if direction in {d.value for d in Direction}:
            self.machine.take_over(Direction(direction))

    def _note_parts(self, *, ended: bool = False, opted_out: bool = False) -> None:
        parts = (
            []
            if ended
            else [
                *self._call_parts,
                *(writer.id for writer in self._unsealed),
                *([self._writer.id] if self._writer is not None else []),
            ]
        )
        direction = None if ended else self.policy.direction
        paused = not ended and self.policy.paused
        try:
            self._on_parts(
                parts, direction.value if direction is not None else "", opted_out, paused
            )
        except OSError as exc:  # an opt-out after a restart may then keep the earlier parts
            self._emit(
                Fault(
                    t=self.last_t,
                    line=self.name,
                    kind="store",
                    message=f"the call's parts not noted: {exc}",
                )
            )

    def _show(self, end: float) -> None:
        show = _LED_FOR_STATE[self.machine.state]
        if show is Show.RECORDING and self.policy.paused:
            show = Show.PAUSED
        elif (show is Show.RECORDING and end < self._store_retry_at) or (
            show is not Show.OFF and self.policy.opted_out
        ):
            show = Show.OFF  # nothing is being kept: the LED must not say otherwise
        if show is not self._led_show:
            self._led_show = show
            self._led.set(show, end)

    # -- what the line hears ---------------------------------------------------------------

    def _line_output(self) -> tuple[Samples, bool]:
        notice_done = False
        if self._notice_at is not None:
            chunk = self._notice[self._notice_at : self._notice_at + FRAME_SAMPLES]
            self._notice_at += FRAME_SAMPLES
            if self._notice_at >= len(self._notice):
                self._notice_at = None
                notice_done = True
            if len(chunk) < FRAME_SAMPLES:
                chunk = np.concatenate((chunk, self._silence[: FRAME_SAMPLES - len(chunk)]))
            return chunk, notice_done
        if self._beep_at is not None:
            span = self._beeps.mask(self._beep_at, FRAME_SAMPLES)
            self._beep_at += FRAME_SAMPLES
            if span is not None:
                out = np.zeros(FRAME_SAMPLES, dtype=np.float64)
                a, b = span
                out[a:b] = self._oscillator.take(b - a)
                return np.rint(out).astype(np.int16), False
            self._oscillator.reset()  # each beep starts at zero phase: no click
        return self._silence, notice_done

    # -- events ----------------------------------------------------------------------------

    def _on_line_events(self, events: Sequence[LineEvent]) -> None:
        for event in events:
            if isinstance(event, HookBreak):
                self.delay.hold(event.t)
            elif isinstance(event, HookFlash | HookGlitch):
                self.delay.release()
            elif isinstance(event, OnHook):
                self.delay.release(drop_from=event.t)
                self._notice_done_at = None
                self._carried = []  # the call from before a restart is over
                self._carried_opt_out = False
                self.machine.take_over(None)
                self.policy.carry_pause(None)
            self._carry_out(self.policy.line_event(event))
            if self._notice_done_at is not None and not self.hook.in_break:
                done, self._notice_done_at = self._notice_done_at, None
                self._carry_out(self.policy.notice_done(done))

    # -- the store -------------------------------------------------------------------------

    def _hold_back(self, frame: Frame, out: Samples, end: float) -> None:
        """Into the delay line, kept as the policy says, piece by piece where that changes."""
        spans = self.policy.keep_spans(frame.t, end)
        if len(spans) == 1:  # the usual case: the whole frame kept one way
            keep = spans[0][1]
            samples = out if keep is Keep.NOTICE else frame.samples
            slot = Slot(t=frame.t, samples=samples, keep=keep, lost=frame.lost)
            self._keep(self.delay.push(slot))
            return
        bounds = [round((t - frame.t) * RATE) for t, _ in spans[1:]]
        starts = [0, *bounds]
        stops = [*bounds, len(frame.samples)]
        for (t, keep), a, b in zip(spans, starts, stops, strict=True):
            samples = out if keep is Keep.NOTICE else frame.samples
            lost = frame.lost if a == 0 else 0
            self._keep(self.delay.push(Slot(t=t, samples=samples[a:b], keep=keep, lost=lost)))

    def _keep(self, slots: list[Slot]) -> None:
        if self._batching:
            self._kept += slots
            return
        self._write_kept(slots)

    def _flush_kept(self) -> None:
        if self._kept:
            slots, self._kept = self._kept, []
            self._write_kept(_joined(slots, self._store_retry_at))

    def _write_kept(self, slots: list[Slot]) -> None:
        for slot in slots:
            if slot.keep is Keep.NOTICE:
                self._head.append(slot.samples)
            elif slot.keep is Keep.RECORD and slot.t >= self._store_retry_at:
                try:
                    self._record(slot)
                except OSError as exc:
                    self._store_failed(exc, slot.t)

    def _record(self, slot: Slot) -> None:
        if self._writer is None:
            if self.policy.opted_out:  # the policy keeps none of it; never a recording here
                log.error("line %s: audio of an opted-out call came to be kept: dropped", self.name)
                return
            head = sum(len(chunk) for chunk in self._head) / RATE
            self._writer = self._store.begin(self._recording_info(slot.t - head, head))
            for key, value in self.policy.facts.items():
                self._writer.annotate(key, value)
            for chunk in self._head:
                self._writer.write(chunk)
            self._head.clear()
            self._note_parts()
        if slot.lost:
            self._writer.mark_gap(slot.lost, "capture overrun: audio lost")
        self._writer.write(slot.samples)

    def _recording_info(self, t: float, notice_seconds: float) -> RecordingInfo:
        direction = self.policy.direction
        return RecordingInfo(
            device_id=self._device_id,
            line=self.name,
            label=self.config.label,
            direction=direction.value if direction else "unknown",
            consent=self.policy.consent.value,
            started_at=self._wall(t),
            clock_synchronized=self._clock_synchronized(),
            notice_seconds=notice_seconds,
            retention_days=self.config.retention_days,
        )

    def _seal(self, ended_by: str, t: float) -> None:
        self._head.clear()
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            sealed = writer.seal(ended_by=ended_by)
        except OSError as exc:
            log.error(
                "line %s: could not seal %s (recovery will at the next start): %s",
                self.name,
                ended_by,
                exc,
                exc_info=exc,
            )
            self._emit(Fault(t=t, line=self.name, kind="store", message=f"seal failed: {exc}"))
            self._unsealed.append(writer)
            return
        self._call_parts.append(sealed.id)
        self._emit(
            RecordingSealed(
                t=t,
                line=self.name,
                id=sealed.id,
                path=str(sealed.path),
                duration=round(sealed.duration, 3),
                ended_by=ended_by,
            )
        )

    def _store_failed(self, exc: OSError, t: float) -> None:
        # Never retry into silent loss: the recording in progress ends here, loudly, and
        # what it had written stays (sealed if the store still can, else for recovery). The
        # call goes on into a new recording once the store has had STORE_RETRY to recover.
        log.error("line %s: store error, recording ends here: %s", self.name, exc, exc_info=exc)
        self._emit(Fault(t=t, line=self.name, kind="store", message=str(exc)))
        self._store_retry_at = t + STORE_RETRY
        self._seal("store-error", t)


def _joined(slots: list[Slot], retry_at: float) -> list[Slot]:
    """Runs of slots kept alike, back to back and with no gap before them, as one slot each
    (never across `retry_at`, from which on the store is tried again)."""
    joined: list[Slot] = []
    run: list[Slot] = []

    def close() -> None:
        if len(run) == 1:
            joined.append(run[0])
        elif run:
            samples = np.concatenate([slot.samples for slot in run])
            joined.append(Slot(t=run[0].t, samples=samples, keep=run[0].keep, lost=run[0].lost))
        run.clear()

    for slot in slots:
        if run and (
            slot.keep is not run[-1].keep
            or slot.lost
            or abs(slot.t - run[-1].end) > 0.5 / RATE
            or run[0].t < retry_at <= slot.t
        ):
            close()
        run.append(slot)
    close()
    return joined


_LED_FOR_STATE = {
    State.IDLE: Show.OFF,
    State.RINGING: Show.OFF,
    State.NOTICE: Show.NOTICE,
    State.RECORDING: Show.RECORDING,
}
