"""The talk switch: connects the sound card's output to the line only while something plays.

On the linerec board the output reaches the line through a photoMOS relay (U3, driven by the
line's `talk_pin`). Left closed, the sound card's idle output would load the line and quieten
every call; so it closes when the pipeline hands out a frame that sounds (notice, beep) and
opens once nothing has sounded for HOLD seconds, which covers the frames still queued in the
sound card's playback buffer. Without a talk pin (a USB telephone interface, or a board wired
with a fixed output) the class does nothing.
"""

from __future__ import annotations

from linerec.hardware.pins import OutputPin

HOLD = 0.25  # seconds: longer than the playback queue (a few 20 ms periods)


class TalkSwitch:
    def __init__(self, pin: OutputPin | None) -> None:
        self._pin = pin
        self._closed = False
        self._last_sound = float("-inf")

    @property
    def closed(self) -> bool:
        return self._closed

    def update(self, sounding: bool, now: float) -> None:
        """`sounding`: the frame handed out for `now` carries notice or beep audio."""
        if sounding:
            self._last_sound = now
        self._set(sounding or now - self._last_sound < HOLD)

    def open(self) -> None:
        self._set(False)

    def _set(self, closed: bool) -> None:
        if closed != self._closed and self._pin is not None:
            self._pin.write(closed)
        self._closed = closed
