"""What the rest of the program asks of a sound device and gets from it: settings, frames.

Apart from `audio.py` (the ALSA implementation) so that reading a configuration file, or the
collector, never loads the ALSA library.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from linerec.codec import RATE, Samples

FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000
DEVICE_RATES = (8000, 16000, 44100, 48000)
PERIODS_MS = (10, 20, 40)


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """One period of line audio at 8 kHz."""

    samples: Samples
    t: float  # time of the first sample, on the backend's clock
    lost: int = 0  # samples lost to an overrun just before this frame


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioSettings:
    """How to open one line's sound device; `where` names the config keys in errors."""

    capture_device: str
    playback_device: str
    rate: int = RATE
    channels: int = 1
    channel: int = 0
    period_ms: int = FRAME_MS  # the ALSA period; frames are 20 ms whatever it is
    where: str = "line"


class AudioCapture(ABC):
    overruns: int = 0
    # True where capturing a period waits for the line output of the one before (the
    # simulated line's echo): such a capture must hand over every period as it comes.
    waits_for_playback: bool = False

    @abstractmethod
    def read(self) -> Frame:
        """Block until the next frame is captured."""

    def read_frames(self, count: int) -> list[Frame]:
        """The next frames, oldest first: at least one, at most `count`. A device that can
        wait for several periods at once does (one wake-up instead of `count`); `wake` ends
        such a wait early with what has been captured by then."""
        return [self.read()]

    def wake(self) -> None:  # noqa: B027 - a device that never waits for several needs nothing
        """From another thread: end a wait in `read_frames` now (something became urgent)."""

    def interrupt(self) -> None:  # noqa: B027 - a real device needs nothing: reads return each period
        """Make a blocked `read` return soon, if the device can."""

    @abstractmethod
    def close(self) -> None: ...


class AudioPlayback(ABC):
    underruns: int = 0

    @abstractmethod
    def write(self, samples: Samples) -> None:
        """Queue one frame of 8 kHz audio for the line."""

    def restart(self) -> None:  # noqa: B027 - only a device with a real clock needs it
        """Drop what is queued (silence: the daemon asks only then) and start again one period
        ahead, so what is written next plays at once rather than behind a block of silence."""

    @abstractmethod
    def close(self) -> None: ...
