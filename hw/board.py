"""The linerec line-interface board (one analog line) as a SKiDL netlist, plus its BOM.

    .venv/bin/python hw/board.py [--out DIR]      (default DIR: hw/)

writes DIR/linerec-board.net (KiCad netlist, importable into Pcbnew) and DIR/bom.csv. Both are
committed; tests/test_hw_board.py regenerates them and fails if they drift, and checks the
netlist against the SPICE stage netlists in hw/spice/ and the GPIO map in hw/pinmap.toml.

Every part is defined here with SKiDL's own part format (tool=SKIDL, explicit pins), so no KiCad
symbol library is needed. Footprint names are KiCad library footprints; the ones starting with
"linerec:" have no stock KiCad footprint and must be drawn before layout.

Conventions, so the netlist can be compared with the SPICE stages mechanically:
- board refs are the SPICE element names (R5, D7, C4 ...); XU1/XU2 are U1/U2, XD1 is D1,
  RF1/RF2 are F1/F2, XU3/XU4 are U3/U4, XD16/XD17 are D16/D17, RP/LP/LS/RS/KT1 model T1;
- a node local to a stage subcircuit is the board net <stage prefix> + its name in capitals
  (RINGDET n1 -> RD_N1, HOOKSENSE a -> HS_A, AUDIO t1 -> AU_T1);
- two-terminal parts take the SPICE node order on pins 1, 2; diodes and LEDs are 1 = K, 2 = A
  (SPICE writes anode first); SOT-23 transistors are 1 = B, 2 = E, 3 = C; DIP-4 optocouplers
  are 1 = A, 2 = K, 3 = E, 4 = C; the photoMOS relay is 1 = A, 2 = K, 3/4 = output.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # for pi_header.py, also when imported from elsewhere
from pi_header import HEADER  # noqa: E402

NETLIST_NAME = "linerec-board.net"
BOM_NAME = "bom.csv"

# The KiCad 8 netlist format: read by Pcbnew 8 and later. (skidl's kicad9/10 writers add
# component classes, which older Pcbnew versions reject.)
NETLIST_TOOL = "kicad8"

# skidl's console messages that say nothing about this board; everything else is shown.
_EXPECTED_SKIDL_NOISE = re.compile(
    # At import: KiCad's symbol and footprint libraries are not installed. This script
    # defines its own parts, so it needs neither.
    r"SYMBOL_DIR environment variable is missing|fp-lib-table file was not found"
    # Every part is tagged with its ref; the one untagged object is the flat design's unnamed
    # top level (note the two spaces where a name would be).
    r"|Missing tag on  instantiated at "
    # skidl's own tally, which also counts the lines above.
    r"|(warnings|errors) found while|No errors or warnings found while"
)


@contextlib.contextmanager
def _skidl_console():
    """Collect skidl's console output while inside; then show what is not expected noise."""
    captured = io.StringIO()
    real_stderr = sys.stderr

    def console_handlers():
        # Look the loggers up without creating them: skidl must create them itself on import.
        loggers = logging.Logger.manager.loggerDict
        return [
            h
            for name in ("skidl", "ERC_Logger")
            if isinstance(loggers.get(name), logging.Logger)
            for h in loggers[name].handlers
            if type(h) is logging.StreamHandler  # not skidl's log-file handlers
        ]

    for handler in console_handlers():
        handler.setStream(captured)
    sys.stderr = captured  # skidl creates its handlers on import, bound to sys.stderr
    try:
        yield
    finally:
        sys.stderr = real_stderr
        for handler in console_handlers():
            handler.setStream(real_stderr)
        for line in captured.getvalue().splitlines():
            if line.strip() and not _EXPECTED_SKIDL_NOISE.search(line):
                print(line, file=real_stderr)


with _skidl_console():
    from skidl import SKIDL, TEMPLATE, Circuit, Net, Part, Pin
    from skidl.logger import stop_log_file_output

