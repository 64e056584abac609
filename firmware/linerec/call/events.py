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
class NoticeDone:
    """Input from the output stage: the last notice sample has been written to the line."""

    t: float
