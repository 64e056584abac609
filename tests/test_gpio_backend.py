"""The real GPIO backend, driven through a stand-in for the RPi.GPIO module.

RPi.GPIO only imports on a Pi. This stand-in behaves like the library at its API: pins must
be set up before use, BCM numbering, edge callbacks called from the library's thread with
the channel number. It lets the test drive edges as the board would.
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Callable, Iterator

import pytest

from linerec.errors import HardwareError, PinInUse


class FakeGPIO(types.ModuleType):
    BCM, IN, OUT, HIGH, LOW, BOTH, PUD_UP, PUD_DOWN = "BCM", "IN", "OUT", 1, 0, "BOTH", "UP", "DOWN"

    def __init__(self) -> None:
        super().__init__("RPi.GPIO")
        self.mode: str | None = None
        self.setups: dict[int, tuple[str, str | None]] = {}
        self.levels: dict[int, int] = {}
        self.callbacks: dict[int, Callable[[int], None]] = {}
        self.cleaned = False

    def setwarnings(self, flag: bool) -> None:
        pass

    def setmode(self, mode: str) -> None:
        self.mode = mode

    def setup(
        self, pin: int, direction: str, pull_up_down: str | None = None, initial: int | None = None
    ) -> None:
        assert self.mode == "BCM"
        self.setups[pin] = (direction, pull_up_down)
        self.levels[pin] = initial if initial is not None else (1 if pull_up_down == "UP" else 0)

    def input(self, pin: int) -> int:
        assert pin in self.setups
        return self.levels[pin]

    def output(self, pin: int, level: int) -> None:
        assert self.setups[pin][0] == "OUT"
        self.levels[pin] = level

    def add_event_detect(self, pin: int, edge: str, callback: Callable[[int], None]) -> None:
        assert edge == "BOTH"
        self.callbacks[pin] = callback

    def remove_event_detect(self, pin: int) -> None:
        del self.callbacks[pin]

    def cleanup(self) -> None:
        self.cleaned = True

    def drive(self, pin: int, level: int) -> None:
        """An edge on the board: the library calls back from its own thread."""
        self.levels[pin] = level
        thread = threading.Thread(target=self.callbacks[pin], args=(pin,))
        thread.start()
        thread.join()


@pytest.fixture
def fake_gpio(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGPIO]:
    gpio = FakeGPIO()
    package = types.ModuleType("RPi")
    package.GPIO = gpio  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "RPi", package)
    monkeypatch.setitem(sys.modules, "RPi.GPIO", gpio)
    yield gpio


def test_inputs_report_edges_with_level_and_time(fake_gpio: FakeGPIO) -> None:
    from linerec.hardware.gpio import RPiPinFactory

    factory = RPiPinFactory()
    hook = factory.input(17, name="line[0] hook sense")
    assert fake_gpio.setups[17] == ("IN", "UP")
    assert hook.read() is True  # pulled up: the opto is off, on hook
    edges: list[tuple[bool, float]] = []
    hook.on_edge(lambda level, t: edges.append((level, t)))
    fake_gpio.drive(17, 0)
    fake_gpio.drive(17, 1)
    assert [level for level, _ in edges] == [False, True]
    assert edges[0][1] <= edges[1][1]
    hook.on_edge(None)
    assert 17 not in fake_gpio.callbacks


def test_outputs_and_cleanup(fake_gpio: FakeGPIO) -> None:
    from linerec.hardware.gpio import RPiPinFactory

    factory = RPiPinFactory()
    led = factory.output(22, name="line[0] recording LED")
    assert fake_gpio.levels[22] == 0  # starts dark
    led.write(True)
    assert fake_gpio.levels[22] == 1
    with pytest.raises(
        PinInUse, match="GPIO22 for status LED is already used by line\\[0\\] recording LED"
    ):
        factory.output(22, name="status LED")
    factory.close()
    assert fake_gpio.cleaned


def test_without_the_library_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "RPi", None)  # import fails as it does off a Pi
    from linerec.hardware.gpio import RPiPinFactory

    with pytest.raises(
        HardwareError, match="pip install 'linerec\\[pi\\]'; on a Pi 5 install rpi-lgpio"
    ):
        RPiPinFactory()