# skidl opens <script>.log and <script>.erc in the current directory on import; remove them.
stop_log_file_output()

PASSIVE = Pin.types.PASSIVE


# --------------------------------------------------------------------------------------------
# Part kinds: symbol pins only. Pin numbers are the footprint pad numbers.
# --------------------------------------------------------------------------------------------


def _kind(name: str, prefix: str, pins: list[tuple[str, str]]) -> Part:
    return Part(
        tool=SKIDL,
        name=name,
        ref_prefix=prefix,
        dest=TEMPLATE,
        pins=[Pin(num=num, name=pin_name, func=PASSIVE) for num, pin_name in pins],
    )


RES = _kind("R", "R", [("1", "~"), ("2", "~")])
CAP = _kind("C", "C", [("1", "~"), ("2", "~")])
CAP_POL = _kind("C_Polarized", "C", [("1", "+"), ("2", "-")])
DIODE = _kind("D", "D", [("1", "K"), ("2", "A")])
LED = _kind("LED", "D", [("1", "K"), ("2", "A")])
TSPD = _kind("TSPD_Bidirectional", "D", [("1", "A1"), ("2", "A2")])
TVS_BI = _kind("D_TVS_Bidirectional", "D", [("1", "A1"), ("2", "A2")])
PTC = _kind("Polyfuse", "F", [("1", "~"), ("2", "~")])
OPTO = _kind("Opto_NPN", "U", [("1", "A"), ("2", "K"), ("3", "E"), ("4", "C")])
PHOTOMOS = _kind("PhotoMOS_1FormA", "U", [("1", "A"), ("2", "K"), ("3", "D1"), ("4", "D2")])
NPN_SOT23 = _kind("Q_NPN_BEC", "Q", [("1", "B"), ("2", "E"), ("3", "C")])
# Pins are winding ends: 1/3 are the dotted (in-phase) ends.
XFMR = _kind("Transformer_1P_1S", "T", [("1", "PA"), ("2", "PB"), ("3", "SA"), ("4", "SB")])
RJ_6POS = _kind("RJ_6P", "J", [(str(n), str(n)) for n in range(1, 7)])
TRS_JACK = _kind("AudioJack3", "J", [("T", "T"), ("R", "R"), ("S", "S")])
BUTTON = _kind("SW_Push", "SW", [("1", "1"), ("2", "2")])

# Raspberry Pi 40-pin header, physical pin -> function (BCM GPIO numbers): pi_header.py.
PI_HEADER_PINS = HEADER
PI_HEADER = _kind("Pi_GPIO_2x20", "J", [(str(n), f) for n, f in PI_HEADER_PINS.items()])


# --------------------------------------------------------------------------------------------
# What to buy. One entry per BOM line; the value is given where the part is placed.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Buy:
    description: str
    rating: str
    manufacturer: str
    mpn: str
    alt_manufacturer: str
    alt_mpn: str
    footprint: str


FP_R_LINE = "Resistor_THT:R_Axial_DIN0309_L9.0mm_D3.2mm_P12.70mm_Horizontal"
FP_R = "Resistor_THT:R_Axial_DIN0207_L6.3mm_D2.5mm_P10.16mm_Horizontal"
FP_DO41 = "Diode_THT:D_DO-41_SOD81_P10.16mm_Horizontal"
FP_DO35 = "Diode_THT:D_DO-35_SOD27_P7.62mm_Horizontal"
FP_DIP4 = "Package_DIP:DIP-4_W7.62mm"
FP_FILM = "Capacitor_THT:C_Rect_L26.5mm_W8.5mm_P22.50mm_MKS4"
FP_ELYT = "Capacitor_THT:CP_Radial_D5.0mm_P2.00mm"
FP_LED = "LED_THT:LED_D3.0mm"


