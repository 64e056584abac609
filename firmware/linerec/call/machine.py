"""One line's call flow as a state machine: line events in, call events out. No I/O, no clock.

States and rules (the whole table is `_TRANSITIONS` below):

    IDLE      --RingStart-->  RINGING                       emits Ringing
    IDLE      --OffHook---->  NOTICE | RECORDING            emits Answered(outbound; inbound
                                                            if it takes over an inbound call)
    RINGING   --RingStart-->  RINGING                       counts the ring
    RINGING   --OffHook---->  NOTICE | RECORDING            emits Answered(inbound)
    RINGING   --tick------->  IDLE   after `ring_timeout`   emits MissedCall
    NOTICE    --NoticeDone->  RECORDING                     emits NoticePlayed, RecordingStarted
    NOTICE    --OnHook----->  IDLE                 emits NoticeAbandoned, HungUp(recorded=False)
    RECORDING --HookFlash-->  RECORDING                     emits HookFlashed
    RECORDING --OnHook----->  IDLE                          emits HungUp(recorded=True)

From off hook the consent mode decides: `notice` and `notice+beep` go to NOTICE and emit
NoticeStarted; `one-party` and `beep` go straight to RECORDING.

A call taken over (the daemon restarted mid-call finds the line off hook) keeps the direction
it had before the restart (`take_over`): an inbound caller may still opt out by key.

Events that cannot change anything in a state (a ring while off hook, a hook break, which the
daemon handles, a glitch) are listed as ignored; any other event in a state is a bug upstream
and raises `CallStateError` naming the event, the line and the state.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from linerec.call.consent import ConsentMode
from linerec.call.events import (
    Answered,
    CallEvent,
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
from linerec.hardware.sense import (
    HookBreak,
    HookFlash,
    HookGlitch,
    OffHook,
    OnHook,
    RingStart,
    RingStop,
)

MachineInput = (
    OffHook | OnHook | HookBreak | HookFlash | HookGlitch | RingStart | RingStop | NoticeDone
)


class State(Enum):
    IDLE = "idle"
    RINGING = "ringing"
    NOTICE = "notice"
    RECORDING = "recording"


class CallStateError(RuntimeError):
    def __init__(self, event: object, line: str, state: State) -> None:
        super().__init__(
            f"line {line}: {type(event).__name__} cannot happen in state {state.value} ({event!r})"
        )


class CallMachine:
    def __init__(self, *, line: str, consent: ConsentMode, ring_timeout: float = 8.0) -> None:
        self.line = line
        self.consent = consent
        self.ring_timeout = ring_timeout
        self.state = State.IDLE
        self.rings = 0
        self.direction: Direction | None = None
        self._last_ring = 0.0
        self._taken_over: Direction | None = None  # the direction the next pick-up continues

    def take_over(self, direction: Direction | None) -> None:
        """The next pick-up continues a call that had `direction` before a restart (None: it
        does not, the line went on hook since)."""
        self._taken_over = direction

    def feed(self, event: MachineInput) -> list[CallEvent]:
        handler = _TRANSITIONS.get((self.state, type(event)))
        if handler is None:
            if type(event) in _IGNORED[self.state]:
                return []
            raise CallStateError(event, self.line, self.state)
        return handler(self, event)

    def quiet_until(self) -> float:
        """`tick` says nothing for any time before this."""
        if self.state is State.RINGING:
            return self._last_ring + self.ring_timeout
        return float("inf")

    def tick(self, now: float) -> list[CallEvent]:
        """Time has reached `now` (ringing that stopped long ago is a missed call)."""
        if self.state is State.RINGING and now - self._last_ring >= self.ring_timeout:
            rings, self.rings = self.rings, 0
            self.state = State.IDLE
            return [MissedCall(t=self._last_ring, line=self.line, rings=rings)]
        return []

    # -- transitions ---------------------------------------------------------------------

    def _ring(self, event: MachineInput) -> list[CallEvent]:
        self.rings += 1
        self._last_ring = event.t
        if self.state is State.IDLE:
            self.state = State.RINGING
            return [Ringing(t=event.t, line=self.line)]
        return []

    def _ring_stop(self, event: MachineInput) -> list[CallEvent]:
        self._last_ring = event.t
        return []

    def _off_hook(self, event: MachineInput) -> list[CallEvent]:
        inbound = self.state is State.RINGING or self._taken_over is Direction.INBOUND
        self._taken_over = None
        self.direction = Direction.INBOUND if inbound else Direction.OUTBOUND
        events: list[CallEvent] = [
            Answered(t=event.t, line=self.line, direction=self.direction, rings=self.rings)
        ]
        if self.consent.plays_notice:
            self.state = State.NOTICE
            events.append(NoticeStarted(t=event.t, line=self.line))
        else:
            events.append(self._start_recording(event.t))
        return events

    def _notice_done(self, event: MachineInput) -> list[CallEvent]:
        return [NoticePlayed(t=event.t, line=self.line), self._start_recording(event.t)]

    def _start_recording(self, t: float) -> CallEvent:
        self.state = State.RECORDING
        assert self.direction is not None
        return RecordingStarted(
            t=t, line=self.line, direction=self.direction, beep=self.consent.beeps
        )

    def _abandon(self, event: MachineInput) -> list[CallEvent]:
        self._reset()
        return [
            NoticeAbandoned(t=event.t, line=self.line),
            HungUp(t=event.t, line=self.line, recorded=False),
        ]

    def _flash(self, event: MachineInput) -> list[CallEvent]:
        assert isinstance(event, HookFlash)
        return [HookFlashed(t=event.t, line=self.line, duration=event.duration)]

    def _hang_up(self, event: MachineInput) -> list[CallEvent]:
        self._reset()
        return [HungUp(t=event.t, line=self.line, recorded=True)]

    def _reset(self) -> None:
        self.state = State.IDLE
        self.rings = 0
        self.direction = None


_Handler = Callable[[CallMachine, MachineInput], list[CallEvent]]

_TRANSITIONS: dict[tuple[State, type], _Handler] = {
    (State.IDLE, RingStart): CallMachine._ring,
    (State.IDLE, OffHook): CallMachine._off_hook,
    (State.RINGING, RingStart): CallMachine._ring,
    (State.RINGING, RingStop): CallMachine._ring_stop,
    (State.RINGING, OffHook): CallMachine._off_hook,
    (State.NOTICE, NoticeDone): CallMachine._notice_done,
    (State.NOTICE, OnHook): CallMachine._abandon,
    (State.RECORDING, HookFlash): CallMachine._flash,
    (State.RECORDING, OnHook): CallMachine._hang_up,
}

_IGNORED: dict[State, tuple[type, ...]] = {
    # In IDLE the hook events come from a line that was off hook before we started watching.
    State.IDLE: (RingStop, OnHook, HookBreak, HookFlash, HookGlitch),
    State.RINGING: (OnHook, HookGlitch),
    State.NOTICE: (RingStart, RingStop, HookBreak, HookGlitch, HookFlash),
    State.RECORDING: (RingStart, RingStop, HookBreak, HookGlitch),
}
