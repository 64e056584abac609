"""One line's work, frame by frame: sense -> analysis -> call flow -> line output -> delay -> store.

`LinePipeline` is driven by the daemon's main loop with pin edges and captured frames, in the
order they happened, and returns for each frame the frame to play to the line (silence, the
notice, or the warning tone). It owns no thread and no device.
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
    HungUp,
    NoticeAbandoned,
    NoticeDone,
    NoticePlayed,
    NoticeStarted,
    RecordingStarted,
)
from linerec.call.keys import KeyCodes
from linerec.call.machine import CallMachine, State
from linerec.codec import RATE, Samples
from linerec.config import LineConfig
from linerec.daemon.delay import DelayLine, Keep, Slot
from linerec.daemon.events import (
    AudioGap,
    CallerIdFailed,
    CallerIdHeard,
    Dialled,
    DtmfHeard,
    Fault,
    LineQuiet,
    OptedOut,
    RecordingPaused,
    RecordingResumed,
    RecordingSealed,
    ToneHeard,
)
from linerec.dsp.analyzer import Heard, LineAnalyzer
from linerec.dsp.callerid import CallerId, CallerIdError
from linerec.dsp.dtmf import DtmfDigit
from linerec.dsp.linestate import AudioHookSense
from linerec.dsp.progress import Tone
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
DIAL_GAP = 4.0  # seconds between dialled digits; a longer pause ends the dialling
DIAL_WINDOW = 30.0  # dialling happens within this long of picking up
MAX_DIALLED = 20
KEY_MARGIN = 0.02  # seconds of silence either side of a key pressed during a call
AUDIO_HOOK_DELAY = 0.8  # seconds of delay line on a line whose hook state comes from its audio

Emit = Callable[[CallEvent], None]


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
        self.machine = CallMachine(line=line.name, consent=line.consent)
        self.analyzer = LineAnalyzer()
        self._audio_hook = (
            AudioHookSense(silence_ends_call=line.silence_ends_call)
            if line.hook_source == "audio"
            else None
        )
        self._facts: dict[str, object] = {}  # what we learnt about the call: metadata
        self._dialled = ""
        self._last_digit_at = float("-inf")
        # Audio-decided hook changes come up to half a second after the fact: hold that much.
        self.delay = DelayLine(
            max(delay, AUDIO_HOOK_DELAY) if line.hook_source == "audio" else delay
        )
        self._beeps = BeepSchedule(rate=RATE)
        self._oscillator = Oscillator(line.beep_hz, line.beep_level_dbfs)
        self._notice_at: int | None = None  # next notice sample to play
        self._notice_done_at: float | None = None  # notice ended during a hook break
        self._answered_at = 0.0
        self._paused_since: float | None = None
        self._opted_out = False
        self._callerid_errors = 0
        self._notice_played_at = float("-inf")
        self._keys = KeyCodes(
            opt_out_key=line.opt_out_key, pause_code=line.pause_code, resume_code=line.resume_code
        )
        self._pending_caller: tuple[float, dict[str, object]] | None = None
        self._beep_at: int | None = None  # samples since the warning tone schedule began
        self._head: list[Samples] = []  # notice as played, until the conversation is kept
        self._writer: RecordingWriter | None = None
        self._store_retry_at = float("-inf")  # after a store error: keep nothing before this
        self._silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        self._led_show: Show | None = None
        self.last_t = 0.0
        self.frames = 0
        self.lost_samples = 0

    # -- inputs ----------------------------------------------------------------------------

    def hook_edge(self, level: bool, t: float) -> None:
        if self._audio_hook is not None:
            return  # this line's hook state comes from its audio (no hook-sense wire)
        off_hook = level != self.config.pins.hook_active_low
        self._on_line_events(self.hook.feed_edge(off_hook, t))

    def ring_edge(self, level: bool, t: float) -> None:
        active = level != self.config.pins.ring_active_low
        self._on_line_events(self.ring.feed_edge(active, t))

    def frame(self, frame: Frame) -> Samples:
        """Process one captured frame; returns the frame to play to the line."""
        end = frame.t + len(frame.samples) / RATE
        self.last_t = end
        self.frames += 1
        self._on_line_events(self.hook.advance(end))
        self._on_line_events(self.ring.advance(end))
        self._on_call_events(self.machine.tick(end))
        heard = self.analyzer.feed(frame.samples)
        for event in heard:
            self._heard(event)
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

        out, notice_done = self._line_output()
        self._talk.update(out is not self._silence, end)
        state = self.machine.state
        if state is State.NOTICE and not self._opted_out:
            slot = Slot(t=frame.t, samples=out, keep=Keep.NOTICE, lost=frame.lost)
        elif state is State.RECORDING and self._paused_since is None and not self._opted_out:
            slot = Slot(t=frame.t, samples=frame.samples, keep=Keep.RECORD, lost=frame.lost)
        else:
            slot = Slot(t=frame.t, samples=frame.samples, keep=Keep.DROP, lost=frame.lost)
        self._keep(self.delay.push(slot))
        sounding = self.analyzer.dtmf.sounding_since
        if sounding is not None and state in (State.NOTICE, State.RECORDING):
            self.delay.mute(sounding - KEY_MARGIN, end)  # a key held long: none of it is kept
        if notice_done:
            if self.hook.in_break:  # flash or hang-up? the call flow must hear that first
                self._notice_done_at = end
            else:
                self._on_call_events(self.machine.feed(NoticeDone(t=end)))
        if self._paused_since is not None and end - self._paused_since >= self.config.pause_limit:
            self.resume(end, by="auto")  # a forgotten pause must not lose the whole call
        show = _LED_FOR_STATE[self.machine.state]
        if show is Show.RECORDING and self._paused_since is not None:
            show = Show.PAUSED
        elif show is Show.RECORDING and end < self._store_retry_at:
            show = Show.OFF  # nothing is being kept: the LED must not say otherwise
        if show is not self._led_show:
            self._led_show = show
            self._led.set(show, end)
        return out

    def _opt_out_open(self, t: float) -> bool:
        """The caller may still refuse: during the notice, and a short window after it."""
        if not self.config.opt_out_key or not self.config.consent.plays_notice:
            return False
        state = self.machine.state
        return state is State.NOTICE or (
            state is State.RECORDING and t - self._notice_played_at <= self.config.opt_out_window
        )

    def opt_out(self, t: float, *, by: str) -> None:
        """The caller refused: nothing of this call is kept; an event says so, without audio."""
        if self._opted_out or self.machine.state not in (State.NOTICE, State.RECORDING):
            return
        self._opted_out = True
        self._notice_at = None
        self._head.clear()
        self.delay.retag(since=float("-inf"), only=Keep.RECORD, keep=Keep.DROP)
        self.delay.retag(since=float("-inf"), only=Keep.NOTICE, keep=Keep.DROP)
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.discard()
            except OSError as exc:
                self._emit(
                    Fault(t=t, line=self.name, kind="store", message=f"opt-out discard: {exc}")
                )
        self._emit(OptedOut(t=t, line=self.name, by=by))

    def button(self, pressed: bool, t: float) -> None:
        """The line's push button: opts out while that is open, else pauses or resumes."""
        if not pressed or self.machine.state not in (State.NOTICE, State.RECORDING):
            return
        if self._opt_out_open(t):
            self.opt_out(t, by="button")
        elif self._paused_since is None:
            self.pause(t, by="button")
        else:
            self.resume(t, by="button")

    def pause(self, t: float, *, by: str) -> None:
        """PCI: keep nothing of the call from `t` on, not even encrypted, until `resume`."""
        if self._paused_since is not None or self.machine.state is not State.RECORDING:
            return
        self._paused_since = t
        self.delay.retag(since=t, only=Keep.RECORD, keep=Keep.DROP)  # not yet on the card
        self._emit(RecordingPaused(t=t, line=self.name, by=by))

    def resume(self, t: float, *, by: str) -> None:
        if self._paused_since is None:
            return
        start, self._paused_since = self._paused_since, None
        pauses = self._facts.get("pauses")
        spans = [
            *(pauses if isinstance(pauses, list) else []),
            {
                "from": self._wall(start).isoformat(timespec="milliseconds"),
                "seconds": round(t - start, 3),
                "by": by,
            },
        ]
        self._annotate("pauses", spans)
        self._emit(RecordingResumed(t=t, line=self.name, by=by))

    def set_consent(self, mode: ConsentMode) -> None:
        """From the next call on (a call in progress keeps the notice it was given)."""
        self.machine.consent = mode

    def health(self) -> dict[str, object]:
        return {
            "line": self.name,
            "state": self.machine.state.value,
            "off_hook": self.hook.off_hook,
            "rings": self.machine.rings,
            "callerid_errors": self._callerid_errors,
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

        If the call goes on, its audio goes into a new recording.
        """
        self._keep(self.delay.drain())
        self._seal(reason, self.last_t)
        self._talk.open()  # no frames come to open it: nothing must stay on the line

    # -- what analysis heard -----------------------------------------------------------------

    def _heard(self, heard: Heard) -> None:
        off_hook = self.machine.state in (State.NOTICE, State.RECORDING)
        if isinstance(heard, DtmfDigit):
            self._digit(heard)
        elif isinstance(heard, CallerId):
            self._caller_id(heard, off_hook)
        elif isinstance(heard, CallerIdError):
            self._callerid_errors += 1
            self._emit(CallerIdFailed(t=heard.t, line=self.name, reason=heard.reason))
        elif isinstance(heard, Tone):
            self._emit(ToneHeard(t=heard.t, line=self.name, tone=heard.name, plan=heard.plan))
        elif off_hook:  # silence on an idle line is its normal state
            self._emit(LineQuiet(t=heard.t, line=self.name, kind=heard.name))

    def _caller_id(self, heard: CallerId, off_hook: bool) -> None:
        self._emit(
            CallerIdHeard(
                t=heard.t,
                line=self.name,
                number=heard.number,
                caller_name=heard.name,
                number_absent=heard.number_absent,
                standard=heard.standard,
                in_call=off_hook,
            )
        )
        every: dict[str, object] = {
            "caller_number": heard.number,
            "caller_name": heard.name,
            "caller_absent": heard.number_absent,
            "callerid_datetime": heard.datetime,
        }
        facts = {key: value for key, value in every.items() if value}
        if off_hook:  # call waiting: noted with this call, which goes on undisturbed
            earlier = self._facts.get("call_waiting")
            waiting = [*(earlier if isinstance(earlier, list) else []), {"t": heard.t, **facts}]
            self._annotate("call_waiting", waiting)
        else:
            self._pending_caller = (heard.t, facts)

    def _annotate(self, key: str, value: object) -> None:
        self._facts[key] = value
        if self._writer is not None:
            self._writer.annotate(key, value)

    def _digit(self, digit: DtmfDigit) -> None:
        machine = self.machine
        dialling = (
            machine.direction is Direction.OUTBOUND
            and len(self._dialled) < MAX_DIALLED
            and (not self._dialled or digit.t - self._last_digit_at <= DIAL_GAP)
            and digit.t - self._answered_at <= DIAL_WINDOW
        )
        self._last_digit_at = digit.t
        if machine.state in (State.IDLE, State.RINGING):
            return  # on hook: not ours (another extension, or noise)
        # No key is kept in the audio: a code, or a digit of a card number (PCI DSS). The
        # digit ended a frame or two ago, so its audio is still in the delay line.
        self.delay.mute(digit.t - KEY_MARGIN, digit.t + digit.duration + KEY_MARGIN)
        for action in self._keys.feed(
            digit.digit, digit.t, digit.duration, opt_out_open=self._opt_out_open(digit.t)
        ):
            if action.kind == "opt_out":
                self.opt_out(action.t, by="key")
            elif action.kind == "pause":
                self.pause(action.t, by="code")
            else:
                self.resume(action.t, by="code")
        if dialling:
            self._dialled += digit.digit
            self._annotate("called_number", self._dialled)
            self._emit(Dialled(t=digit.t, line=self.name, digit=digit.digit, number=self._dialled))
        else:
            self._emit(DtmfHeard(t=digit.t, line=self.name, duration=digit.duration))

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
            self._on_call_events(self.machine.feed(event))
            if self._notice_done_at is not None and not self.hook.in_break:
                done, self._notice_done_at = self._notice_done_at, None
                self._on_call_events(self.machine.feed(NoticeDone(t=done)))

    def _on_call_events(self, events: list[CallEvent]) -> None:
        for event in events:
            self._emit(event)
            if isinstance(event, Answered):
                self._answered_at = event.t
                self._dialled = ""
                self._facts.clear()
                pending, self._pending_caller = self._pending_caller, None
                if pending and event.direction is Direction.INBOUND and event.t - pending[0] < 30:
                    self._facts.update(pending[1])  # the caller ID heard while it rang
            elif isinstance(event, NoticePlayed):
                self._notice_played_at = event.t
            elif isinstance(event, NoticeStarted):
                self._notice_at = 0
            elif isinstance(event, RecordingStarted):
                # one-party and beep: keep the frames since off hook still in the delay line
                self.delay.retag(since=event.t, only=Keep.DROP, keep=Keep.RECORD)
                if event.beep:
                    self._beep_at = 0
                    self._oscillator.reset()
            elif isinstance(event, NoticeAbandoned):
                self._notice_at = None
                self.delay.retag(since=float("-inf"), only=Keep.NOTICE, keep=Keep.DROP)
                self._head.clear()
            elif isinstance(event, HungUp):
                if self._paused_since is not None:
                    self.resume(event.t, by="hang-up")
                self._opted_out = False
                self._notice_at = None
                self._beep_at = None
                self._keep(self.delay.drain())
                self._seal("hang-up", event.t)
                self._store_retry_at = float("-inf")  # the next call tries the store afresh

    # -- the store -------------------------------------------------------------------------

    def _keep(self, slots: list[Slot]) -> None:
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
            head = sum(len(chunk) for chunk in self._head) / RATE
            self._writer = self._store.begin(self._recording_info(slot.t - head, head))
            for key, value in self._facts.items():
                self._writer.annotate(key, value)
            self._writer.annotate("policy", self._policy())
            for chunk in self._head:
                self._writer.write(chunk)
            self._head.clear()
        if slot.lost:
            self._writer.mark_gap(slot.lost, "capture overrun: audio lost")
        self._writer.write(slot.samples)

    def _policy(self) -> dict[str, object]:
        """The policy this recording was made under, kept with it."""
        line = self.config
        return {
            "label": line.label,
            "consent": self.machine.consent.value,
            "opt_out_key": line.opt_out_key,
            "opt_out_window_s": line.opt_out_window,
            "pause_code": line.pause_code,
            "resume_code": line.resume_code,
            "pause_limit_s": line.pause_limit,
            "retention_days": line.retention_days,
        }

    def _recording_info(self, t: float, notice_seconds: float) -> RecordingInfo:
        direction = self.machine.direction
        return RecordingInfo(
            device_id=self._device_id,
            line=self.name,
            label=self.config.label,
            direction=direction.value if direction else "unknown",
            consent=self.config.consent.value,
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
            return
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


_LED_FOR_STATE = {
    State.IDLE: Show.OFF,
    State.RINGING: Show.OFF,
    State.NOTICE: Show.NOTICE,
    State.RECORDING: Show.RECORDING,
}
