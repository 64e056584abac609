"""GPIO pins behind a factory, so the real board and the simulated line are interchangeable.

A `PinFactory` hands out pins and remembers who holds each one, so a pin configured twice is
refused with both holders named. An input pin reports edges with the timestamp the backend
saw them at (its own clock: the monotonic clock on a Pi, the sample clock on the simulated
line); turning edges into hook and ring events is `sense.py`'s job, not the pin's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from linerec.errors import PinInUse

EdgeCallback = Callable[[bool, float], None]
"""Called with (level, timestamp) on every edge; level True means the pin reads high."""


class InputPin(ABC):
    def __init__(self, number: int, name: str) -> None:
        self.number = number
        self.name = name

    @abstractmethod
    def read(self) -> bool:
        """The pin's level now (True = high)."""

    @abstractmethod
    def on_edge(self, callback: EdgeCallback | None) -> None:
        """Call `callback(level, timestamp)` on each edge; None stops the calls."""


class OutputPin(ABC):
    def __init__(self, number: int, name: str) -> None:
        self.number = number
        self.name = name

    @abstractmethod
    def write(self, level: bool) -> None:
        """Drive the pin high (True) or low."""


class PinFactory(ABC):
    """Creates pins and tracks which pin each part of the program holds."""

    def __init__(self) -> None:
        self._holders: dict[int, str] = {}

    def input(self, number: int, *, name: str, pull_up: bool = True) -> InputPin:
        self._claim(number, name)
        return self._make_input(number, name, pull_up)

    def output(self, number: int, *, name: str) -> OutputPin:
        self._claim(number, name)
        return self._make_output(number, name)

    def close(self) -> None:
        """Release every pin (outputs go low)."""
        self._holders.clear()

    def _claim(self, number: int, name: str) -> None:
        holder = self._holders.get(number)
        if holder is not None:
            raise PinInUse(f"GPIO{number} for {name} is already used by {holder}")
        self._holders[number] = name

    @abstractmethod
    def _make_input(self, number: int, name: str, pull_up: bool) -> InputPin: ...

    @abstractmethod
    def _make_output(self, number: int, name: str) -> OutputPin: ...
