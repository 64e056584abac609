"""What an update reports, as frozen events on the box's event topic (through the outbox).

`line` is always "" (an update is the whole box's); `version` is the bundle's release."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from linerec.call.events import CallEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateProgress(CallEvent):
    """A step of an install under way: fetching, checking, or RAUC's own steps."""

    name: ClassVar[str] = "update_progress"
    percent: int
    step: str
    source: str  # the URL or file the bundle came from


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateRefused(CallEvent):
    """The bundle failed a check; nothing on the box was changed."""

    name: ClassVar[str] = "update_refused"
    kind: str  # missing, truncated, altered, untrusted, incompatible, no-version, older, fetch
    reason: str
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateFailed(CallEvent):
    """The install itself failed (or its result could not be kept); the booted slot is as it was."""

    name: ClassVar[str] = "update_failed"
    version: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateInstalled(CallEvent):
    """The new release is in the other slot and boots next, on trial."""

    name: ClassVar[str] = "update_installed"
    version: str
    slot: str  # the bootname written (A or B)


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateRebooting(CallEvent):
    """The box reboots into the new slot now."""

    name: ClassVar[str] = "update_rebooting"
    version: str
    waited: float  # seconds waited for every line to be on hook
    forced: bool  # True: [update] max_wait_s ran out with a line still busy


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateCompleted(CallEvent):
    """The new slot booted, came up and is marked good: it stays."""

    name: ClassVar[str] = "update_completed"
    version: str
    slot: str
    previous: str  # the release it replaced


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateRolledBack(CallEvent):
    """The new slot did not come up (U-Boot gave up on it): the old one runs again."""

    name: ClassVar[str] = "update_rolled_back"
    version: str  # the release that failed
    slot: str  # the slot it was in
    running: str  # the release running again
    booted: str  # the slot running again
