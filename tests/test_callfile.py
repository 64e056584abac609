"""Scripted call files: bad ones get an error naming the file and the step."""

from pathlib import Path

import pytest

from linerec.resources import data_path
from linerec.sim.callfile import CallFileError, load_call_file
from linerec.sim.line import render_line


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "call.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "name", ["inbound", "outbound", "hangup-during-notice", "beep", "two-lines"]
)
def test_shipped_examples_load_and_render(name: str) -> None:
    calls = load_call_file(data_path(f"calls/{name}.toml"))
    for line in {call.line for call in calls}:
        rendered = render_line([c for c in calls if c.line == line])
        assert rendered.end > 4
        assert any(edge.signal == "hook" for edge in rendered.edges)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[[call]]\n[[call.step]]\nring = 2\nwait = 1\n",
            r"call\[0\]\.step\[0\]: needs exactly one action .* \(found ring, wait\)",
        ),
        (
            "[[call]]\n[[call.step]]\nring = 2\n[[call.step]]\njump = true\n",
            r"call\[0\]\.step\[1\]: needs exactly one action .*\(found none\)",
        ),
        (
            '[[call]]\n[[call.step]]\ndtmf = "12x4"\n',
            r"call\[0\]\.step\[0\]\.dtmf: character 2 'x' is not a DTMF digit",
        ),
        (
            "[[call]]\n[[call.step]]\nring = 2\nvolume = 3\n",
            r"call\[0\]\.step\[0\]\.volume: is not an option of 'ring' \(options: cadence\)",
        ),
        (
            "[[call]]\n[[call.step]]\noff_hook = 1\n",
            r"call\[0\]\.step\[0\]\.off_hook: has the wrong type \(got 1\)",
        ),
        (
            "[[call]]\n[[call.step]]\noff_hook = false\n",
            r"call\[0\]\.step\[0\]\.off_hook: must be true",
        ),
        ("[[call]]\n[[call.step]]\ntone = 440\n", r"call\[0\]\.step\[0\]: 'tone' needs seconds"),
        (
            '[[call]]\n[[call.step]]\nring = 1\ncadence = "fr"\n',
            r"call\[0\]\.step\[0\]\.cadence: must be one of us, uk",
        ),
        ('[[call]]\nline = "line1"\n', r"call\[0\]: needs at least one \[\[call.step\]\]"),
        ('title = "x"\n', r"title: unknown key"),
        (
            "[[call]]\n[[call.step]]\nat = -1\nwait = 1\n",
            r"call\[0\]\.step\[0\]\.at: must be seconds >= 0",
        ),
        ("[[call]\n", r"not valid TOML"),
        (
            '[[call]]\n[[call.step]]\ncallerid = "555x"\n',
            r"call\[0\]\.step\[0\]\.callerid: must be digits \(got '555x'\)",
        ),
        (
            '[[call]]\n[[call.step]]\ncallerid = "5"\nformat = "fax"\n',
            r"call\[0\]\.step\[0\]\.format: must be one of mdmf, sdmf, dtmf",
        ),
        ('[[call]]\n[[call.step]]\ncallerid = ""\n', r"needs a number, or absent"),
    ],
)
def test_malformed_call_files(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CallFileError, match=message) as caught:
        load_call_file(path)
    assert str(caught.value).startswith(str(path))


def test_step_scheduled_before_the_previous_one_ended(tmp_path: Path) -> None:
    path = write(
        tmp_path, "[[call]]\n[[call.step]]\nwait = 5\n[[call.step]]\nat = 2\noff_hook = true\n"
    )
    with pytest.raises(
        CallFileError,
        match=r"call\[0\]\.step\[1\]\.at: 2 s is before the end of the previous step \(5.000 s\)",
    ):
        render_line(load_call_file(path))


def test_missing_speech_file_names_the_step(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[[call]]\n[[call.step]]\noff_hook = true\n[[call.step]]\nsay = "hello.wav"\n'
    )
    with pytest.raises(CallFileError, match=r"call\[0\]\.step\[1\]\.say: .*hello.wav: cannot read"):
        render_line(load_call_file(path))


def test_ring_cadence_and_pulses(tmp_path: Path) -> None:
    path = write(tmp_path, "[[call]]\n[[call.step]]\nring = 2\n[[call.step]]\noff_hook = true\n")
    rendered = render_line(load_call_file(path))
    ring_on = [e.t for e in rendered.edges if e.signal == "ring" and e.active]
    assert len(ring_on) == 80  # 2 bursts of 2 s at 20 Hz
    assert ring_on[40] == pytest.approx(6.0)  # 2 s on, 4 s off
    hook = [e for e in rendered.edges if e.signal == "hook"]
    assert [(e.t, e.active) for e in hook] == [(8.0, True)]
