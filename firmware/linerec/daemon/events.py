"""Events the daemon itself reports (the call flow's own are in `linerec.call.events`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from linerec.call.events import CallEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingSealed(CallEvent):
    """A recording is complete and durable on the card."""

    name: ClassVar[str] = "recording_sealed"
    id: str
    path: str
    duration: float
    ended_by: str  # "hang-up", "shutdown", "power-loss"


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioGap(CallEvent):
    """The capture lost audio (an overrun); a recording in progress marks the gap."""

    name: ClassVar[str] = "audio_gap"
    seconds: float
    in_recording: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialled(CallEvent):
    """A digit dialled on an outbound call, before it connected: part of the called number."""

    name: ClassVar[str] = "dialled"
    digit: str
    number: str  # the called number so far


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
class CommandDone(CallEvent):
    name: ClassVar[str] = "command_done"
    action: str
    counter: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRefused(CallEvent):
    """A command that was not signed, was replayed or expired, or could not be done."""

    name: ClassVar[str] = "command_refused"
    reason: str
    counter: int  # the refused command's counter (0 if it carried none that could be read)
    last_counter: int  # the highest counter this device has accepted: send above it


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
class RecordingDeleted(CallEvent):
    """A recording left the card: evicted for room, or past its retention."""

    name: ClassVar[str] = "recording_deleted"
    id: str
    seq: int
    reason: str  # "evicted" or "retention"
    acknowledged: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreFilling(CallEvent):
    """The ring passed its warning level."""

    name: ClassVar[str] = "store_filling"
    percent: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault(CallEvent):
    """Something is wrong that a person must look at; `line` is "" for the whole box."""

    name: ClassVar[str] = "fault"
    kind: str  # "audio", "store", "config"
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultCleared(CallEvent):
    name: ClassVar[str] = "fault_cleared"
    kind: str
