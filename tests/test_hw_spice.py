"""The line-interface board (hw/spice) simulated with ngspice: ring detector, hook sense, audio.

Each test builds a small deck around one stage, runs `ngspice -b` and reads the `meas`
results (or `echo RESULT` lines) it prints. The Pi pin is modelled with the internal pull-up
the firmware enables (50 kohm to 3.3 V). Opto CTR: 0.5 (data-sheet minimum) where the opto
must turn on, 1.0 where it must stay off.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

HW = Path(__file__).resolve().parent.parent / "hw"
SPICE = HW / "spice"

PI_VIL = 0.8  # Pi GPIO input: at most this reads low
PI_VIH_SAFE = 2.5  # comfortably above the Pi's 2.0 V high threshold
CTR_MIN = 0.5
CTR_MAX = 1.0

_LINE0 = tomllib.loads((HW / "pinmap.toml").read_text())["line"][0]
HOOK_ACTIVE_LOW: bool = _LINE0["hook_active_low"]
RING_ACTIVE_LOW: bool = _LINE0["ring_active_low"]

PI_PIN = "VDD vdd 0 3.3\nRPU vdd out 50k\n"
_MEAS = re.compile(r"^(\w+)\s+=\s+([-+0-9.eE]+)", re.MULTILINE)


def _ngspice() -> str:
    path = shutil.which("ngspice")
    if path is None:
        pytest.fail("ngspice is not installed (apt-get install ngspice; .ci/setup installs it)")
    return path


def run_deck(tmp_path: Path, stage: str, body: str, control: str) -> dict[str, float]:
    """Run one deck in batch mode; returns the measured values by name."""
    deck = tmp_path / "deck.cir"
    deck.write_text(
        f"* linerec {stage} test\n"
        f".include {SPICE / 'parts.lib'}\n"
        f".include {SPICE / (stage + '.cir')}\n"
        f"{body}\n.control\n{control}\nquit 0\n.endc\n.end\n"
    )
    done = subprocess.run(
        [_ngspice(), "-b", str(deck)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    if done.returncode != 0 or re.search(r"error|failed", output, re.IGNORECASE):
        pytest.fail(f"ngspice failed on the {stage} deck:\n{output}")
    return {name: float(value) for name, value in _MEAS.findall(done.stdout)}


# --- ring detector ---------------------------------------------------------------------


def ring_output(
    tmp_path: Path, vrms: float, hz: float, *, dc: float = 48.0, ctr: float = CTR_MIN
) -> dict[str, float]:
    """One second of ringing (vrms at hz on top of dc); the last half second measured."""
    body = (
        PI_PIN + f"VL tip 0 DC 0 SIN({dc} {vrms * 2**0.5} {hz})\n"
        f"X1 tip 0 vdd 0 out RINGDET ctr={ctr}\n"
    )
    control = (
        "tran 0.1m 1\n"
        "let low = v(out) lt 0.8\n"
        "meas tran vmax MAX v(out) from=0.5 to=1\n"
        "meas tran vmin MIN v(out) from=0.5 to=1\n"
        "meas tran lowfrac AVG low from=0.5 to=1\n"
        "meas tran ipeak MAX i(VL) from=0.5 to=1\n"
        "meas tran itrough MIN i(VL) from=0.5 to=1\n"
    )
    return run_deck(tmp_path, "ring_detector", body, control)


def assert_ringing_detected(out: dict[str, float], what: str) -> None:
    assert RING_ACTIVE_LOW, "the ring detector drives its pin low while ringing"
    assert out["lowfrac"] > 0.99, (
        f"ring_sense below {PI_VIL} V for only {out['lowfrac']:.1%} of {what}"
    )
    assert out["vmax"] < PI_VIL, (
        f"ring_sense peak {out['vmax']:.2f} V during {what} is not a logic low"
    )


def test_ring_40vrms_20hz_on_48v_is_detected(tmp_path: Path) -> None:
    assert_ringing_detected(ring_output(tmp_path, 40, 20), "40 V rms 20 Hz ringing")


def test_ring_90vrms_20hz_is_detected(tmp_path: Path) -> None:
    assert_ringing_detected(ring_output(tmp_path, 90, 20), "90 V rms 20 Hz ringing")


def test_ring_75vrms_25hz_is_detected(tmp_path: Path) -> None:
    assert_ringing_detected(ring_output(tmp_path, 75, 25), "75 V rms 25 Hz ringing")


@pytest.mark.parametrize("hz", [15.3, 68.0])
def test_ring_40vrms_at_the_frequency_limits_is_detected(tmp_path: Path, hz: float) -> None:
    assert_ringing_detected(ring_output(tmp_path, 40, hz), f"40 V rms {hz} Hz ringing")


def test_ring_56v_dc_alone_is_not_detected(tmp_path: Path) -> None:
    out = ring_output(tmp_path, 0, 20, dc=56, ctr=CTR_MAX)
    assert out["vmin"] > PI_VIH_SAFE, f"ring_sense fell to {out['vmin']:.2f} V on 56 V DC alone"


def test_ring_below_threshold_is_not_detected(tmp_path: Path) -> None:
    out = ring_output(tmp_path, 12, 20, ctr=CTR_MAX)
    assert out["vmin"] > PI_VIH_SAFE, f"ring_sense fell to {out['vmin']:.2f} V on 12 V rms"


def test_ring_detector_line_current_at_150vrms_68hz(tmp_path: Path) -> None:
    out = ring_output(tmp_path, 150, 68, ctr=CTR_MAX)
    peak = max(out["ipeak"], -out["itrough"])
    assert peak < 12e-3, f"ring detector peak line current {peak * 1e3:.1f} mA at 150 V rms 68 Hz"


# --- hook sense ------------------------------------------------------------------------


def hook_output(tmp_path: Path, volts: float, ctr: float) -> dict[str, float]:
    body = PI_PIN + f"VL tip 0 DC {volts}\nX1 tip 0 vdd 0 out HOOKSENSE ctr={ctr}\n"
    control = (
        "op\n"
        "let iline = abs(i(VL))\n"
        "let iled = abs(v.x1.xu1.vsense#branch)\n"
        "echo vout = $&v(out)\necho iline = $&iline\necho iled = $&iled\n"
    )
    return run_deck(tmp_path, "hook_sense", body, control)


ON_HOOK_LEVEL_HIGH = HOOK_ACTIVE_LOW  # active low: off hook reads LOW, so on hook is HIGH


@pytest.mark.parametrize("volts", [42, 48, 56, -42, -48, -56])
def test_hook_on_hook_voltage_lights_the_opto(tmp_path: Path, volts: float) -> None:
    out = hook_output(tmp_path, volts, CTR_MIN)
    assert out["iled"] > 0.2e-3, f"hook opto LED current {out['iled'] * 1e6:.0f} uA at {volts} V"
    assert ON_HOOK_LEVEL_HIGH, "pinmap hook_active_low changed: the hook stage must follow"
    assert out["vout"] > PI_VIH_SAFE, f"hook_sense {out['vout']:.2f} V at {volts} V (on hook)"


@pytest.mark.parametrize("volts", [12, 8, 5, 0, -5, -8, -12])
def test_hook_off_hook_or_dead_line_leaves_the_opto_dark(tmp_path: Path, volts: float) -> None:
    out = hook_output(tmp_path, volts, CTR_MAX)
    assert out["iled"] < 1e-6, f"hook opto LED current {out['iled'] * 1e6:.2f} uA at {volts} V"
    assert out["vout"] < PI_VIL, f"hook_sense {out['vout']:.2f} V at {volts} V (off hook)"


def test_hook_sense_draws_under_1ma_at_56v(tmp_path: Path) -> None:
    out = hook_output(tmp_path, 56, CTR_MIN)
    assert out["iline"] < 1e-3, f"hook sense line current {out['iline'] * 1e3:.2f} mA at 56 V"


def test_hook_stays_on_hook_while_ringing(tmp_path: Path) -> None:
    body = PI_PIN + "VL tip 0 DC 0 SIN(48 {90 * sqrt(2)} 20)\nX1 tip 0 vdd 0 out HOOKSENSE\n"
    control = "tran 0.1m 1\nmeas tran vmin MIN v(out) from=0.2 to=1\n"
    out = run_deck(tmp_path, "hook_sense", body, control)
    assert out["vmin"] > PI_VIH_SAFE, f"hook_sense dipped to {out['vmin']:.2f} V during ringing"


# --- audio -----------------------------------------------------------------------------

# Line: 600 ohm far end driving a 600 ohm phone; the sound card input is 10 kohm.
AUDIO_LINE = "VS src 0 DC 0 AC 1\nRS src tip 600\nRT tip 0 600\nX1 tip 0 sc 0 AUDIO\nRIN sc 0 10k\n"
AUDIO_GAIN_1KHZ_DB = -1.6  # documented in hw/README.md


def audio_response(tmp_path: Path) -> dict[str, float]:
    control = (
        "ac dec 50 100 10k\n"
        "let g = db(v(sc) / v(tip))\n"
        "meas ac g1k FIND g AT=1000\n"
        "meas ac gmax MAX g FROM=300 TO=3400\n"
        "meas ac gmin MIN g FROM=300 TO=3400\n"
    )
    return run_deck(tmp_path, "audio", AUDIO_LINE, control)


def test_audio_is_flat_300_to_3400_hz(tmp_path: Path) -> None:
    out = audio_response(tmp_path)
    high, low = out["gmax"] - out["g1k"], out["gmin"] - out["g1k"]
    assert high < 1.0, f"audio response {high:+.2f} dB re 1 kHz peak in 300-3400 Hz"
    assert low > -1.0, f"audio response {low:+.2f} dB re 1 kHz dip in 300-3400 Hz"


def test_audio_gain_at_1khz_is_as_documented(tmp_path: Path) -> None:
    gain = audio_response(tmp_path)["g1k"]
    assert abs(gain - AUDIO_GAIN_1KHZ_DB) < 0.3, f"line to sound card gain {gain:.2f} dB at 1 kHz"


def test_audio_ringing_is_clamped_at_the_sound_card(tmp_path: Path) -> None:
    body = "VL tip 0 DC 0 SIN(48 {150 * sqrt(2)} 20)\nX1 tip 0 sc 0 AUDIO\nRIN sc 0 10k\n"
    control = (
        "tran 0.1m 0.5\n"
        "meas tran vhi MAX v(sc) from=0.2 to=0.5\n"
        "meas tran vlo MIN v(sc) from=0.2 to=0.5\n"
    )
    out = run_deck(tmp_path, "audio", body, control)
    peak = max(out["vhi"], -out["vlo"])
    assert peak < 6.5, f"sound card input peak {peak:.2f} V during 150 V rms ringing"