def _line_resistor(value: str, vishay: str, stackpole: str) -> Buy:
    # Line side: up to 268 V peak across the stage while ringing, and 0.3 W in R1/R2 at
    # 150 V rms (hw/README.md). Vishay SFR25H and Stackpole RNF12 are both 0.5 W, 350 V.
    return Buy(
        f"Resistor {value}, metal film, axial",
        "0.5 W, 350 V working, 1 %",
        "Vishay",
        vishay,
        "Stackpole",
        stackpole,
        FP_R_LINE,
    )


def _resistor(value: str, yageo: str, stackpole: str) -> Buy:
    # Pi side (3.3 V) and the sound card side: a quarter watt is plenty.
    return Buy(
        f"Resistor {value}, metal film, axial",
        "0.25 W, 1 %",
        "Yageo",
        yageo,
        "Stackpole",
        stackpole,
        FP_R,
    )


BUY = {
    # Protection
    "ptc": Buy(
        "Telecom PTC resettable fuse, radial",
        "250 V rms interrupt, 60 V DC operating, hold 120 mA, trip 240 mA",
        "Littelfuse",
        "TRF250-120",
        "Bourns",
        "MF-RX012/250",
        "linerec:PTC_Radial_L6.5mm_W4.6mm_P5.00mm",
    ),
    "tspd": Buy(
        "Thyristor surge protector, bidirectional, SMB",
        "VDRM 275 V, breakover 350 V; keep IH above the line's short-circuit current",
        "Littelfuse",
        "P3100SBLRP",
        "Bourns",
        "TISP4350H3BJR-S",
        "Diode_SMD:D_SMB",
    ),
    # Ring detector and hook sense
    "r_line_10k": _line_resistor("10k", "SFR25H0001002FR500", "RNF12FTD10K0"),
    "r_line_22k": _line_resistor("22k", "SFR25H0002202FR500", "RNF12FTD22K0"),
    "r_line_100": _line_resistor("100R", "SFR25H0001000FR500", "RNF12FTD100R"),
    "c_line_1u": Buy(
        "Capacitor 1 uF, polyester film, radial 22.5 mm",
        "400 V DC / 200 V AC",
        "TDK (EPCOS)",
        "B32523Q6105K",
        "Panasonic",
        "ECW-F4105JA",
        FP_FILM,
    ),
    "c_line_1u5": Buy(
        "Capacitor 1.5 uF, polyester film, radial 22.5 mm",
        "400 V DC / 200 V AC",
        "TDK (EPCOS)",
        "B32523Q6155K",
        "Nichicon",
        "QXK2G155KTPT",
        FP_FILM,
    ),
    "rectifier": Buy(
        "Rectifier diode, DO-41",
        "1000 V, 1 A",
        "onsemi",
        "1N4007G",
        "Diodes Inc.",
        "1N4007-T",
        FP_DO41,
    ),
    "zener_18": Buy(
        "Zener diode 18 V, DO-41",
        "1 W, 5 %",
        "onsemi",
        "1N4746ARLG",
        "Vishay",
        "1N4746A-TR",
        FP_DO41,
    ),
    "zener_24": Buy(
        "Zener diode 24 V, DO-41",
        "1 W, 5 %",
        "onsemi",
        "1N4749ARLG",
        "Vishay",
        "1N4749A-TR",
        FP_DO41,
    ),
    "opto": Buy(
        "Optocoupler, phototransistor output, DIP-4",
        "5 kV rms isolation, CTR 50-600 %",
        "Lite-On",
        "LTV-817",
        "Sharp",
        "PC817X1NSZ9F",
        FP_DIP4,
    ),
    "c_10u": Buy(
        "Capacitor 10 uF, aluminium electrolytic, radial 5 mm",
        "25 V (10 V needed)",
        "Nichicon",
        "UVR1E100MDD",
        "Panasonic",
        "ECA-1EM100",
        FP_ELYT,
    ),
    "c_2u2": Buy(
        "Capacitor 2.2 uF, aluminium electrolytic, radial 5 mm",
        "50 V",
        "Nichicon",
        "UVR1H2R2MDD",
        "Panasonic",
        "ECA-1HM2R2",
        FP_ELYT,
    ),
    "npn": Buy(
        "NPN transistor, SOT-23",
        "45 V, 100 mA",
        "Nexperia",
        "BC847B,215",
        "onsemi",
        "MMBT3904LT1G",
        "Package_TO_SOT_SMD:SOT-23",
    ),
    "r_1k": _resistor("1k", "MFR-25FBF52-1K", "RNF14FTD1K00"),
    "r_10k": _resistor("10k", "MFR-25FBF52-10K", "RNF14FTD10K0"),
    "r_47k": _resistor("47k", "MFR-25FBF52-47K", "RNF14FTD47K0"),
    "r_100k": _resistor("100k", "MFR-25FBF52-100K", "RNF14FTD100K"),
    # Audio
    "xfmr": Buy(
        "Line transformer 600:600 ohm, 1:1",
        "telecom isolation (UL/BABT listed); model: 2 H primary, 60 ohm per winding",
        "Bourns",
        "SM-LP-5001",
        "Triad Magnetics",
        "TY-250P",
        "linerec:Transformer_Bourns_SM-LP-5001",
    ),
    "r_4k7": _resistor("4.7k", "MFR-25FBF52-4K7", "RNF14FTD4K70"),
    "r_470": _resistor("470R", "MFR-25FBF52-470R", "RNF14FTD470R"),
    "r_330": _resistor("330R", "MFR-25FBF52-330R", "RNF14FTD330R"),
    "zener_5v1": Buy(
        "Zener diode 5.1 V, DO-35",
        "0.5 W, 5 %",
        "Nexperia",
        "BZX79-C5V1,133",
        "onsemi",
        "BZX79C5V1",
        FP_DO35,
    ),
    "photomos": Buy(
        "PhotoMOS relay, 1 form A, DIP-4",
        "60 V, 0.5 A, 5 kV rms isolation",
        "Panasonic",
        "AQY212EH",
        "Toshiba",
        "TLP222A(F)",
        FP_DIP4,
    ),
    "photomos_400": Buy(
        "PhotoMOS relay, 1 form A, DIP-4 (line side: in series with the audio stage)",
        "400 V, 0.1 A, 5 kV rms isolation, about 30 ohm on (alternative: SOP-4 footprint)",
        "Panasonic",
        "AQY214EH",
        "Panasonic",
        "AQY214S",
        FP_DIP4,
    ),
    "tvs_300": Buy(
        "TVS diode, bidirectional, SMB",
        "300 V stand-off, 335 V breakdown, 600 W",
        "Littelfuse",
        "SMBJ300CA",
        "Vishay",
        "P6SMB350CA-E3/52",
        "Diode_SMD:D_SMB",
    ),
    "tvs_12": Buy(
        "TVS diode, bidirectional, SMB",
        "12 V stand-off, 13.3 V breakdown, 600 W",
        "Littelfuse",
        "SMBJ12CA",
        "Vishay",
        "SMBJ12CA-E3/52",
        "Diode_SMD:D_SMB",
    ),
    # Pi side
    "led_red": Buy(
        "LED red, 3 mm, diffused",
        "about 2 V forward; 4 mA from 3.3 V through 330R",
        "Kingbright",
        "WP710A10ID",
        "Lite-On",
        "LTL-4221N",
        FP_LED,
    ),
    "led_green": Buy(
        "LED green, 3 mm, diffused",
        "GaP (about 2.1 V forward); an InGaN green barely lights from 3.3 V through 330R",
        "Kingbright",
        "WP710A10LGD",
        "Lite-On",
        "LTL-4231N",
        FP_LED,
    ),
    "button": Buy(
        "Tactile push button 6 x 6 mm, THT",
        "24 V DC, 50 mA",
        "Omron",
        "B3F-1000",
        "TE Connectivity",
        "FSM4JH",
        "Button_Switch_THT:SW_PUSH_6mm",
    ),
    "c_100n": Buy(
        "Capacitor 100 nF, ceramic X7R, radial 2.54 mm",
        "50 V",
        "KEMET",
        "C315C104K5R5TA",
        "Vishay",
        "K104K15X7RF5TL2",
        "Capacitor_THT:C_Disc_D3.0mm_W2.0mm_P2.50mm",
    ),
    # Connectors
    "rj": Buy(
        "Modular jack 6P6C (takes RJ11 6P4C/6P2C plugs), right angle, THT",
        "line pair on the centre contacts 3/4",
        "Amphenol ICC",
        "54601-906WPLF",
        "Wurth Elektronik",
        "615006138421",
        "Connector_RJ:RJ12_Amphenol_54601-x06_Horizontal",
    ),
    "trs": Buy(
        "3.5 mm stereo jack, right angle, THT, no switch",
        "",
        "Same Sky (CUI Devices)",
        "SJ1-3523N",
        "Same Sky (CUI Devices)",
        "SJ1-3533NG",
        "Connector_Audio:Jack_3.5mm_CUI_SJ1-3523N_Horizontal",
    ),
    "pi_header": Buy(
        "Socket 2x20, 2.54 mm, female, THT (Raspberry Pi GPIO)",
        "",
        "Sullins",
        "PPTC202LFBN-RC",
        "Samtec",
        "SSQ-120-03-T-D",
        "Connector_PinSocket_2.54mm:PinSocket_2x20_P2.54mm_Vertical",
    ),
}


