"""Consent modes and the US recorder warning tone schedule.

* `one-party`: record from off hook, no notice (one-party-consent jurisdictions).
* `notice`: play the notice first; keep the notice at the head of the recording as proof; keep
  the conversation only once the notice has played.
* `beep`: the recorder warning tone (1400 Hz, 0.5 s, every 15 s) to the line for the whole call.
* `notice+beep`: both; the tone starts when the notice has played.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from linerec.codec import RATE


class ConsentMode(Enum):
    ONE_PARTY = "one-party"
    NOTICE = "notice"
    BEEP = "beep"
    NOTICE_BEEP = "notice+beep"

    @property
    def plays_notice(self) -> bool:
        return self in (ConsentMode.NOTICE, ConsentMode.NOTICE_BEEP)

    @property
    def beeps(self) -> bool:
        return self in (ConsentMode.BEEP, ConsentMode.NOTICE_BEEP)


@dataclass(frozen=True, slots=True, kw_only=True)
class BeepSchedule:
    """Where the warning tone sounds, in samples from the moment beeping starts."""

    rate: int = RATE
    interval: float = 15.0
    length: float = 0.5

    def mask(self, start: int, count: int) -> tuple[int, int] | None:
        """The part [a, b) of samples [start, start+count) that is tone, if any.

        A 20 ms frame never holds two beeps (the interval is seconds), so one span suffices.
        """
        period = round(self.interval * self.rate)
        on = round(self.length * self.rate)
        phase = start % period
        if phase < on:
            return 0, min(on - phase, count)
        to_next = period - phase
        if to_next < count:
            return to_next, min(to_next + on, count)
        return None
