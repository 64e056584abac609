"""What happens on a line, as frozen events. Each has a `name` used in logs and JSON."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import ClassVar


class Direction(Enum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEvent:
    name: ClassVar[str] = "event"
    t: float
    line: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Ringing(CallEvent):
    """The first ring burst of an inbound call."""

    name: ClassVar[str] = "ringing"


@dataclass(frozen=True, slots=True, kw_only=True)
class MissedCall(CallEvent):
    """Ringing stopped and nobody answered."""

    name: ClassVar[str] = "missed_call"
    rings: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Answered(CallEvent):
    """The line went off hook: answered after ringing (inbound) or picked up to dial (outbound)."""

    name: ClassVar[str] = "answered"
    direction: Direction
    rings: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NoticeStarted(CallEvent):
    name: ClassVar[str] = "notice_started"


@dataclass(frozen=True, slots=True, kw_only=True)
class NoticePlayed(CallEvent):
    """The whole notice went to the line."""

    name: ClassVar[str] = "notice_played"


@dataclass(frozen=True, slots=True, kw_only=True)
class NoticeAbandoned(CallEvent):
    """Hung up while the notice played: nothing is recorded."""

    name: ClassVar[str] = "notice_abandoned"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingStarted(CallEvent):
    """From here on the conversation is kept."""

    name: ClassVar[str] = "recording_started"
    direction: Direction
    beep: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class HookFlashed(CallEvent):
    name: ClassVar[str] = "hook_flash"
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class HungUp(CallEvent):
    name: ClassVar[str] = "hung_up"
    recorded: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialled(CallEvent):
    """The number called on an outbound call, once dialling has ended (the call connected, or
    dialling stopped). Digits of a pause or resume code are not part of it."""

    name: ClassVar[str] = "dialled"
    number: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfHeard(CallEvent):
    """A key pressed during the call. Which key is not reported: it may be part of a card
    number (PCI DSS); the call flow itself sees it."""

    name: ClassVar[str] = "dtmf"
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerIdHeard(CallEvent):
    """Caller ID: before an inbound call (attached to it) or during one (call waiting)."""

    name: ClassVar[str] = "callerid"
    number: str
    caller_name: str
    number_absent: str
    standard: str
    in_call: bool  # call waiting: another call is announced; this one goes on


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerIdFailed(CallEvent):
    name: ClassVar[str] = "callerid_error"
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ToneHeard(CallEvent):
    """A call-progress tone (dial, ringback, busy, reorder, congestion, sit, alerting)."""

    name: ClassVar[str] = "tone"
    tone: str
    plan: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LineQuiet(CallEvent):
    """Off hook and silent for long (silence), or no signal at all (line_dead)."""

    name: ClassVar[str] = "line_quiet"
    kind: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OptedOut(CallEvent):
    """A party refused to be recorded: nothing of the call is kept."""

    name: ClassVar[str] = "opted_out"
    by: str  # "key", "button" or "command"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingPaused(CallEvent):
    """PCI: from here no audio of the call reaches the card until it resumes."""

    name: ClassVar[str] = "recording_paused"
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingResumed(CallEvent):
    name: ClassVar[str] = "recording_resumed"
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NoticeDone:
    """Input from the output stage: the last notice sample has been written to the line."""

    t: float
