"""One line's call policy: consent, notice, opt-out, PCI pause, the number dialled, the beep.

Sans-IO, like `call/machine.py`: line events, what analysis heard, the line's button and
commands go in with their times; decisions come out (events to report, which audio not yet
on the card to keep or drop, keys to silence, what to play to the line, facts to note with
the recording). No audio, no thread, no clock of its own: the daemon's line pipeline carries
the decisions out, in order.

The rules, as `_RULES` below holds them (input, phase of the call -> decision):

    input                phase                        decision
    -------------------  ---------------------------  ---------------------------------------
    opt-out key          opt-out open (paused or not) opt out: keep nothing; opted_out
    button               opt-out open                 opt out
    button               dialling, recording          pause (PCI): keep nothing from here
    button               paused                       resume, at that very sample
    pause code, command  dialling, recording,         pause from the code's first key; the
                         opt-out open                 code's keys are not part of the number
    resume code, command paused                       resume from the code's first key
    opt-out command      notice, opt-out open,        opt out
                         dialling, recording, paused
    digit                dialling                     part of the number called
    connected            dialling                     dialling ends: the number is noted (if
                                                      its last keys may begin a code: once
                                                      the code is keyed, without them, or
                                                      cannot be any more)

A key pressed in a call is always silenced in the recording and reported without the key.
An opt-out holds until the next call: none of the call's audio is kept, whenever it comes
(audio from before the opt-out that reaches the policy after it included), and nothing starts
a recording again (a notice that ends after it starts none; the button, codes and commands do
nothing).
Phases, first that applies: idle (on hook, ringing); opted out; dialling (an outbound call
until the first sign it is connected: a progress tone other than dial tone, voice after the
first digit once our notice is over (either begun after the last key), a pause, `dial_gap`
after the last digit, or `dial_limit` after pick-up); paused; opt-out open (an inbound call
under a notice mode with an opt-out key: while the notice plays and `opt_out_window` after);
notice; recording. Anything else is ignored: a resume when not paused, a pause during the
notice, keys on hook.

A call taken over after a daemon restart that was paused before it (`carry_pause`) is paused
from its pick-up, notice or not: nothing of it is kept (the notice played again included) until
a resume, and the forgotten-pause limit counts from the pause's first moment before the restart.
The replayed notice is harmless (an all-party caller hears it twice); recording the card number
is not. The opt-out key works while the opt-out is open, paused or not: the replayed notice
offers it. A resume while the notice still plays keeps the rest of it as the recording's head.

The consent mode is read in one place: the machine's, taken for each call at pick-up (a
command changes it from the next call on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from linerec.call.consent import ConsentMode
from linerec.call.events import (
    Answered,
    CallerIdFailed,
    CallerIdHeard,
    CallEvent,
    Dialled,
    Direction,
    DtmfHeard,
    HungUp,
    LineQuiet,
    NoticeAbandoned,
    NoticeDone,
    NoticePlayed,
    NoticeStarted,
    OptedOut,
    RecordingPaused,
    RecordingResumed,
    RecordingStarted,
    ToneHeard,
)
from linerec.call.keys import KeyCodes
from linerec.call.machine import CallMachine, MachineInput, State
from linerec.dsp.analyzer import Heard
from linerec.dsp.callerid import CallerId, CallerIdError
from linerec.dsp.dtmf import DtmfDigit
from linerec.dsp.progress import Tone
from linerec.dsp.voice import Voice

KEY_MARGIN = 0.02  # seconds of silence either side of a key pressed during a call
CALLER_ID_FRESH = 30.0  # seconds: caller ID heard this long before pick-up belongs to the call
MAX_DIALLED = 24  # digits of a number (E.164 has 15, plus prefixes); more is not dialling


class Keep(Enum):
    """What becomes of captured audio that has not reached the card yet."""

    DROP = "drop"  # not kept: before consent, between calls, paused, opted out
    NOTICE = "notice"  # the notice as played to the line: the head of the recording
    RECORD = "record"  # the conversation


# -- decisions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Retag:
    """Audio not yet on the card, from `since` on, that is kept as `only` is now `keep`."""

    since: float
    only: Keep
    keep: Keep


@dataclass(frozen=True, slots=True)
class Silence:
    """Zero the audio between `start` and `end` (a key: it may be a card digit)."""

    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Note:
    """A fact about the call, kept with its recording (metadata)."""

    key: str
    value: object


@dataclass(frozen=True, slots=True)
class Discard:
    """Nothing of this call is kept: the recording begun so far goes too."""

    t: float


@dataclass(frozen=True, slots=True)
class Play:
    """What the line output plays from now: "notice", "beep" or "nothing"."""

    what: str


@dataclass(frozen=True, slots=True)
class Seal:
    """The call is over: keep what is still held back, then seal the recording."""

    t: float
    reason: str


Decision = CallEvent | Retag | Silence | Note | Discard | Play | Seal


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySettings:
    """A line's policy, from its configuration."""

    consent: ConsentMode
    label: str = ""
    opt_out_key: str = ""
    opt_out_window: float = 5.0
    pause_code: str = "*1"
    resume_code: str = "*2"
    pause_limit: float = 180.0
    dial_gap: float = 4.0
    dial_limit: float = 30.0
    retention_days: float = 0


