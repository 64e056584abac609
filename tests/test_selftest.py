"""`linerec selftest` on simulated boxes: the real ALSA library, simulated pins and line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from linerec.config import Config, load_config
from linerec.daemon.backends import open_sim_backend
from linerec.daemon.selftest import Check, selftest
from linerec.errors import HardwareError
from linerec.hardware.backend import Backend
from linerec.sim.backend import SimBackend
from linerec.sim.callfile import load_call_file

LINEREC = [sys.executable, "-m", "linerec.cli"]
SIM_BOX = '[hardware]\nbackend = "sim"\n[store]\ndir = "ring"\n[[line]]\n'


def run_selftest(
    config: Config, backend: Backend, *, loopback: bool
) -> tuple[dict[str, Check], list[str]]:
    said: list[str] = []
    try:
        checks = selftest(config, backend, loopback=loopback, say=said.append, wait=lambda s: None)
    finally:
        backend.close()
    return {c.name: c for c in checks}, said


def test_a_well_wired_box_passes_every_check(tmp_path: Path) -> None:
    (tmp_path / "box.toml").write_text(SIM_BOX)
    result = subprocess.run(
        [*LINEREC, "selftest", "--config", "box.toml", "--loopback", "--led-seconds", "0"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "LED test: the recording LED of line1 (GPIO 22) should be lit now" in lines
    assert "ok    line1 hook sense: GPIO 17: on hook, line voltage present" in lines
    assert "ok    line1 loopback: 1000 Hz played at -12 dBFS, heard at -18.0 dBFS" in lines
    assert lines[-1] == "5 of 5 checks passed"


def test_a_dead_line_and_a_muted_input_are_named_in_plain_words(tmp_path: Path) -> None:
    (tmp_path / "dead.toml").write_text(
        "[[call]]\n[[call.step]]\noff_hook = true\n[[call.step]]\nwait = 3\n"
    )  # no line voltage reads as off hook; digital zero is what a muted capture gives
    (tmp_path / "box.toml").write_text(SIM_BOX)
    config = load_config(tmp_path / "box.toml")
    config, backend = open_sim_backend(
        config, load_call_file(tmp_path / "dead.toml"), speed=0, workdir=tmp_path / "sim"
    )
    checks, _ = run_selftest(config, backend, loopback=False)
    assert not checks["line1 hook sense"].ok
    assert "no line voltage reaches the board" in checks["line1 hook sense"].detail
    assert checks["line1 ring sense"].ok
    assert not checks["line1 audio input"].ok
    assert "digital silence" in checks["line1 audio input"].detail
    assert "line1 loopback" not in checks


def idle_box_without_loop(tmp_path: Path, line_keys: str = "") -> tuple[Config, SimBackend]:
    """A quiet line, and nothing played reaches the input: the output is not tied back."""
    (tmp_path / "idle.toml").write_text("[[call]]\n[[call.step]]\nwait = 3\nnoise_dbfs = -60\n")
    (tmp_path / "box.toml").write_text(SIM_BOX + line_keys)
    config, backend = open_sim_backend(
        load_config(tmp_path / "box.toml"),
        load_call_file(tmp_path / "idle.toml"),
        speed=0,
        workdir=tmp_path / "sim",
        echo=False,
    )
    assert isinstance(backend, SimBackend)
    return config, backend


def test_an_open_loopback_fails_and_each_led_is_lit_then_put_out(tmp_path: Path) -> None:
    config, backend = idle_box_without_loop(tmp_path)
    checks, said = run_selftest(config, backend, loopback=True)
    assert checks["line1 audio input"].ok, checks["line1 audio input"].detail
    assert not checks["line1 loopback"].ok
    assert "not heard back" in checks["line1 loopback"].detail
    assert said == [
        "LED test: the status LED (GPIO 5) should be lit now",
        "LED test: the recording LED of line1 (GPIO 22) should be lit now",
    ]
    for number in (5, 22):
        assert [level for _, level in backend.pins.outputs[number].history] == [True, False]
    # the board's own loop (output -> U3 -> transformer winding -> input) was tried: the talk
    # switch closed for the loopback tone and opened again
    talk = config.lines[0].pins.talk
    assert talk == 6
    assert [level for _, level in backend.pins.outputs[talk].history] == [True, False]


def test_a_usb_telephone_interface_has_no_sense_wires_to_check(tmp_path: Path) -> None:
    config, backend = idle_box_without_loop(tmp_path, 'hook_source = "audio"\n')
    checks, _ = run_selftest(config, backend, loopback=True)
    assert checks["line1 hook sense"].ok
    assert "not wired" in checks["line1 hook sense"].detail
    assert "line1 ring sense" not in checks
    # no board, so the loopback hint is about a cable, not the board's talk switch
    assert "tied to its input" in checks["line1 loopback"].detail


def test_a_busy_sound_card_stops_the_test_before_it_touches_a_pin(tmp_path: Path) -> None:
    config, backend = idle_box_without_loop(tmp_path)

    def busy(settings: object) -> None:
        raise HardwareError("line[0].capture_device 'hw:1': cannot open: Device or resource busy")

    backend.open_capture = busy  # type: ignore[method-assign,assignment]
    checks, said = run_selftest(config, backend, loopback=True)
    assert checks["line1 audio input"].detail.endswith("systemctl stop linerec")
    assert not checks["GPIO"].ok
    assert backend.pins.inputs == {} and backend.pins.outputs == {}  # the recorder's pins
    assert said == []
