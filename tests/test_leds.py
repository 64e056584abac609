from linerec.hardware.leds import Led, Show
from linerec.hardware.pins import OutputPin


class RecordingPin(OutputPin):
    def __init__(self) -> None:
        super().__init__(22, "test LED")
        self.writes: list[bool] = []

    def write(self, level: bool) -> None:
        self.writes.append(level)


def test_patterns_are_distinct() -> None:
    # Enum members with equal values become aliases that iteration skips: compare by name.
    assert len(Show.__members__) == len(list(Show))


def test_recording_is_solid_and_notice_blinks_at_2_hz() -> None:
    assert all(Show.RECORDING.value.lit_at(t / 10) for t in range(100))
    notice = [Show.NOTICE.value.lit_at(t * 0.125) for t in range(8)]
    assert notice == [True, True, False, False, True, True, False, False]


def test_fault_codes_blink_their_number() -> None:
    pattern = Show.FAULT_STORE.value
    period = sum(seconds for _, seconds in pattern.steps)
    samples = [pattern.lit_at(t * 0.05) for t in range(round(period / 0.05))]
    rising = sum(1 for a, b in zip([False, *samples], samples, strict=False) if b and not a)
    assert rising == 3


def test_led_writes_only_on_change() -> None:
    pin = RecordingPin()
    led = Led(pin)
    led.set(Show.RECORDING, 0.0)
    for t in range(50):
        led.update(t * 0.02)
    led.set(Show.OFF, 1.0)
    assert pin.writes == [True, False]