class Phase(Enum):
    IDLE = "idle"
    OPTED_OUT = "opted out"
    DIALLING = "dialling"
    PAUSED = "paused"
    OPT_OUT_OPEN = "opt-out open"
    NOTICE = "notice"
    RECORDING = "recording"


class Input(Enum):
    OPT_OUT_KEY = "opt-out key"
    BUTTON = "button"
    PAUSE = "pause"  # the pause code, or a command
    RESUME = "resume"
    OPT_OUT = "opt-out command"
    DIGIT = "digit"
    CONNECTED = "connected"


@dataclass(slots=True)
class _Call:
    """What the policy knows of the call in progress."""

    consent: ConsentMode
    direction: Direction
    answered_at: float
    facts: dict[str, object] = field(default_factory=dict)
    dialling: bool = False
    number: str = ""
    last_digit_at: float = float("-inf")
    # Dialling is over, but the number's last keys may begin a pause or resume code: it is
    # noted once the code is keyed (without its keys) or cannot be any more.
    number_waits: bool = False
    last_key_at: float = float("-inf")  # when the last key of the call ended
    notice_played_at: float | None = None
    paused_since: float | None = None
    opted_out: bool = False


class CallPolicy:
    def __init__(
        self, *, line: str, settings: PolicySettings, wall: Callable[[float], datetime]
    ) -> None:
        self.line = line
        self.settings = settings
        self.machine = CallMachine(line=line, consent=settings.consent)
        self._wall = wall
        self._keys = KeyCodes(
            opt_out_key=settings.opt_out_key,
            pause_code=settings.pause_code,
            resume_code=settings.resume_code,
        )
        self._call: _Call | None = None
        self._pending_caller: tuple[float, dict[str, object]] | None = None
        self._carried_pause: float | None = None  # the next pick-up is paused this long already
        self._keep_changes: list[tuple[float, Keep]] = [(float("-inf"), Keep.DROP)]
        self.callerid_errors = 0

    # -- what the pipeline asks --------------------------------------------------------------

    @property
    def consent(self) -> ConsentMode:
        """The mode the call in progress (or the last call) was given."""
        return self._call.consent if self._call else self.machine.consent

    @property
    def direction(self) -> Direction | None:
        return self._call.direction if self._call else None

    @property
    def paused(self) -> bool:
        return self._call is not None and self._call.paused_since is not None

    @property
    def opted_out(self) -> bool:
        """The call in progress (or the last call, until the next is answered) was opted out:
        nothing of it may be kept, whenever its audio comes."""
        return self._call is not None and self._call.opted_out

    @property
    def in_call(self) -> bool:
        """Off hook: keys pressed now are the call's (and silenced)."""
        return self.machine.state in (State.NOTICE, State.RECORDING)

    @property
    def facts(self) -> dict[str, object]:
        """What is known of the call so far, for a recording that begins now."""
        return {**(self._call.facts if self._call else {}), "policy": self._record()}

    def keep_spans(self, start: float, end: float) -> list[tuple[float, Keep]]:
        """How audio from `start` to `end` is kept: (from, keep) pieces, the first at `start`.

        A pause or resume decided between two frames takes effect at its own sample."""
        changes = self._keep_changes
        if changes[-1][0] <= start:  # the usual case: nothing changes from here on
            return [(start, changes[-1][1])]
        first = max((i for i, (t, _) in enumerate(changes) if t <= start), default=0)
        spans = [(start, changes[first][1])]
        for t, keep in changes[first + 1 :]:
            if t < end and keep is not spans[-1][1]:
                spans.append((t, keep))
        return spans

    def quiet_until(self) -> float:
        """`tick` decides nothing for any time before this (given no other input meanwhile):
        the earliest missed call, end of dialling, number noted or forgotten pause to come."""
        due = self.machine.quiet_until()
        call = self._call
        if call is None or not self.in_call:
            return due
        if call.dialling:
            due = min(due, call.answered_at + self.settings.dial_limit)
            if call.number:
                due = min(due, call.last_digit_at + self.settings.dial_gap)
        if call.number_waits:
            due = min(due, call.last_key_at + self._keys.gap)
        if call.paused_since is not None:
            due = min(due, call.paused_since + self.settings.pause_limit)
        return due

    def phase(self, t: float) -> Phase:
        call = self._call
        if call is None or not self.in_call:
            return Phase.IDLE
        if call.opted_out:
            return Phase.OPTED_OUT
        if call.dialling:
            return Phase.DIALLING
        if call.paused_since is not None:
            return Phase.PAUSED
        if self._opt_out_open(call, t):
            return Phase.OPT_OUT_OPEN
        return Phase.NOTICE if self.machine.state is State.NOTICE else Phase.RECORDING

    def carry_pause(self, paused_for: float | None) -> None:
        """The next pick-up continues a call paused `paused_for` seconds before a restart
        (None: not paused, or the line went on hook since)."""
        self._carried_pause = paused_for

    def set_consent(self, mode: ConsentMode) -> None:
        """From the next call on (a call in progress keeps the notice it was given)."""
        self.machine.consent = mode

    # -- inputs ------------------------------------------------------------------------------

    def line_event(self, event: MachineInput) -> list[Decision]:
        """Hook and ring events (and the notice's end) through the call flow."""
        decisions: list[Decision] = []
        for call_event in self.machine.feed(event):
            decisions += self._call_event(call_event)
        return decisions

    def notice_done(self, t: float) -> list[Decision]:
        return self.line_event(NoticeDone(t=t))

    def tick(self, now: float) -> list[Decision]:
        """Time has reached `now`: missed calls, a forgotten pause, dialling that has ended."""
        decisions: list[Decision] = []
        for event in self.machine.tick(now):
            decisions += self._call_event(event)
        call = self._call
        if call is None or not self.in_call:
            return decisions
        if call.dialling and (
            (call.number and now - call.last_digit_at > self.settings.dial_gap)
            or now - call.answered_at > self.settings.dial_limit
        ):
            decisions += self._apply(Input.CONNECTED, now)
        if call.number_waits and now - call.last_key_at > self._keys.gap:
            decisions += self._note_number()  # no code came: the keys were dialled
        if call.paused_since is not None and now - call.paused_since >= self.settings.pause_limit:
            decisions += self._resume(now, "auto")  # a forgotten pause must not lose the call
        return decisions

    def heard(self, heard: Heard) -> list[Decision]:
        """What analysis heard on the line."""
        if isinstance(heard, DtmfDigit):
            return self._digit(heard)
        if isinstance(heard, CallerId):
            return self._caller_id(heard)
        if isinstance(heard, CallerIdError):
            self.callerid_errors += 1
            return [CallerIdFailed(t=heard.t, line=self.line, reason=heard.reason)]
        if isinstance(heard, Tone):
            event = ToneHeard(t=heard.t, line=self.line, tone=heard.name, plan=heard.plan)
            if heard.name == "dial" or self._before_last_key(heard.t):
                return [event]
            return [event, *self._apply(Input.CONNECTED, heard.t)]  # the exchange answered
        if isinstance(heard, Voice):
            # Talking before dialling is not an answer, nor is the notice we play ourselves.
            call = self._call
            if (
                call is not None
                and call.number
                and self.machine.state is State.RECORDING
                and not self._before_last_key(heard.t)
            ):
                return self._apply(Input.CONNECTED, heard.t)
            return []
        if self.in_call:  # silence on an idle line is its normal state
            return [LineQuiet(t=heard.t, line=self.line, kind=heard.name)]
        return []

    def button(self, t: float) -> list[Decision]:
        """The line's push button was pressed."""
        return self._apply(Input.BUTTON, t)

    def command(self, action: str, t: float) -> list[Decision]:
        """A signed command from the collector: "pause", "resume" or "opt_out"."""
        kind = {"pause": Input.PAUSE, "resume": Input.RESUME, "opt_out": Input.OPT_OUT}[action]
        return self._apply(kind, t, by="command")

    # -- the rules ---------------------------------------------------------------------------

    def _apply(self, kind: Input, t: float, *, by: str = "", digit: str = "") -> list[Decision]:
        rule = _RULES.get((kind, self.phase(t)))
        if rule is None:
            return []
        return rule(self, t, by or _BY[kind], digit)

    def _before_last_key(self, t: float) -> bool:
        """A sound analysis tells of late that began before the last key dialled (a CEPT dial
        tone cut short by the first key looks like ringback): no answer to the number."""
        call = self._call
        return call is not None and call.dialling and t < call.last_digit_at

    def _opt_out_open(self, call: _Call, t: float) -> bool:
        if not self.settings.opt_out_key or not call.consent.plays_notice:
            return False
        if call.direction is not Direction.INBOUND:
            return False  # the notice played to whoever picked up to dial, not the far end
        if self.machine.state is State.NOTICE:
            return True
        played = call.notice_played_at
        return played is not None and t - played <= self.settings.opt_out_window

    def _digit(self, digit: DtmfDigit) -> list[Decision]:
        call = self._call
        if call is None or not self.in_call:
            return []  # on hook: not ours (another extension, or noise)
        # No key is kept in the audio: a code, or a digit of a card number (PCI DSS). The
        # digit ended a frame or two ago, so its audio is still held back.
        decisions: list[Decision] = [
            Silence(digit.t - KEY_MARGIN, digit.t + digit.duration + KEY_MARGIN),
            DtmfHeard(t=digit.t, line=self.line, duration=digit.duration),
        ]
        if call.dialling and call.number and digit.t - call.last_digit_at > self.settings.dial_gap:
            decisions += self._apply(Input.CONNECTED, digit.t)
        decisions += self._apply(Input.DIGIT, digit.t, digit=digit.digit)
        call.last_key_at = digit.t + digit.duration
        phase = self.phase(digit.t)
        opt_out_open = phase is Phase.OPT_OUT_OPEN or (
            phase is Phase.PAUSED and self._opt_out_open(call, digit.t)
        )
        for action in self._keys.feed(
            digit.digit, digit.t, digit.duration, opt_out_open=opt_out_open
        ):
            if action.kind == "opt_out":
                decisions += self._apply(Input.OPT_OUT_KEY, action.t)
            else:
                settings = self.settings
                code = settings.pause_code if action.kind == "pause" else settings.resume_code
                if call.dialling and call.number.endswith(code):
                    call.number = call.number[: -len(code)]  # a code, not part of the number
                elif call.number_waits:  # its first keys may be the number's last ones
                    begun = _code_begun(call.number, code)
                    if begun and action.t <= call.last_digit_at:
                        call.number = call.number[:-begun]
                    decisions += self._note_number()
                kind = Input.PAUSE if action.kind == "pause" else Input.RESUME
                decisions += self._apply(kind, action.t, by="code")
        return decisions

    def _dial(self, t: float, by: str, digit: str) -> list[Decision]:
        call = self._call
        assert call is not None
        if len(call.number) >= MAX_DIALLED:
            return self._connected(t, by, digit)
        call.number += digit
        call.last_digit_at = t
        return []

    def _connected(self, t: float, by: str, digit: str) -> list[Decision]:
        """Dialling is over: the number, without any code's keys, is noted once."""
        call = self._call
        assert call is not None
        call.dialling = False
        if not call.number:
            return []
        settings = self.settings
        if (
            _code_begun(call.number, settings.pause_code)
            or _code_begun(call.number, settings.resume_code)
        ) and t - call.last_key_at <= self._keys.gap:
            call.number_waits = True  # the code's next key may still come
            return []
        return self._note_number()

    def _note_number(self) -> list[Decision]:
        call = self._call
        assert call is not None
        call.number_waits = False
        if not call.number:
            return []
        call.facts["called_number"] = call.number
        return [
            Note("called_number", call.number),
            Dialled(t=call.last_digit_at, line=self.line, number=call.number),
        ]

    def _opt_out(self, t: float, by: str, digit: str) -> list[Decision]:
        call = self._call
        assert call is not None
        decisions: list[Decision] = []
        if call.dialling or call.number_waits:  # nothing of an opted-out call is kept
            call.dialling, call.number_waits, call.number = False, False, ""
        call.opted_out = True
        call.paused_since = None
        call.facts.clear()
        # Not from `t` on but at every moment: audio of the call from before `t` may still be
        # on its way (a capture that lagged or stalled hands it over after a command that
        # came meanwhile was carried out), and none of it may begin a recording.
        self._keep_changes[:] = [(float("-inf"), Keep.DROP)]
        decisions += [
            Play("nothing"),
            Retag(float("-inf"), Keep.RECORD, Keep.DROP),
            Retag(float("-inf"), Keep.NOTICE, Keep.DROP),
            Discard(t),
            OptedOut(t=t, line=self.line, by=by),
        ]
        return decisions

    def _pause(self, t: float, by: str, digit: str) -> list[Decision]:
        call = self._call
        assert call is not None
        decisions: list[Decision] = []
        if call.dialling:  # a pause means somebody is on the line: the number is complete
            decisions += self._connected(t, by, digit)
        if self.machine.state is not State.RECORDING:
            return decisions  # the notice still plays: nothing of the call is kept yet
        call.paused_since = t
        self._keep_from(t, Keep.DROP)
        return [
            *decisions,
            Retag(t, Keep.RECORD, Keep.DROP),
            RecordingPaused(t=t, line=self.line, by=by),
        ]

    def _resume(self, t: float, by: str, digit: str = "") -> list[Decision]:
        call = self._call
        assert call is not None
        start, call.paused_since = call.paused_since, None
        if start is None:
            return []
        if self.machine.state is State.NOTICE:  # a carried pause: the notice played again
            self._keep_from(t, Keep.NOTICE)
            retag = Retag(t, Keep.DROP, Keep.NOTICE)
        else:
            self._keep_from(t, Keep.RECORD)
            retag = Retag(t, Keep.DROP, Keep.RECORD)
        earlier = call.facts.get("pauses")
        span = {
            "from": self._wall(start).isoformat(timespec="milliseconds"),
            "seconds": round(t - start, 3),
            "by": by,
        }
        pauses = [*(earlier if isinstance(earlier, list) else []), span]
        call.facts["pauses"] = pauses
        return [
            retag,
            Note("pauses", pauses),
            RecordingResumed(t=t, line=self.line, by=by),
        ]

    # -- the call flow's events --------------------------------------------------------------

    def _call_event(self, event: CallEvent) -> list[Decision]:
        if isinstance(event, Answered):
            return [event, *self._answered(event)]
        call = self._call
        if isinstance(event, RecordingStarted):
            if call is not None and call.opted_out:
                # The notice ended after the opt-out (it had ended while a hook break was
                # judged): the call goes on, recorded by nobody.
                return []
            if call is not None and call.paused_since is not None:
                # carried over a restart mid-pause: nothing is kept until the resume
                return [event, Play("beep" if event.beep else "nothing")]
            self._keep_from(event.t, Keep.RECORD)
            # one-party and beep: keep the frames since off hook that are still held back
            return [
                event,
                Retag(event.t, Keep.DROP, Keep.RECORD),
                Play("beep" if event.beep else "nothing"),
            ]
        if isinstance(event, NoticeAbandoned):
            self._keep_from(event.t, Keep.DROP)
            return [event, Play("nothing"), Retag(float("-inf"), Keep.NOTICE, Keep.DROP)]
        if isinstance(event, HungUp):
            return self._hung_up(event)
        if isinstance(event, NoticeStarted):
            if call is not None and call.paused_since is not None:
                return [event, Play("notice")]  # played again after a restart: kept by no one
            self._keep_from(event.t, Keep.NOTICE)
            return [event, Play("notice")]
        if isinstance(event, NoticePlayed) and call is not None:
            call.notice_played_at = event.t
        return [event]

    def _answered(self, event: Answered) -> list[Decision]:
        call = _Call(
            consent=self.machine.consent,
            direction=event.direction,
            answered_at=event.t,
            dialling=event.direction is Direction.OUTBOUND,
        )
        pending, self._pending_caller = self._pending_caller, None
        fresh = pending is not None and event.t - pending[0] < CALLER_ID_FRESH
        if pending and fresh and event.direction is Direction.INBOUND:
            call.facts.update(pending[1])  # the caller ID heard while it rang
        self._call = call
        carried, self._carried_pause = self._carried_pause, None
        if carried is None:
            return []
        # The call goes on paused, as it was before the restart: a pause means it is
        # connected, so nothing keyed now is dialling.
        call.dialling = False
        call.paused_since = event.t - carried
        self._keep_from(event.t, Keep.DROP)
        return [RecordingPaused(t=event.t, line=self.line, by="restart")]

    def _hung_up(self, event: HungUp) -> list[Decision]:
        call = self._call
        opted_out = call is not None and call.opted_out
        decisions: list[Decision] = [
            HungUp(t=event.t, line=self.line, recorded=event.recorded and not opted_out)
        ]
        if call is not None:
            if call.paused_since is not None:  # noted and reported; nothing after it is kept
                decisions += [
                    d for d in self._resume(event.t, "hang-up") if not isinstance(d, Retag)
                ]
            if call.dialling:
                decisions += self._connected(event.t, "hang-up", "")
            if call.number_waits:
                decisions += self._note_number()
        # The call stays known until the next one: what is still held back is kept under it.
        self._keep_from(event.t, Keep.DROP)
        return [*decisions, Play("nothing"), Seal(event.t, "hang-up")]

    def _caller_id(self, heard: CallerId) -> list[Decision]:
        event = CallerIdHeard(
            t=heard.t,
            line=self.line,
            number=heard.number,
            caller_name=heard.name,
            number_absent=heard.number_absent,
            standard=heard.standard,
            in_call=self.in_call,
        )
        every: dict[str, object] = {
            "caller_number": heard.number,
            "caller_name": heard.name,
            "caller_absent": heard.number_absent,
            "callerid_datetime": heard.datetime,
        }
        facts = {key: value for key, value in every.items() if value}
        call = self._call
        if call is None or not self.in_call:
            self._pending_caller = (heard.t, facts)
            return [event]
        if call.opted_out:
            return [event]
        # call waiting: noted with this call, which goes on undisturbed
        earlier = call.facts.get("call_waiting")
        waiting = [*(earlier if isinstance(earlier, list) else []), {"t": heard.t, **facts}]
        call.facts["call_waiting"] = waiting
        return [event, Note("call_waiting", waiting)]

    # -- bookkeeping -------------------------------------------------------------------------

    def _keep_from(self, t: float, keep: Keep) -> None:
        changes = self._keep_changes
        changes[:] = [change for change in changes if change[0] != t]  # the later decision wins
        changes.append((t, keep))
        changes.sort(key=lambda change: change[0])
        if len(changes) > 16:  # only the last few seconds are ever asked about
            del changes[:-16]

    def _record(self) -> dict[str, object]:
        """The policy a recording was made under, kept with it."""
        settings = self.settings
        return {
            "label": settings.label,
            "consent": self.consent.value,
            "opt_out_key": settings.opt_out_key,
            "opt_out_window_s": settings.opt_out_window,
            "pause_code": settings.pause_code,
            "resume_code": settings.resume_code,
            "pause_limit_s": settings.pause_limit,
            "dial_gap_s": settings.dial_gap,
            "dial_limit_s": settings.dial_limit,
            "retention_days": settings.retention_days,
        }