# --------------------------------------------------------------------------------------------
# The board
# --------------------------------------------------------------------------------------------


def build() -> Circuit:
    circuit = Circuit()
    nets: dict[str, Net] = {}

    def net(name: str) -> Net:
        if name not in nets:
            nets[name] = Net(name, circuit=circuit)
        return nets[name]

    def place(kind: Part, ref: str, value: str, buy: str, pins: dict[str, str], sim: str = ""):
        """One part: pins maps pad number -> net name ("NC" for a pad left open)."""
        item = BUY[buy]
        part = kind(
            circuit=circuit,
            ref=ref,
            value=value,
            footprint=item.footprint,
            description=item.description,
            tag=ref,  # tag = ref keeps the netlist's time stamps stable from run to run
        )
        part.fields["Rating"] = item.rating
        part.fields["Manufacturer"] = item.manufacturer
        part.fields["MPN"] = item.mpn
        part.fields["Alt_Manufacturer"] = item.alt_manufacturer
        part.fields["Alt_MPN"] = item.alt_mpn
        if sim:  # values of the SPICE elements that model this part (checked by the tests)
            part.fields["Sim"] = sim
        if len(pins) != len(part.pins):
            raise ValueError(f"{ref}: pins {sorted(pins)} do not cover all {len(part.pins)} pads")
        for num, net_name in pins.items():
            target = circuit.NC if net_name == "NC" else net(net_name)
            target += part.p[num]
        return part

    def resistor(ref, value, buy, a, b):
        return place(RES, ref, value, buy, {"1": a, "2": b})

    def diode(ref, value, buy, anode, cathode, kind=DIODE):
        return place(kind, ref, value, buy, {"1": cathode, "2": anode})

    # ---- Connectors ---------------------------------------------------------------------
    # J1 line in, J2 phone out: wired straight through, so the tap is in parallel and the
    # phone stays on the line. A 6P6C jack takes RJ11 plugs; only the centre pair is used.
    for ref in ("J1", "J2"):
        jack = {"1": "NC", "2": "NC", "3": "RING", "4": "TIP", "5": "NC", "6": "NC"}
        place(RJ_6POS, ref, "RJ11", "rj", jack)
    # J3 to the sound card's MIC/LINE input, J4 from its headphone output. The card is
    # powered by the Pi, so its ground (SC_GND) is the board's GND: one net.
    place(TRS_JACK, "J3", "SC_IN", "trs", {"T": "SC_IN", "R": "NC", "S": "GND"})
    place(TRS_JACK, "J4", "SC_OUT", "trs", {"T": "SC_OUT", "R": "NC", "S": "GND"})
    # J5 Raspberry Pi header, line 1 of hw/pinmap.toml (tests/test_hw_board.py checks it).
    header_nets = {1: "+3V3", 11: "HOOK_SENSE", 13: "RING_SENSE", 15: "REC_LED", 16: "BUTTON",
                   29: "STATUS_LED", 31: "TALK"}  # fmt: skip
    header_nets.update({n: "GND" for n, f in PI_HEADER_PINS.items() if f == "GND"})
    header = {str(n): header_nets.get(n, "NC") for n in PI_HEADER_PINS}
    place(PI_HEADER, "J5", "Raspberry_Pi_GPIO", "pi_header", header)

    # ---- Protection: SPICE subckt PROTECT (TIP RING LT LR) -------------------------------
    # A PTC in each leg (SPICE RF1/RF2, modelled by their cold resistance) trips on a lasting
    # power cross; the thyristor across the protected pair (SPICE XD1) must stay off for
    # 56 V DC + 150 V rms ringing (268 V peak) and crowbars surges above ~350 V.
    place(PTC, "F1", "TRF250-120", "ptc", {"1": "TIP", "2": "LT"}, sim="RF1=10")
    place(PTC, "F2", "TRF250-120", "ptc", {"1": "RING", "2": "LR"}, sim="RF2=10")
    place(TSPD, "D1", "P3100SB", "tspd", {"1": "LT", "2": "LR"})

    # ---- Ring detector: SPICE subckt RINGDET, local nodes -> RD_* ------------------------
    # C1 blocks the loop DC, so only ringing reaches the bridge; 10k in each leg limits the
    # current (both legs, to keep the tap balanced).
    place(CAP, "C1", "1u", "c_line_1u", {"1": "LT", "2": "RD_N1"})
    resistor("R1", "10k", "r_line_10k", "RD_N1", "RD_N2")
    resistor("R2", "10k", "r_line_10k", "RD_N3", "LR")
    # Full bridge: either ringing half-cycle lights the LED the same way.
    diode("D2", "1N4007", "rectifier", "RD_N2", "RD_NP")
    diode("D3", "1N4007", "rectifier", "RD_N3", "RD_NP")
    diode("D4", "1N4007", "rectifier", "RD_NM", "RD_N2")
    diode("D5", "1N4007", "rectifier", "RD_NM", "RD_N3")
    # 18 V zener in series with the LED: nothing below ~21 V peak (speech, dial clicks).
    diode("D6", "1N4746A", "zener_18", "RD_NZ", "RD_NP")
    place(OPTO, "U1", "LTV-817", "opto", {"1": "RD_NZ", "2": "RD_NM", "3": "GND", "4": "RD_COL"})
    # Pull-up and hold capacitor: the transistor discharges C2 fast, R3 recharges it slowly,
    # so the output stays low through the zero crossings. R4 isolates the GPIO pin.
    resistor("R3", "10k", "r_10k", "+3V3", "RD_COL")
    place(CAP_POL, "C2", "10u", "c_10u", {"1": "RD_COL", "2": "GND"})
    resistor("R4", "1k", "r_1k", "RD_COL", "RING_SENSE")

    # ---- Hook sense: SPICE subckt HOOKSENSE, local nodes -> HS_* -------------------------
    # DC coupled: the LED is lit while the line carries on-hook voltage (42-56 V, either
    # polarity) and dark off hook (5-12 V, below the 24 V zener) or on a dead line.
    resistor("R5", "22k", "r_line_22k", "LT", "HS_N1")
    resistor("R6", "22k", "r_line_22k", "HS_N2", "LR")
    diode("D7", "1N4007", "rectifier", "HS_N1", "HS_NP")
    diode("D8", "1N4007", "rectifier", "HS_N2", "HS_NP")
    diode("D9", "1N4007", "rectifier", "HS_NM", "HS_N1")
    diode("D10", "1N4007", "rectifier", "HS_NM", "HS_N2")
    diode("D11", "1N4749A", "zener_24", "HS_NZ", "HS_NP")
    place(OPTO, "U2", "LTV-817", "opto", {"1": "HS_NZ", "2": "HS_NM", "3": "GND", "4": "HS_A"})
    # Lit opto holds node A low, so Q1 is off and R9 pulls HOOK_SENSE high (on hook); dark,
    # A rises through R7 and Q1 sinks the pin (off hook, and a dead line reads off hook).
    # C3 carries A through the zero crossings of ringing while on hook.
    resistor("R7", "47k", "r_47k", "+3V3", "HS_A")
    place(CAP_POL, "C3", "2.2u", "c_2u2", {"1": "HS_A", "2": "GND"})
    resistor("R8", "100k", "r_100k", "HS_A", "HS_B")
    place(NPN_SOT23, "Q1", "BC847", "npn", {"1": "HS_B", "2": "GND", "3": "HOOK_SENSE"})
    resistor("R9", "10k", "r_10k", "+3V3", "HOOK_SENSE")

    # ---- Audio: SPICE subckt AUDIO (TIP RING VDD GND SC SPK TALK RDCOL), nodes -> AU_* -----
    # U4 connects the stage to the line only while the ring detector sees no ringing: C4's
    # series resonance with T1's primary (~92 Hz) would otherwise take watts from 50-68 Hz
    # ringing. Q2 lights U4's LED from RING_SENSE; unpowered, U4 stays open. D17 keeps U4
    # under its 400 V rating when it opens with C4 charged.
    place(
        PHOTOMOS,
        "U4",
        "AQY214EH",
        "photomos_400",
        {"1": "AU_UA", "2": "AU_UK", "3": "LT", "4": "AU_C4A"},
    )
    place(TVS_BI, "D17", "SMBJ300CA", "tvs_300", {"1": "LT", "2": "AU_C4A"})
    resistor("R19", "330R", "r_330", "+3V3", "AU_UA")
    place(NPN_SOT23, "Q2", "BC847", "npn", {"1": "AU_QB", "2": "GND", "3": "AU_UK"})
    resistor("R18", "47k", "r_47k", "RING_SENSE", "AU_QB")
    # C4 keeps the loop DC out of the winding; R10/R11 (one per leg, for balance) limit surge
    # current into the winding.
    place(CAP, "C4", "1.5u", "c_line_1u5", {"1": "AU_C4A", "2": "AU_N1"})
    resistor("R10", "100R", "r_line_100", "AU_N1", "AU_N2")
    # T1 primary AU_N2 -> AU_N3 (SPICE RP, LP), secondary AU_S2 -> SC_GND (RS, LS), KT1.
    windings = {"1": "AU_N2", "2": "AU_N3", "3": "AU_S2", "4": "GND"}
    place(XFMR, "T1", "600:600", "xfmr", windings, sim="RP=60 LP=2 LS=2 RS=60 KT1=0.999")
    resistor("R11", "100R", "r_line_100", "AU_N3", "LR")
    # D16 across the secondary takes the winding's current when U4 opens and keeps U3 safe.
    place(TVS_BI, "D16", "SMBJ12CA", "tvs_12", {"1": "AU_S2", "2": "GND"})
    # Receive: R12 into the card's input; D12/D13 back to back clamp at ~5.8 V.
    resistor("R12", "4.7k", "r_4k7", "AU_S2", "SC_IN")
    diode("D12", "BZX79-C5V1", "zener_5v1", "SC_IN", "AU_ZM")
    diode("D13", "BZX79-C5V1", "zener_5v1", "GND", "AU_ZM")
    # Transmit: card output -> R13 -> U3 output -> secondary, closed only while the notice or
    # beep plays (TALK high, about 6 mA through R14), so an idle card output does not load
    # the line.
    resistor("R13", "470R", "r_470", "SC_OUT", "AU_T1")
    place(
        PHOTOMOS,
        "U3",
        "AQY212EH",
        "photomos",
        {"1": "AU_TA", "2": "GND", "3": "AU_T1", "4": "AU_S2"},
    )
    resistor("R14", "330R", "r_330", "TALK", "AU_TA")

    # ---- Pi side: LEDs and button (not simulated) ----------------------------------------
    resistor("R15", "330R", "r_330", "REC_LED", "REC_LED_A")
    diode("D14", "red", "led_red", "REC_LED_A", "GND", kind=LED)
    resistor("R16", "330R", "r_330", "STATUS_LED", "STATUS_LED_A")
    diode("D15", "green", "led_green", "STATUS_LED_A", "GND", kind=LED)
    # Button to GND through 1k (limits the current if the pin is ever driven as an output);
    # C5 filters bounce and noise. The firmware enables the pull-up and debounces.
    resistor("R17", "1k", "r_1k", "BUTTON", "BUTTON_SW")
    place(BUTTON, "SW1", "pause/opt-out", "button", {"1": "BUTTON_SW", "2": "GND"})
    place(CAP, "C5", "100n", "c_100n", {"1": "BUTTON", "2": "GND"})

    return circuit


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def netlist_text(circuit: Circuit) -> str:
    circuit.no_files = True  # we write the files; skidl writes no logs or backup libraries
    with _skidl_console():
        text = str(
            circuit.generate_netlist(
                tool=NETLIST_TOOL, do_backup=False, track_src=False, track_abs_path=False
            )
        )
    # Run-dependent items: the generation date, and the script path relative to wherever
    # it was run from. Fix both so a re-run gives the same bytes.
    text = re.sub(r'\(date "[^"]*"\)', '(date "")', text, count=1)
    text = re.sub(r'\(source "[^"]*"\)', '(source "hw/board.py")', text)
    return text.rstrip("\n") + "\n"


