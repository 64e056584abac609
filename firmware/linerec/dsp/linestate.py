"""On hook or off hook, from the audio alone: for USB telephone interfaces with no hook sense.

The rule (`hook_source = "audio"` on a line):

* Off hook when the line comes alive: a dial tone (someone picked up to call out), or sound
  above -45 dBFS for most of half a second (the far end speaks: an inbound call answered on
  a phone beside the box). Caller ID and the alerting signal come on hook and do not count.
* On hook when the exchange says the call is over (busy, reorder or congestion tone after the
  call), when the line goes dead, or when it has been silent for `silence_ends_call` seconds
  (8 s by default).

Its limits, which is why a hook-sense wire is better:

* The start of an answered call is seen when the first sound comes, up to half a second late;
  such a line's delay line is 0.8 s, so nothing is lost, but `answered` is reported late.
* Two people silent together for longer than `silence_ends_call` end the recording; when they
  speak again a new one begins (with the notice, in `notice` mode).
* Ringing is not in the audio of most interfaces, so every call looks outbound unless the
  interface reports ringing some other way.
* A phone picked up and put down again without a sound is not seen at all.

Edges come out as (off_hook, t), to be debounced like the wire's.
"""

from __future__ import annotations

from linerec.dsp.callerid import CallerId, CallerIdError
from linerec.dsp.progress import Quiet, Tone

FRAME_SECONDS = 0.02
ACTIVE_DBFS = -45.0
ACTIVE_WINDOW = 25  # frames (half a second) ...
ACTIVE_FRAMES = 15  # ... of which this many above ACTIVE_DBFS start a call
_ENDING_TONES = ("busy", "reorder", "congestion")

Heard = object  # anything the analyzer reports


class AudioHookSense:
    def __init__(self, *, silence_ends_call: float = 8.0) -> None:
        self.silence_ends_call = silence_ends_call
        self.off_hook = False
        self._recent: list[bool] = []
        self._quiet_for = 0.0
        self._fsk_until = float("-inf")

    def feed(self, t: float, level_dbfs: float, heard: list[Heard]) -> list[tuple[bool, float]]:
        """One frame's level and what the analyzer heard in it; returns hook edges."""
        for event in heard:
            if isinstance(event, CallerId | CallerIdError) or (
                isinstance(event, Tone) and event.name == "alerting"
            ):
                self._fsk_until = t + 0.5  # caller ID signalling: the line is still on hook
        active = level_dbfs > ACTIVE_DBFS
        self._recent.append(active)
        del self._recent[:-ACTIVE_WINDOW]
        self._quiet_for = 0.0 if active else self._quiet_for + FRAME_SECONDS
        if not self.off_hook:
            dial = any(isinstance(e, Tone) and e.name == "dial" for e in heard)
            lively = sum(self._recent) >= ACTIVE_FRAMES and t > self._fsk_until
            if dial or lively:
                self.off_hook = True
                first = self._recent.index(True) if lively else len(self._recent) - 1
                start = t - (len(self._recent) - 1 - first) * FRAME_SECONDS
                return [(True, round(max(start, 0.0), 3))]
            return []
        for event in heard:  # the exchange ends it: the call was over when the tone began
            if (isinstance(event, Tone) and event.name in _ENDING_TONES) or (
                isinstance(event, Quiet) and event.name == "line_dead"
            ):
                return self._on_hook(event.t)
        if self._quiet_for >= self.silence_ends_call:
            return self._on_hook(t)
        return []

    def _on_hook(self, t: float) -> list[tuple[bool, float]]:
        self.off_hook = False
        self._recent.clear()
        return [(False, round(t, 3))]
