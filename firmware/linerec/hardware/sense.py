"""Hook and ring sense: raw pin edges in, line events out. Sans-IO, clock injected.

Rules, in one place:

* The first reading sets the state and fires nothing.
* A level counts only once it has held for the debounce time (hook: 30 ms by default); the
  event carries the time of the edge that started it, not the time it was confirmed.
* Going on hook during a call is first a `HookBreak`. It becomes a `HookFlash` if the line comes
  back off hook after `flash_min`..`flash_max` (100-1000 ms), an `OnHook` (a hang-up, stamped
  when the break began) once it has lasted `flash_max`, and a `HookGlitch` if it was shorter
  than `flash_min` (a pulse-dialled digit is such a break). The daemon holds back audio from
  the break on until it knows which, so a hang-up never leaves a second of dial tone recorded.
* Ringing: the ring detector's output pulses or stays active while ringing voltage is present.
  A burst begins at its first active edge once it has lasted `ring_min`, and ends when the
  input has been inactive for `ring_hold` (longer than the gap between pulses at 15 Hz).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class OffHook:
    t: float


@dataclass(frozen=True, slots=True, kw_only=True)
class HookBreak:
    t: float


@dataclass(frozen=True, slots=True, kw_only=True)
class HookFlash:
    t: float
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class HookGlitch:
    t: float
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OnHook:
    t: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RingStart:
    t: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RingStop:
    t: float


HookEvent = OffHook | HookBreak | HookFlash | HookGlitch | OnHook
RingEvent = RingStart | RingStop
LineEvent = HookEvent | RingEvent


class HookSense:
    """Debounces the hook-sense input and tells flashes from hang-ups."""

    def __init__(
        self,
        *,
        initial_off_hook: bool,
        debounce: float = 0.030,
        flash_min: float = 0.100,
        flash_max: float = 1.000,
    ) -> None:
        if not 0 <= debounce < flash_min < flash_max:
            raise ValueError(
                f"need 0 <= debounce < flash_min < flash_max "
                f"(got {debounce}, {flash_min}, {flash_max})"
            )
        self.debounce = debounce
        self.flash_min = flash_min
        self.flash_max = flash_max
        self.off_hook = initial_off_hook  # confirmed level (True during a break, too)
        self._raw = initial_off_hook
        self._raw_since = float("-inf")
        self._break_since: float | None = None

    @property
    def in_break(self) -> bool:
        return self._break_since is not None

    @property
    def settled(self) -> bool:
        """Nothing waits on time to be confirmed: no level within its debounce, no break."""
        return self._raw == self.off_hook and self._break_since is None

    def feed_edge(self, off_hook: bool, t: float) -> list[HookEvent]:
        """A raw edge at time t (off_hook True when the loop is closed)."""
        events = self.advance(t)
        if off_hook != self._raw:
            self._raw = off_hook
            self._raw_since = t
        return events

    def advance(self, now: float) -> list[HookEvent]:
        """Time has reached `now`: confirm what has held long enough."""
        events: list[HookEvent] = []
        settled = now - self._raw_since >= self.debounce
        if self._break_since is not None:
            if settled and self._raw:
                duration = self._raw_since - self._break_since
                kind = HookFlash if duration >= self.flash_min else HookGlitch
                events.append(kind(t=self._break_since, duration=duration))
                self._break_since = None
            elif not self._raw and now - self._break_since >= self.flash_max:
                events.append(OnHook(t=self._break_since))
                self._break_since = None
                self.off_hook = False
        elif settled and self._raw != self.off_hook:
            if self._raw:
                self.off_hook = True
                events.append(OffHook(t=self._raw_since))
            else:
                self._break_since = self._raw_since
                events.append(HookBreak(t=self._raw_since))
                # A break already older than flash_max when confirmed is a hang-up at once.
                events.extend(self.advance(now))
        return events


class RingSense:
    """Turns ring-detector pulses into ring bursts."""

    def __init__(self, *, ring_min: float = 0.100, ring_hold: float = 0.200) -> None:
        self.ring_min = ring_min
        self.ring_hold = ring_hold
        self.ringing = False
        self._active = False
        self._burst_start: float | None = None
        self._last_inactive = float("-inf")

    @property
    def settled(self) -> bool:
        """No burst is under way or waiting on time to begin or end."""
        return self._burst_start is None

    def feed_edge(self, active: bool, t: float) -> list[RingEvent]:
        events = self.advance(t)
        if active and not self._active and self._burst_start is None:
            self._burst_start = t
        if not active and self._active:
            self._last_inactive = t
        self._active = active
        events.extend(self.advance(t))
        return events

    def advance(self, now: float) -> list[RingEvent]:
        events: list[RingEvent] = []
        start = self._burst_start
        if start is None:
            return events
        if not self._active and now - self._last_inactive >= self.ring_hold:
            if self.ringing:
                events.append(RingStop(t=self._last_inactive))
            self.ringing = False
            self._burst_start = None
        elif (
            not self.ringing
            and now - start >= self.ring_min
            and (self._active or self._last_inactive - start >= self.ring_min)
        ):
            self.ringing = True
            events.append(RingStart(t=start))
        return events