BOM_COLUMNS = [
    "refs",
    "qty",
    "value",
    "description",
    "rating/notes",
    "manufacturer",
    "mpn",
    "alt_manufacturer",
    "alt_mpn",
    "footprint",
]


def _ref_key(ref: str) -> tuple[str, int]:
    m = re.fullmatch(r"([A-Z]+)(\d+)", ref)
    if not m:
        raise ValueError(f"unexpected reference {ref!r}")
    return m.group(1), int(m.group(2))


def bom_text(circuit: Circuit) -> str:
    groups: dict[tuple[str, ...], list[str]] = {}
    for part in circuit.parts:
        f = part.fields
        key = (
            str(part.value),
            part.description,
            f["Rating"],
            f["Manufacturer"],
            f["MPN"],
            f["Alt_Manufacturer"],
            f["Alt_MPN"],
            part.footprint,
        )
        groups.setdefault(key, []).append(part.ref)
    rows = []
    for key, refs in groups.items():
        refs.sort(key=_ref_key)
        rows.append([" ".join(refs), str(len(refs)), *key])
    rows.sort(key=lambda row: _ref_key(row[0].split()[0]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(BOM_COLUMNS)
    writer.writerows(rows)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output directory (default: hw/)")
    args = parser.parse_args(argv)
    circuit = build()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / NETLIST_NAME).write_text(netlist_text(circuit), encoding="utf-8")
    (args.out / BOM_NAME).write_text(bom_text(circuit), encoding="utf-8")
    print(f"wrote {args.out / NETLIST_NAME} and {args.out / BOM_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
