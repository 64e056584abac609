from linerec.call.consent import BeepSchedule, ConsentMode


def test_beep_schedule_every_fifteen_seconds() -> None:
    schedule = BeepSchedule()
    spans = {}
    for start in range(0, 8000 * 40, 160):
        span = schedule.mask(start, 160)
        if span:
            spans[start] = span
    onsets = sorted(
        start + a for start, (a, _) in spans.items() if start + a in (0, 120000, 240000)
    )
    assert onsets == [0, 120000, 240000]
    total = sum(b - a for a, b in spans.values())
    assert total == 3 * 4000  # three beeps of 0.5 s in 40 s


def test_beep_starting_inside_a_frame() -> None:
    schedule = BeepSchedule(interval=1.0, length=0.5)
    # The frame 7900..8060 holds the end of the gap and the start of the next beep.
    assert schedule.mask(7900, 160) == (100, 160)
    assert schedule.mask(3950, 160) == (0, 50)
    assert schedule.mask(4000, 160) is None


def test_consent_mode_properties() -> None:
    assert [m.value for m in ConsentMode if m.plays_notice] == ["notice", "notice+beep"]
    assert [m.value for m in ConsentMode if m.beeps] == ["beep", "notice+beep"]
