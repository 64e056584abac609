"""The line-interface board (hw/spice) simulated with ngspice: ring detector, hook sense, audio.

Each test builds a small deck around one stage, runs `ngspice -b` and reads the `meas`
results (or `echo RESULT` lines) it prints. The Pi pin is modelled with the internal pull-up
the firmware enables (50 kohm to 3.3 V). Opto CTR: 0.5 (data-sheet minimum) where the opto
must turn on, 1.0 where it must stay off.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from linerec.config import parse_config

HW = Path(__file__).resolve().parent.parent / "hw"
SPICE = HW / "spice"
EXAMPLE_CONFIG = HW.parent / "firmware/linerec/data/linerec.example.toml"

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
    """Run one deck in batch mode; returns the measured values by name.

    `stage` names the netlist file(s) the deck includes: "audio", or "protect+audio".
    """
    deck = tmp_path / "deck.cir"
    includes = "".join(f".include {SPICE / (name + '.cir')}\n" for name in stage.split("+"))
    deck.write_text(
        f"* linerec {stage} test\n"
        f".include {SPICE / 'parts.lib'}\n"
        f"{includes}"
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
        "let iled = abs(v.x1.xu2.vsense#branch)\n"
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

# The stage's Pi-side inputs: 3.3 V supply, the TALK pin (3.3 V: U3 closed), and the ring
# detector's output (RING_SENSE: 3.3 V while not ringing, which keeps U4 closed).
AUDIO_PI = "VDD vdd 0 3.3\nVTALK talk 0 {talk}\nVRD rdcol 0 {rdcol}\nRIN sc 0 10k\n"
AUDIO_X = "X1 tip 0 vdd 0 sc spk talk rdcol AUDIO\n"
TALK_ON, TALK_OFF = 3.3, 0.0

# Receive: a 600 ohm far end driving a 600 ohm phone; the sound card input is 10 kohm, its
# output (SPK) an idle low-impedance source.
AUDIO_LINE = "VS src 0 DC 0 AC 1\nRS src tip 600\nRT tip 0 600\nVSPK spk 0 0\n" + AUDIO_X
AUDIO_GAIN_1KHZ_DB = -3.5  # line -> sound card input, documented in hw/README.md
TALK_GAIN_1KHZ_DB = -11.6  # sound card output -> line, TALK closed, documented in hw/README.md

# What the firmware and the board assume of the sound card: a full-scale sine on its output
# is 1.0 V rms (USB adapters of the CM108/CM119 class at full playback volume; hw/README.md
# says how to check it); dBm on a telephone line is re 0.775 V rms (1 mW in 600 ohm).
CARD_FULL_SCALE_VRMS = 1.0
DBM_REF_VRMS = 0.775
LINE_LIMIT_DBM = -9.0  # the loudest a signal sent into the network may be, averaged
NOTICE_RANGE_DBM = (-15.0, -9.0)


def audio_response(tmp_path: Path, *, rdcol: float = 3.3) -> dict[str, float]:
    control = (
        "ac dec 50 100 10k\n"
        "let g = db(v(sc) / v(tip))\n"
        "meas ac g1k FIND g AT=1000\n"
        "meas ac gmax MAX g FROM=300 TO=3400\n"
        "meas ac gmin MIN g FROM=300 TO=3400\n"
        # the tap across the line: how much quieter the call gets at the phone (0 dB = none)
        "let loss = db(v(tip) / (v(src) / 2))\n"
        "meas ac loss300 FIND loss AT=300\n"
        "meas ac loss1k FIND loss AT=1000\n"
    )
    body = AUDIO_LINE + AUDIO_PI.format(talk=TALK_OFF, rdcol=rdcol)
    return run_deck(tmp_path, "audio", body, control)


def test_audio_is_flat_300_to_3400_hz(tmp_path: Path) -> None:
    out = audio_response(tmp_path)
    high, low = out["gmax"] - out["g1k"], out["gmin"] - out["g1k"]
    assert high < 1.0, f"audio response {high:+.2f} dB re 1 kHz peak in 300-3400 Hz"
    assert low > -1.0, f"audio response {low:+.2f} dB re 1 kHz dip in 300-3400 Hz"


def test_audio_gain_at_1khz_is_as_documented(tmp_path: Path) -> None:
    gain = audio_response(tmp_path)["g1k"]
    assert abs(gain - AUDIO_GAIN_1KHZ_DB) < 0.3, f"line to sound card gain {gain:.2f} dB at 1 kHz"


def test_audio_tap_is_high_impedance_while_talk_is_open(tmp_path: Path) -> None:
    out = audio_response(tmp_path)
    for name in ("loss300", "loss1k"):
        assert out[name] > -0.5, f"the tap costs the call {out[name]:.2f} dB ({name})"


def test_audio_is_disconnected_while_the_ring_detector_sees_ringing(tmp_path: Path) -> None:
    out = audio_response(tmp_path, rdcol=0.3)  # RING_SENSE low
    assert out["g1k"] < -60, f"U4 open, yet the line still reaches the card at {out['g1k']:.0f} dB"


def test_audio_input_is_clamped(tmp_path: Path) -> None:
    """Whatever gets past U4 (the first cycles of ringing, a surge) is clamped at the card."""
    body = "VL tip 0 DC 0 SIN(0 {150 * sqrt(2)} 20)\nVSPK spk 0 0\n" + AUDIO_X
    body += AUDIO_PI.format(talk=TALK_OFF, rdcol=3.3)
    control = (
        "tran 0.1m 0.5\n"
        "meas tran vhi MAX v(sc) from=0.2 to=0.5\n"
        "meas tran vlo MIN v(sc) from=0.2 to=0.5\n"
    )
    out = run_deck(tmp_path, "audio", body, control)
    peak = max(out["vhi"], -out["vlo"])
    assert peak < 6.5, f"sound card input peak {peak:.2f} V with 150 V rms on the winding"


def talk_response(tmp_path: Path, talk: float) -> dict[str, float]:
    """Sound card output (1 V AC) to the line, loaded by the exchange and the phone (300 ohm)."""
    body = "RLINE tip 0 300\nVSPK spk 0 DC 0 AC 1\n" + AUDIO_X
    body += AUDIO_PI.format(talk=talk, rdcol=3.3)
    control = (
        "ac dec 50 100 10k\n"
        "let t = db(v(tip))\n"
        "meas ac t1k FIND t AT=1000\n"
        "meas ac t1400 FIND t AT=1400\n"
        "meas ac tmax MAX t FROM=300 TO=3400\n"
        "meas ac tmin MIN t FROM=300 TO=3400\n"
    )
    return run_deck(tmp_path, "audio", body, control)


def config_default(key: str) -> object:
    """A line setting's default, as the firmware's own config parser gives it."""
    config = parse_config({"line": [{"name": "line1"}]}, "defaults.toml")
    return getattr(config.lines[0], key)


def dbm(vrms: float) -> float:
    return 20 * math.log10(vrms / DBM_REF_VRMS)


def test_talk_gain_at_1khz_is_as_documented(tmp_path: Path) -> None:
    out = talk_response(tmp_path, TALK_ON)
    assert abs(out["t1k"] - TALK_GAIN_1KHZ_DB) < 0.3, f"sound card to line {out['t1k']:.2f} dB"
    assert out["tmax"] - out["tmin"] < 1.0, "talk path not flat within 1 dB over 300-3400 Hz"


def test_full_scale_from_the_sound_card_stays_under_the_line_limit(tmp_path: Path) -> None:
    out = talk_response(tmp_path, TALK_ON)
    loudest = dbm(CARD_FULL_SCALE_VRMS) + out["tmax"]
    assert loudest <= LINE_LIMIT_DBM + 0.5, (
        f"a full-scale sine reaches the line at {loudest:.1f} dBm"
    )


def test_the_beep_reaches_the_line_at_the_notice_level(tmp_path: Path) -> None:
    line = tomllib.loads(EXAMPLE_CONFIG.read_text())["line"][0]
    beep_dbfs = line["beep_level_dbfs"]
    assert beep_dbfs == config_default("beep_level_dbfs"), "the example must show the default"
    out = talk_response(tmp_path, TALK_ON)
    level = dbm(CARD_FULL_SCALE_VRMS * 10 ** (beep_dbfs / 20)) + out["t1400"]
    low, high = NOTICE_RANGE_DBM
    assert low <= level <= high, f"the {beep_dbfs} dBFS beep reaches the line at {level:.1f} dBm"


def test_idle_sound_card_output_does_not_reach_the_line(tmp_path: Path) -> None:
    out = talk_response(tmp_path, TALK_OFF)
    assert out["tmax"] < -80, (
        f"with TALK open the card still reaches the line ({out['tmax']:.0f} dB)"
    )


# --- the whole line side together ---------------------------------------------------------

# (top-level nodes lnt/lnr: "lt" is an operator in ngspice expressions)
BOARD = (
    "XP tip 0 lnt lnr PROTECT\n"
    "XR lnt lnr vdd 0 ring RINGDET ctr={ctr}\nRPUR vdd ring 50k\n"
    "XH lnt lnr vdd 0 hook HOOKSENSE ctr={ctr}\nRPUH vdd hook 50k\n"
    "XA lnt lnr vdd 0 sc spk 0 ring AUDIO\nRIN sc 0 10k\nVSPK spk 0 0\n"
    "VDD vdd 0 3.3\n"
)
BOARD_STAGES = "protect+ring_detector+hook_sense+audio"
R_LINE_SIDE_WATTS = 0.5  # R10/R11 rating (bom.csv)
PHOTOMOS_VOLTS = 60.0  # U3's output rating (AQY212EH)
U4_VOLTS = 400.0  # U4's output rating (AQY214EH)
RINGER_OHMS_20HZ = 6930  # a ringer equivalence number (REN) of 1, at 20 Hz
BOARD_REN = 0.5  # 0.39 measured, in hw/README.md: the ring detector's C1 draws most of it


def board_while_ringing(
    tmp_path: Path, vrms: float, hz: float, *, settle: float = 0.05
) -> dict[str, float]:
    """Ringing on 56 V DC from t = 0; measured after `settle` (U4 opens within 50 ms)."""
    body = f"VL tip 0 DC 0 SIN(56 {vrms * 2**0.5} {hz})\n" + BOARD.format(ctr=CTR_MIN)
    end = settle + 6 / hz
    control = (
        f"tran {0.01 / hz} {end}\n"
        f"meas tran ringmax MAX v(ring) from={settle} to={end}\n"
        f"meas tran hookmin MIN v(hook) from={settle} to={end}\n"
        "let isq = i(VL) * i(VL)\n"
        f"meas tran iline2 AVG isq from={settle} to={end}\n"
        "let ithy = abs(i(v.xp.xd1.va))\n"
        f"meas tran ispd MAX ithy from={settle} to={end}\n"
        # (a meas result replaces a vector of its name: the vectors get names of their own)
        "let pr10 = (v(xa.n1) - v(xa.n2)) ^ 2 / 100\n"
        f"meas tran p10 AVG pr10 from={settle} to={end}\n"
        f"meas tran p10first AVG pr10 from=1m to={settle}\n"
        "let vu3 = abs(v(xa.s2))\n"
        f"meas tran u3 MAX vu3 from=1m to={end}\n"
        "let vu4 = abs(v(lnt) - v(xa.c4a))\n"
        f"meas tran u4 MAX vu4 from=1m to={end}\n"
    )
    return run_deck(tmp_path, BOARD_STAGES, body, control)


def test_board_detects_ringing_and_the_surge_protector_stays_off(tmp_path: Path) -> None:
    out = board_while_ringing(tmp_path, 150, 20)
    assert out["ringmax"] < PI_VIL, f"ring_sense {out['ringmax']:.2f} V during ringing"
    assert out["hookmin"] > PI_VIH_SAFE, f"hook_sense dipped to {out['hookmin']:.2f} V"
    assert out["ispd"] < 10e-6, f"surge protector conducts {out['ispd'] * 1e6:.1f} uA"


@pytest.mark.parametrize("hz", [15.3, 68.0])
def test_board_detects_40vrms_ringing_with_every_stage_attached(tmp_path: Path, hz: float) -> None:
    out = board_while_ringing(tmp_path, 40, hz, settle=0.5)  # R18 and U4 load RING_SENSE too
    assert out["ringmax"] < PI_VIL, f"ring_sense {out['ringmax']:.2f} V during 40 V rms ringing"
    assert out["p10"] < 1e-3, f"U4 did not open: R10 dissipates {out['p10']:.4f} W"


@pytest.mark.parametrize("hz", [15.3, 20.0, 25.0, 50.0, 68.0])
def test_board_audio_stage_survives_150vrms_ringing(tmp_path: Path, hz: float) -> None:
    """U4 opens on ringing, so C4's resonance with T1 (~92 Hz) never takes the line's power."""
    out = board_while_ringing(tmp_path, 150, hz)
    assert out["p10"] < R_LINE_SIDE_WATTS / 10, f"R10 dissipates {out['p10']:.3f} W at {hz} Hz"
    assert out["p10first"] < R_LINE_SIDE_WATTS, f"R10 takes {out['p10first']:.2f} W at first"
    assert out["u3"] < PHOTOMOS_VOLTS / 2, f"U3 sees {out['u3']:.1f} V peak at {hz} Hz"
    assert out["u4"] < U4_VOLTS * 0.9, f"U4 sees {out['u4']:.0f} V peak at {hz} Hz"


def test_board_reconnects_the_audio_in_time_for_caller_id(tmp_path: Path) -> None:
    """Caller ID comes 0.5 s or more after a ring ends: U4 must have closed again by then."""
    body = (
        "VDC a 0 DC 56\n"  # 0.5 s of 90 V rms 20 Hz ringing, then a 1 kHz tone keeps going
        "BRING b a V = (time < 0.5 ? 1 : 0) * 127.3 * sin(2 * 3.14159265 * 20 * time)\n"
        "VTONE tip b SIN(0 0.1 1000)\n"
    ) + BOARD.format(ctr=CTR_MIN)
    control = (
        "tran 20u 0.9\n"
        "let ledu4 = i(v.xa.xu4.vsense)\n"
        "meas tran closed WHEN ledu4=1m RISE=LAST\n"
        "meas tran scpp PP v(sc) from=0.8 to=0.9\n"
    )
    out = run_deck(tmp_path, BOARD_STAGES, body, control)
    assert out["closed"] - 0.5 < 0.3, f"U4 closed {out['closed'] - 0.5:.2f} s after the ring"
    expected_pp = 2 * 0.1 * 10 ** (AUDIO_GAIN_1KHZ_DB / 20)
    assert out["scpp"] > 0.8 * expected_pp, f"{out['scpp']:.3f} V p-p at the card after the ring"


def test_board_ringing_load_is_as_documented(tmp_path: Path) -> None:
    """The board's load on the line's ringing, as ringer equivalents (lines allow about 5)."""
    out = board_while_ringing(tmp_path, 90, 20)
    irms = math.sqrt(out["iline2"])
    ren = RINGER_OHMS_20HZ / (90 / irms)
    assert ren <= BOARD_REN, (
        f"the board draws {irms * 1e3:.1f} mA rms of 90 V rms ringing (REN {ren:.2f})"
    )


def test_board_on_hook_current_at_56v(tmp_path: Path) -> None:
    body = "VL tip 0 DC 56\n" + BOARD.format(ctr=CTR_MIN)
    control = "op\nlet iline = abs(i(VL))\necho iline = $&iline\necho hook = $&v(hook)\n"
    out = run_deck(tmp_path, "protect+ring_detector+hook_sense+audio", body, control)
    assert out["iline"] < 1e-3, f"on-hook line current {out['iline'] * 1e3:.2f} mA at 56 V"
    assert out["hook"] > PI_VIH_SAFE
