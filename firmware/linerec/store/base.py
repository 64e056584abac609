"""The store interface the daemon writes recordings through."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from linerec.codec import Samples


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingInfo:
    """What is known when a recording begins."""

    device_id: str
    line: str
    label: str
    direction: str
    consent: str
    started_at: datetime  # wall clock, UTC, of the first kept sample
    clock_synchronized: bool  # False until NTP has set the clock (a Pi has no RTC)
    notice_seconds: float = 0.0  # the notice as played heads the recording: its length
    retention_days: float = 0.0  # this line's retention; 0 = the store's


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedRecording:
    id: str
    path: Path
    duration: float
    metadata: dict[str, Any]


class RecordingWriter(ABC):
    """One recording being written. Audio is 8 kHz int16 mono."""

    id: str  # the recording's id, as the ring names it

    @abstractmethod
    def write(self, samples: Samples) -> None: ...

    @abstractmethod
    def mark_gap(self, samples: int, reason: str) -> None:
        """Audio was lost here: keep the timeline (silence of that length) and mark it."""

    @abstractmethod
    def annotate(self, key: str, value: object) -> None:
        """Add a fact about the call to the recording's metadata (e.g. the called number)."""

    @abstractmethod
    def mark(self, label: str) -> None:
        """Put a labelled marker at the current position (e.g. where the notice ends)."""

    @abstractmethod
    def seal(self, *, ended_by: str) -> SealedRecording:
        """Finish the recording durably; `ended_by` says why (hang-up, shutdown, ...)."""

    @abstractmethod
    def discard(self, reason: str = "discarded") -> None:
        """Delete what was written (nothing of it is kept); `reason` ("opted-out") is logged
        and reported with the recording's number."""


class Store(ABC):
    @abstractmethod
    def recover(self) -> list[SealedRecording]:
        """At start: make recordings a power cut left open readable, marked as cut."""

    @abstractmethod
    def begin(self, info: RecordingInfo) -> RecordingWriter: ...

    @abstractmethod
    def fill(self) -> float | None:
        """How full the store is, 0..1 (None if it has no set capacity)."""

    @abstractmethod
    def hold(self, recording_id: str) -> None:
        """Legal hold: never evicted, never deleted by retention."""

    @abstractmethod
    def release(self, recording_id: str) -> None: ...

    @abstractmethod
    def delete(self, recording_id: str, reason: str) -> None:
        """Delete one recording on request (reported; refused while on hold)."""

    @abstractmethod
    def enforce_retention(self) -> list[str]:
        """Delete what is past its retention (unless held); returns the ids deleted."""
