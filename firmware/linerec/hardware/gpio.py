"""The real GPIO backend, through the RPi.GPIO API.

RPi.GPIO (Pi 3/4/Zero 2) and its drop-in `rpi-lgpio` (Pi 5) only import on a Pi, so the import
happens when a factory is made, and a failure is an error that says what to install: an
appliance that silently fell back to another backend would record nothing.
"""

from __future__ import annotations

import threading
import time
from types import ModuleType
from typing import Any

from linerec.errors import HardwareError
from linerec.hardware.pins import EdgeCallback, InputPin, OutputPin, PinFactory


def _import_gpio() -> ModuleType:
    try:
        import RPi.GPIO as gpio
    except (ImportError, RuntimeError) as exc:
        raise HardwareError(
            "[hardware] backend = 'gpio' needs RPi.GPIO (pip install 'linerec[pi]'; "
            f"on a Pi 5 install rpi-lgpio) and a Raspberry Pi: {exc}"
        ) from exc
    return gpio  # type: ignore[no-any-return]


class RPiInputPin(InputPin):
    def __init__(self, gpio: Any, number: int, name: str, pull_up: bool) -> None:
        super().__init__(number, name)
        self._gpio = gpio
        self._callback: EdgeCallback | None = None
        self._lock = threading.Lock()
        pull = gpio.PUD_UP if pull_up else gpio.PUD_DOWN
        gpio.setup(number, gpio.IN, pull_up_down=pull)

    def read(self) -> bool:
        return bool(self._gpio.input(self.number))

    def on_edge(self, callback: EdgeCallback | None) -> None:
        with self._lock:
            if self._callback is not None:
                self._gpio.remove_event_detect(self.number)
            self._callback = callback
            if callback is not None:
                # No bouncetime: debouncing is ours (sense.py), with the timestamps we keep.
                self._gpio.add_event_detect(self.number, self._gpio.BOTH, callback=self._fire)

    def _fire(self, channel: int) -> None:
        stamp = time.monotonic()
        callback = self._callback
        if callback is not None:
            callback(self.read(), stamp)


class RPiOutputPin(OutputPin):
    def __init__(self, gpio: Any, number: int, name: str) -> None:
        super().__init__(number, name)
        self._gpio = gpio
        gpio.setup(number, gpio.OUT, initial=gpio.LOW)

    def write(self, level: bool) -> None:
        self._gpio.output(self.number, self._gpio.HIGH if level else self._gpio.LOW)


class RPiPinFactory(PinFactory):
    def __init__(self) -> None:
        super().__init__()
        self._gpio = _import_gpio()
        self._gpio.setwarnings(False)
        self._gpio.setmode(self._gpio.BCM)

    def _make_input(self, number: int, name: str, pull_up: bool) -> InputPin:
        return RPiInputPin(self._gpio, number, name, pull_up)

    def _make_output(self, number: int, name: str) -> OutputPin:
        return RPiOutputPin(self._gpio, number, name)

    def close(self) -> None:
        super().close()
        self._gpio.cleanup()
