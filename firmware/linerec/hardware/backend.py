"""A hardware backend: the pins, the sound devices and the clock they are stamped with.

The daemon picks one by name (`[hardware] backend`): `gpio` is the real board; `sim` is the
simulated line in `linerec.sim`, which produces the same edges and frames from a script.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod

from linerec.hardware.audio import AlsaCapture, AlsaPlayback
from linerec.hardware.pcm import AudioCapture, AudioPlayback, AudioSettings
from linerec.hardware.pins import PinFactory


class Backend(ABC):
    pins: PinFactory

    @abstractmethod
    def clock(self) -> float:
        """Now, on the clock that pin edges and frames are stamped with."""

    @abstractmethod
    def open_capture(self, settings: AudioSettings) -> AudioCapture: ...

    @abstractmethod
    def open_playback(self, settings: AudioSettings) -> AudioPlayback: ...

    def close(self) -> None:
        self.pins.close()


class GpioBackend(Backend):
    """The Raspberry Pi: RPi.GPIO pins, ALSA sound cards, the monotonic clock."""

    def __init__(self) -> None:
        from linerec.hardware.gpio import RPiPinFactory

        self.pins = RPiPinFactory()

    def clock(self) -> float:
        return time.monotonic()

    def open_capture(self, settings: AudioSettings) -> AudioCapture:
        return AlsaCapture(settings, clock=time.monotonic)

    def open_playback(self, settings: AudioSettings) -> AudioPlayback:
        return AlsaPlayback(settings)
