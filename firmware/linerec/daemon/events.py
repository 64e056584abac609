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
class RecordingDeleted(CallEvent):
    """A recording left the card: evicted for room, past its retention, deleted by command, or
    opted out ("opted-out": discarded as it was written, or a part of the call sealed before
    the opt-out; its number is deliberately absent from the chain; `header_hash` and `prev`
    link it in, so the next recording still verifies)."""

    name: ClassVar[str] = "recording_deleted"
    id: str
    seq: int  # the recording's number; on the wire `seq` is the event's own, so also:
    recording_seq: int  # the recording's number, as the collector reads it
    reason: str  # "evicted", "retention", "command", "opted-out" or "discarded"
    acknowledged: bool
    header_hash: str = ""
    prev: str = ""


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
