"""Which recordings on the card are parts of the call each line has in progress, noted on the
card so that a daemon restarted mid-call knows them.

systemd starts the daemon again after a crash or the watchdog's kill; if the line is still off
hook, the call goes on in a new recording (the one that was open is cut by recovery). An opt-out
after that must take every part of the call off the card, those before the restart too, and
only the daemon that wrote them knew which they were. So each line's call is noted in
`calls.json` when it is picked up (its direction) and when a part begins, and the note is
dropped when the call ends. An opted-out call stays noted, as opted out, until it ends: a
daemon restarted in it keeps nothing more of it.

A note links parts across a restart only within one boot (the kernel's boot id): after a power
loss the box may be off for hours, and a line off hook when it comes back may be another call.
Nor when the line is on hook at the restart: the call ended while the daemon was down.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from linerec.atomic import atomic_file
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


@dataclass(frozen=True, slots=True, kw_only=True)
class NotedCall:
    """A line's call in progress as noted: its recordings so far, and its direction."""

    parts: list[str]
    direction: str = ""  # "inbound", "outbound"; "" before the call's direction is known
    opted_out: bool = False  # the caller opted out: nothing more of the call is kept


class CallNotes:
    """`<store dir>/calls.json`: {line: {"boot": boot id, "parts": [recording id, ...],
    "direction": "inbound" or "outbound", "opted_out": true if the caller opted out}}."""

    def __init__(self, directory: Path, boot: str) -> None:
        self.path = directory / NOTES
        self._boot = boot
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
            if (
                isinstance(parts, list)
                and all(isinstance(p, str) for p in parts)
                and isinstance(direction, str)
                and isinstance(opted_out, bool)
                and (parts or direction or opted_out)  # a call answered, nothing kept yet
            ):
                left[str(line)] = NotedCall(
                    parts=list(parts), direction=direction, opted_out=opted_out
                )
        return left

    def carry_over(self, carried: dict[str, NotedCall]) -> None:
        """At start: the calls that go on from before the restart are these; any other note
        left is of a call that is over."""
        self._notes = dict(carried)
        if self._notes or self.left or self.path.exists():
            self._write()

    def note(
        self, line: str, parts: list[str], direction: str = "", opted_out: bool = False
    ) -> None:
        """The parts of the call on `line` now, and its direction (known from the pick-up,
        before any part: an inbound caller restarted during the notice is still offered the
        key); [] and "": no call. `opted_out`: the caller opted out, so a restart in the call
        keeps nothing more of it. Written through; OSError if the card fails it."""
        call = (
            NotedCall(parts=list(parts), direction=direction, opted_out=opted_out)
            if parts or direction or opted_out
            else None
        )
        if self._notes.get(line) == call:
            return
        if call is not None:
            self._notes[line] = call
        else:
            self._notes.pop(line, None)
        self._write()

    def _write(self) -> None:
        # A small file synced when a part begins and when the call ends, beside the syncs of
        # the recording's own header: never once a chunk.
        body = {
            name: {
                "boot": self._boot,
                "parts": call.parts,
                "direction": call.direction,
                **({"opted_out": True} if call.opted_out else {}),
            }
            for name, call in self._notes.items()
        }
        with atomic_file(self.path) as out:
            out.write(json.dumps(body, sort_keys=True).encode())
