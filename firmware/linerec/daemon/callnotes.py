"""Which recordings on the card are parts of the call each line has in progress, noted on the
card so that a daemon restarted mid-call knows them.

systemd starts the daemon again after a crash or the watchdog's kill; if the line is still off
hook, the call goes on in a new recording (the one that was open is cut by recovery). An opt-out
after that must take every part of the call off the card, those before the restart too, and
only the daemon that wrote them knew which they were. So each line's call is noted in
`calls.json` when it is picked up (its direction) and when a part begins, and the note is
dropped when the call ends. An opted-out call stays noted, as opted out, until it ends: a
daemon restarted in it keeps nothing more of it. A call paused (PCI DSS: a card number is being
given) is noted as paused, with when the pause began on the kernel's boot clock, until it
resumes: a daemon restarted in the pause takes the call paused, and its forgotten-pause limit
counts from that moment, the time the daemon was down included (the boot clock goes on through
it, and is not stepped as the wall clock is when it is first synchronised).

A note links parts across a restart only within one boot (the kernel's boot id): after a power
loss the box may be off for hours, and a line off hook when it comes back may be another call.
Nor when the line is on hook at the restart: the call ended while the daemon was down.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from linerec.atomic import replace_file
from linerec.files import check_regular

log = logging.getLogger(__name__)

NOTES = "calls.json"
MAX_BYTES = 64 * 1024  # a few lines' ids; anything larger is not a note of ours
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id(path: Path = BOOT_ID) -> str:
    """This boot's id ("" where the kernel does not say: then no note links anything)."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def boot_clock() -> float:
    """Seconds since this boot, the time suspended included: one clock for every process of
    the boot, and only a note of this boot is ever read."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass(frozen=True, slots=True, kw_only=True)
class NotedCall:
    """A line's call in progress as noted: its recordings so far, and its direction."""

    parts: list[str]
    direction: str = ""  # "inbound", "outbound"; "" before the call's direction is known
    opted_out: bool = False  # the caller opted out: nothing more of the call is kept
    paused_at: float | None = None  # paused since then (boot clock): nothing is kept meanwhile


class CallNotes:
    """`<store dir>/calls.json`: {line: {"boot": boot id, "parts": [recording id, ...],
    "direction": "inbound" or "outbound", "opted_out": true if the caller opted out,
    "paused_at": boot-clock seconds at which the call was paused, while it is}}."""

    def __init__(
        self, directory: Path, boot: str, *, clock: Callable[[], float] = boot_clock
    ) -> None:
        self.path = directory / NOTES
        self._boot = boot
        self._clock = clock
        self._notes: dict[str, NotedCall] = {}
        self.left = self._read()  # what the daemon before this one noted in this boot

    def _read(self) -> dict[str, NotedCall]:
        if not self.path.exists():
            return {}
        try:
            check_regular(self.path, limit=MAX_BYTES)
            data = json.loads(self.path.read_bytes())
        except (OSError, ValueError, RecursionError) as exc:  # not ours to trust: links nothing
            log.warning("%s: unreadable, no call carried over a restart: %s", self.path, exc)
            return {}
        if not isinstance(data, dict):
            return {}
        left = {}
        for line, note in data.items():
            if not isinstance(note, dict) or not self._boot or note.get("boot") != self._boot:
                continue  # another boot's: the call it noted is over
            parts, direction = note.get("parts"), note.get("direction", "")
            opted_out = note.get("opted_out", False)
            paused_at = note.get("paused_at")
            if (
                isinstance(parts, list)
                and all(isinstance(p, str) for p in parts)
                and isinstance(direction, str)
                and isinstance(opted_out, bool)
                and (parts or direction or opted_out)  # a call answered, nothing kept yet
            ):
                if paused_at is not None and not _is_time(paused_at):
                    # Paused, but since when is not known: paused from now (nothing of the
                    # card number is kept), the limit counted from the restart.
                    log.warning("%s: %s: paused_at %r is not a time", self.path, line, paused_at)
                    paused_at = self._clock()
                left[str(line)] = NotedCall(
                    parts=list(parts),
                    direction=direction,
                    opted_out=opted_out,
                    paused_at=None if paused_at is None else float(paused_at),
                )
        return left

    def paused_for(self, call: NotedCall) -> float | None:
        """How long the noted call has been paused (None: it is not), never less than 0."""
        if call.paused_at is None:
            return None
        return max(0.0, self._clock() - call.paused_at)

    def carry_over(self, carried: dict[str, NotedCall]) -> None:
        """At start: the calls that go on from before the restart are these; any other note
        left is of a call that is over."""
        self._notes = dict(carried)
        if self._notes or self.left or self.path.exists():
            self._write()

    def note(
        self,
        line: str,
        parts: list[str],
        direction: str = "",
        opted_out: bool = False,
        paused: bool = False,
    ) -> None:
        """The parts of the call on `line` now, and its direction (known from the pick-up,
        before any part: an inbound caller restarted during the notice is still offered the
        key); [] and "": no call. `opted_out`: the caller opted out, so a restart in the call
        keeps nothing more of it. `paused`: the call is paused (since the moment it was first
        noted so, kept while it stays paused). Written through; OSError if the card fails it."""
        call = (
            NotedCall(parts=list(parts), direction=direction, opted_out=opted_out)
            if parts or direction or opted_out
            else None
        )
        if call is not None and paused:
            earlier = self._notes.get(line)
            since = earlier.paused_at if earlier is not None else None
            call = replace(call, paused_at=self._clock() if since is None else since)
        if self._notes.get(line) == call:
            return
        if call is not None:
            self._notes[line] = call
        else:
            self._notes.pop(line, None)
        self._write()

    def _write(self) -> None:
        # Written at a pick-up, a part, a pause and the call's end, on the main loop. Whole
        # (a reader finds the old note or the new one) but not synced: it never has to outlive
        # a power cut (another boot's note is ignored), and an fsync that stalls on a slow card
        # would delay the notice.
        body = {
            name: {
                "boot": self._boot,
                "parts": call.parts,
                "direction": call.direction,
                **({"opted_out": True} if call.opted_out else {}),
                **({"paused_at": call.paused_at} if call.paused_at is not None else {}),
            }
            for name, call in self._notes.items()
        }
        replace_file(self.path, json.dumps(body, sort_keys=True).encode())


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