def _code_begun(number: str, code: str) -> int:
    """How many of `number`'s last keys are the beginning of `code` (not the whole of it)."""
    return max((k for k in range(1, len(code)) if number.endswith(code[:k])), default=0)


_Rule = Callable[[CallPolicy, float, str, str], list[Decision]]

_RULES: dict[tuple[Input, Phase], _Rule] = {
    (Input.OPT_OUT_KEY, Phase.OPT_OUT_OPEN): CallPolicy._opt_out,
    (Input.OPT_OUT_KEY, Phase.PAUSED): CallPolicy._opt_out,  # only while the opt-out is open
    (Input.BUTTON, Phase.OPT_OUT_OPEN): CallPolicy._opt_out,
    (Input.BUTTON, Phase.DIALLING): CallPolicy._pause,
    (Input.BUTTON, Phase.RECORDING): CallPolicy._pause,
    (Input.BUTTON, Phase.PAUSED): CallPolicy._resume,
    (Input.PAUSE, Phase.DIALLING): CallPolicy._pause,
    (Input.PAUSE, Phase.RECORDING): CallPolicy._pause,
    (Input.PAUSE, Phase.OPT_OUT_OPEN): CallPolicy._pause,
    (Input.RESUME, Phase.PAUSED): CallPolicy._resume,
    (Input.OPT_OUT, Phase.NOTICE): CallPolicy._opt_out,
    (Input.OPT_OUT, Phase.OPT_OUT_OPEN): CallPolicy._opt_out,
    (Input.OPT_OUT, Phase.DIALLING): CallPolicy._opt_out,
    (Input.OPT_OUT, Phase.RECORDING): CallPolicy._opt_out,
    (Input.OPT_OUT, Phase.PAUSED): CallPolicy._opt_out,
    (Input.DIGIT, Phase.DIALLING): CallPolicy._dial,
    (Input.CONNECTED, Phase.DIALLING): CallPolicy._connected,
}

_BY = {
    Input.OPT_OUT_KEY: "key",
    Input.BUTTON: "button",
    Input.PAUSE: "code",
    Input.RESUME: "code",
    Input.OPT_OUT: "command",
    Input.DIGIT: "",
    Input.CONNECTED: "",
}
