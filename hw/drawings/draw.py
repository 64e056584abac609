"""Draw the hardware kit's pictures as SVG: the schematic and three wiring pictures.

    .venv/bin/python hw/drawings/draw.py [--out DIR]      (default: hw/drawings/)

Writes schematic.svg, line.svg, pi-header.svg and usb-interface.svg with schemdraw's own SVG
backend (no matplotlib). The output is the same bytes on every run: nothing random or
time-based goes in, coordinates are rounded, and every figure starts from the same state.

The schematic follows the circuit spec of the one-line board (refs, values and nets as in
hw/spice and hw/README.md). The header picture and the header pins in the schematic are read
from hw/pinmap.toml, the pin map the firmware uses, so the drawings cannot disagree with it.
tests/test_hw_drawings.py checks that the committed SVGs are what this script makes.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import schemdraw
import schemdraw.elements as elm
from schemdraw.backends.svg import Figure
from schemdraw.segments import SegmentText

schemdraw.use("svg")
schemdraw.svgconfig.text = "text"  # real <text>: searchable, and no font package needed

HERE = Path(__file__).resolve().parent
PINMAP = HERE.parent / "pinmap.toml"
sys.path.insert(0, str(HERE.parent))  # hw/, for pi_header.py
from pi_header import HEADER  # noqa: E402

Point = tuple[float, float]

# Colours: the North American wire colours for the pair, and one per kind of signal.
TIP_GREEN = "#118811"
RING_RED = "#cc1111"
LINE_SIDE_FILL = "#fdf0ee"
PI_SIDE_FILL = "#eef4fb"
BARRIER = "#cc1111"
BOX = "#666666"
NOTE = "#333333"
LINE1 = "#1f5fbf"
LINE2 = "#8a3fb0"
BOARD = "#1e8449"
POWER = "#c0392b"
GROUND = "#222222"
MUTED = "#9a9a9a"

FONT = "DejaVu Sans, Verdana, Arial, Helvetica, sans-serif"
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"

# --- the Raspberry Pi 40-pin header ------------------------------------------------------

# Physical pin -> what it is: hw/pi_header.py, shared with board.py.
# Second functions worth knowing when choosing pins (not used by the board).
HEADER_ALT: dict[int, str] = {
    3: "SDA", 5: "SCL", 8: "TXD", 10: "RXD", 19: "MOSI", 21: "MISO", 23: "SCLK",
    24: "CE0", 26: "CE1", 27: "ID_SD", 28: "ID_SC", 12: "PCM_CLK", 35: "PCM_FS",
    38: "PCM_DIN", 40: "PCM_DOUT",
}  # fmt: skip
GND_PINS = tuple(pin for pin, name in HEADER.items() if name == "GND")
BCM_TO_PIN = {int(name[4:]): pin for pin, name in HEADER.items() if name.startswith("GPIO")}

# pinmap.toml key -> (board net, what it does). Unknown keys are drawn under their own name.
SIGNALS: dict[str, tuple[str, str]] = {
    "hook_sense": ("HOOK_SENSE", "hook sense in: low = off hook (U2, Q1)"),
    "ring_sense": ("RING_SENSE", "ring sense in: low while ringing (U1)"),
    "recording_led": ("REC_LED", "red recording LED out (R15, D14)"),
    "button": ("BUTTON", "pause/opt-out button in (SW1 to GND)"),
    "talk_switch": ("TALK", "talk switch out: high closes U3"),
    "status_led": ("STATUS_LED", "green status LED out (R16, D15)"),
}
SIGNAL_ORDER = ("hook_sense", "ring_sense", "recording_led", "button", "talk_switch")


@dataclass(frozen=True)
class Signal:
    """One GPIO the pin map assigns."""

    owner: str  # "board", "line 1", "line 2", ...
    key: str  # the pinmap.toml key
    net: str  # the board net it carries
    what: str
    gpio: int

    @property
    def pin(self) -> int:
        return BCM_TO_PIN[self.gpio]


def load_signals(path: Path = PINMAP) -> list[Signal]:
    """Every GPIO of the pin map, board first, then each line in order."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    found: list[Signal] = []

    def take(owner: str, table: dict[str, object], order: Sequence[str]) -> None:
        keys = [k for k in order if k in table] + sorted(k for k in table if k not in order)
        for key in keys:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int):
                continue  # flags such as hook_active_low
            if value not in BCM_TO_PIN:
                raise SystemExit(f"{path}: {owner} {key} = {value} is not a header GPIO")
            net, what = SIGNALS.get(key, (key.upper(), key.replace("_", " ")))
            found.append(Signal(owner, key, net, what, value))

    take("board", data.get("board", {}), ("status_led",))
    for index, line in enumerate(data.get("line", [])):
        take(f"line {index + 1}", line, SIGNAL_ORDER)
    return found


# --- drawing helpers ----------------------------------------------------------------------


class Sheet:
    """A schemdraw drawing placed in absolute coordinates (drawing units, y up)."""

    def __init__(self, *, unit: float = 2.5, fontsize: float = 11, lw: float = 1.5) -> None:
        Figure.total_clips = 0  # clip ids count up across figures: start each one alike
        self.d = schemdraw.Drawing(show=False, canvas="svg")
        self.d.config(unit=unit, fontsize=fontsize, lw=lw, font="sans", margin=0.4)

    def add(self, element: elm.Element) -> elm.Element:
        self.d.add(element)
        return element

    # wires and symbols

    def wire(
        self,
        *points: Point,
        color: str = "black",
        lw: float | None = None,
        ls: str = "-",
        zorder: int | None = None,
    ) -> None:
        for a, b in itertools.pairwise(points):
            line = elm.Line(color=color, ls=ls).endpoints(a, b)
            if lw is not None:
                line.linewidth(lw)
            if zorder is not None:
                line.zorder(zorder)
            self.add(line)

    def dot(self, p: Point, color: str = "black") -> None:
        self.add(elm.Dot(radius=0.1, color=color).at(p).theta(0))

    def gnd(self, p: Point) -> None:
        self.add(elm.Ground(lead=False).at(p).theta(0))

    def vdd(self, p: Point, name: str = "+3V3") -> None:
        self.add(elm.Vdd(lead=False).at(p).theta(0))
        self.text(p[0], p[1] + 0.65, name, size=10, halign="center")

    def tag(self, p: Point, name: str, *, right: bool = True, color: str = "black") -> float:
        """A net label whose point touches `p`; its body goes right (or left). Returns its far x."""
        tip = 0.275  # half the tag's height: the pointed end
        width = tip + 0.18 * len(name) + 0.35
        tag = elm.Tag(width=width, height=2 * tip, color=color).at(p).theta(0 if right else 180)
        self.add(tag)
        mid = p[0] + (tip + width) / 2 * (1 if right else -1)
        self.text(mid, p[1], name, size=9.5, halign="center", color=color)
        return p[0] + width * (1 if right else -1)

    def text(
        self,
        x: float,
        y: float,
        s: str,
        *,
        size: float = 10,
        halign: str = "left",
        valign: str = "center",
        color: str = "black",
        font: str = "sans",
    ) -> None:
        text = SegmentText((0, 0), s, align=(halign, valign), fontsize=size, color=color, font=font)
        holder = elm.Element()
        holder.segments.append(text)
        self.add(holder.at((x, y)).theta(0))

    def box(
        self,
        x1: float,
        y1: float,
        x2: float,
        y2: float,
        *,
        color: str = BOX,
        fill: str | None = None,
        ls: str = "-",
        lw: float = 1.0,
        zorder: int = 0,
    ) -> None:
        rect = elm.Rect(corner1=(x1, y1), corner2=(x2, y2), fill=fill, ls=ls, color=color)
        rect.linewidth(lw)
        rect.zorder(zorder)
        self.add(rect.at((0, 0)).theta(0))

    # two-terminal parts, labelled: ref above and value below (horizontal) or beside (vertical)

    def part(
        self,
        kind: type[elm.Element],
        a: Point,
        b: Point,
        ref: str,
        value: str = "",
        *,
        side: str = "auto",
        reverse: bool = False,
        gap: float = 0.45,
        color: str = "black",
        **kwargs: object,
    ) -> elm.Element:
        element = kind(color=color, **kwargs).endpoints(a, b)
        if reverse:
            element.reverse()
        self.add(element)
        mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
        horizontal = abs(a[1] - b[1]) < 1e-9
        if side == "auto":
            side = "tb" if horizontal else "right"
        if side == "tb":
            self.text(mx, my + 0.62, ref, size=10.5, halign="center")
            if value:
                self.text(mx, my - 0.6, value, size=9, halign="center", color=NOTE)
        elif side in ("right", "left"):
            dx = gap if side == "right" else -gap
            self.text(mx + dx, my + 0.24, ref, size=10.5, halign=side_to_align(side))
            if value:
                self.text(mx + dx, my - 0.24, value, size=9, halign=side_to_align(side), color=NOTE)
        return element


def side_to_align(side: str) -> str:
    return "left" if side == "right" else "right"


_NUMBER = re.compile(r"-?\d+\.\d+(?:e-?\d+)?")


def _round(match: re.Match[str]) -> str:
    text = f"{float(match.group()):.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _tidy_attr(match: re.Match[str]) -> str:
    return f'{match[1]}="{_NUMBER.sub(_round, match[2])}"'


# Where the alphabetic baseline lies below schemdraw's requested baseline, in ems. schemdraw
# puts dominant-baseline on <text> while the glyphs sit in a <tspan>, and renderers disagree
# on whether the tspan inherits it; a plain baseline renders the same everywhere.
_BASELINE_EM = {"central": 0.36, "ideographic": -0.22, "hanging": 0.78, "alphabetic": 0.0}
_TEXT_TAG = re.compile(
    r'<text x="([^"]*)" y="([^"]*)" dominant-baseline="(\w+)"( fill="[^"]*" font-size="([^"]*)")'
)


def _plain_baseline(match: re.Match[str]) -> str:
    y = float(match[2]) + _BASELINE_EM[match[3]] * float(match[5])
    return f'<text x="{match[1]}" y="{y}"{match[4]}'


def svg_bytes(sheet: Sheet, title: str) -> bytes:
    """The drawing as stable SVG: plain baselines, rounded numbers, fonts, a white page."""
    text = sheet.d.get_imagedata("svg").decode("utf-8")
    text = _TEXT_TAG.sub(_plain_baseline, text)
    assert "dominant-baseline" not in text
    text = re.sub(r'(\s[\w:-]+)="([^"]*)"', _tidy_attr, text)
    text = text.replace('font-family="sans"', f'font-family="{FONT}"')
    text = text.replace('font-family="mono"', f'font-family="{MONO}"')
    view = re.search(r'viewBox="([-\d.]+) ([-\d.]+) ([-\d.]+) ([-\d.]+)"', text)
    assert view is not None
    x, y, w, h = view.groups()
    text = text.replace("<svg ", '<svg xml:space="preserve" ', 1)
    head_end = text.index(">") + 1
    page = (
        f"<title>{title}</title>"
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="white" stroke="none" />'
    )
    text = text[:head_end] + page + text[head_end:]
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + text.rstrip() + "\n").encode("utf-8")


# --- the schematic ------------------------------------------------------------------------

LT_X = -16.5  # where each stage takes the protected line (LT/LR net labels)
BRIDGE_X = -8.5  # centre of the diode bridges


def bridge(s: Sheet, centre: Point, refs: Sequence[str], value: str) -> dict[str, Point]:
    """A full-wave diode bridge as a diamond: AC in at N and S, DC + at E and - at W."""
    cx, cy = centre
    h = 1.6
    n, e, so, w = (cx, cy + h), (cx + h, cy), (cx, cy - h), (cx - h, cy)
    # anode -> cathode, and where each ref goes
    diodes = [(w, n, -1, 1), (n, e, 1, 1), (so, e, 1, -1), (w, so, -1, -1)]
    for ref, (a, b, dx, dy) in zip(refs, diodes, strict=True):
        s.add(elm.Diode().endpoints(a, b))
        mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
        s.text(mx + 0.5 * dx, my + 0.5 * dy, ref, size=10, halign="left" if dx > 0 else "right")
    s.text(cx, cy, value, size=8, halign="center", color=NOTE)
    s.text(e[0] + 0.15, e[1] + 0.3, "+", size=10, halign="left")
    s.text(w[0] - 0.15, w[1] + 0.3, "\u2212", size=10, halign="right")
    return {"N": n, "E": e, "S": so, "W": w}


def opto(s: Sheet, anode: Point, ref: str, value: str) -> dict[str, Point]:
    """An optocoupler whose LED anode lead ends at `anode`; its middle sits on the barrier."""
    part = elm.Optocoupler().at((anode[0] + 0.45, anode[1])).theta(0)
    s.add(part)
    anchors = {k: (round(v[0], 3), round(v[1], 3)) for k, v in part.absanchors.items()}
    box_top = anode[1] + 0.2
    s.text(anchors["collector"][0] - 0.1, box_top + 0.25, ref, size=10.5, halign="right")
    s.text(anchors["collector"][0] - 0.1, box_top - 2.25, value, size=9, halign="right", color=NOTE)
    return anchors


def stage_box(s: Sheet, top: float, bottom: float, title: str, right: float = 13.8) -> None:
    s.box(-18.6, top, right, bottom, color=BOX, ls="--", lw=1.0)
    s.text(-18.3, top - 0.4, title, size=11.5, color="#000000")


@dataclass(frozen=True)
class SenseStage:
    """The parts of a bridge-and-opto sense stage: both line sense stages have this shape."""

    title: str
    series_top: tuple[str, str]  # ref, value of the part from LT (C1, or R5)
    resistor_top: tuple[str, str] | None  # a resistor after it (R1), if any
    resistor_bottom: tuple[str, str]  # to LR
    bridge: tuple[str, str, str, str]
    zener: tuple[str, str]
    opto: str
    pull_up: tuple[str, str]
    capacitor: tuple[str, str]


def sense_stage(s: Sheet, y: float, st: SenseStage) -> tuple[Point, Point]:
    """Draws a sense stage up to its opto's node; returns (that node, the opto's emitter)."""
    stage_box(s, y + 2.4, y - 7.6, st.title)
    s.tag((LT_X, y), "LT", right=False)
    kind = elm.Capacitor if st.series_top[0].startswith("C") else elm.Resistor
    s.part(kind, (LT_X, y), (LT_X + 3, y), *st.series_top)
    x = LT_X + 3
    if st.resistor_top is not None:
        s.part(elm.Resistor, (x, y), (x + 3, y), *st.resistor_top)
        x += 3
    b = bridge(s, (BRIDGE_X, y - 2.6), st.bridge, "1N4007")
    s.wire((x, y), (BRIDGE_X, y), b["N"])
    s.wire(b["S"], (BRIDGE_X, y - 5.2))
    s.part(elm.Resistor, (BRIDGE_X, y - 5.2), (BRIDGE_X + 3, y - 5.2), *st.resistor_bottom)
    s.tag((BRIDGE_X + 3, y - 5.2), "LR")
    anode = (-1.2, b["E"][1])
    s.wire(b["E"], (-6.3, anode[1]))
    s.part(elm.Zener, (-6.3, anode[1]), (-3.6, anode[1]), *st.zener, reverse=True)
    s.wire((-3.6, anode[1]), anode)
    u = opto(s, anode, st.opto, "LTV-817")
    low = y - 6.9
    s.wire(u["cathode"], (-2.2, u["cathode"][1]), (-2.2, low), (b["W"][0], low), b["W"])
    # Pi side: the phototransistor pulls the node low against the pull-up; the capacitor
    # carries it through the zero crossings of ringing
    col = u["collector"]
    node = (3.2, col[1])
    s.wire(col, node, (5.6, col[1]))
    s.vdd((3.2, y + 0.6))
    s.part(elm.Resistor, (3.2, y + 0.6), node, *st.pull_up)
    s.dot(node)
    s.part(elm.Capacitor, (5.6, col[1]), (5.6, col[1] - 2.6), *st.capacitor)
    s.gnd((5.6, col[1] - 2.6))
    s.dot((5.6, col[1]))
    em = u["emitter"]
    s.wire(em, (1.9, em[1]), (1.9, col[1] - 2.6))
    s.gnd((1.9, col[1] - 2.6))
    return (5.6, col[1]), node


def ring_detector(s: Sheet, y: float) -> None:
    stage = SenseStage(
        "RING DETECTOR  \u2192 RING_SENSE (low while ringing)",
        ("C1", "1 \u00b5F 400 V film"),
        ("R1", "10k 0.5 W 350 V"),
        ("R2", "10k 0.5 W 350 V"),
        ("D2", "D3", "D4", "D5"),
        ("D6", "18 V 1N4746A"),
        "U1",
        ("R3", "10k"),
        ("C2", "10 \u00b5F 10 V"),
    )
    out, _ = sense_stage(s, y, stage)
    s.part(elm.Resistor, out, (8.6, out[1]), "R4", "1k")
    s.tag((8.6, out[1]), "RING_SENSE")


def hook_sense(s: Sheet, y: float) -> None:
    stage = SenseStage(
        "HOOK SENSE  \u2192 HOOK_SENSE (high on hook, low off hook)",
        ("R5", "22k 0.5 W"),
        None,
        ("R6", "22k 0.5 W"),
        ("D7", "D8", "D9", "D10"),
        ("D11", "24 V 1N4749A"),
        "U2",
        ("R7", "47k"),
        ("C3", "2.2 \u00b5F"),
    )
    # the opto pulls node A low on hook, which keeps Q1 off and the pin high
    col, a = sense_stage(s, y, stage)
    s.text(a[0] + 0.2, a[1] - 0.35, "A", size=9, color=NOTE)
    s.part(elm.Resistor, col, (8.4, col[1]), "R8", "100k")
    q = elm.BjtNpn().at((8.4, col[1])).theta(0)
    s.add(q)
    qc = (round(q.absanchors["collector"][0], 3), round(q.absanchors["collector"][1], 3))
    qe = (round(q.absanchors["emitter"][0], 3), round(q.absanchors["emitter"][1], 3))
    s.text(qc[0] + 0.35, col[1] + 0.15, "Q1", size=10.5)
    s.text(qc[0] + 0.35, col[1] - 0.3, "BC847", size=9, color=NOTE)
    out = (qc[0], y - 0.6)
    s.wire(qc, out, (qc[0] + 0.9, out[1]))
    s.dot(out)
    s.vdd((qc[0], y + 1.2))
    s.part(elm.Resistor, (qc[0], y + 1.2), out, "R9", "10k", side="left")
    s.tag((qc[0] + 0.9, out[1]), "HOOK_SENSE")
    s.wire(qe, (qe[0], col[1] - 2.6))
    s.gnd((qe[0], col[1] - 2.6))


def sc_gnd(s: Sheet, p: Point) -> None:
    s.add(elm.GroundSignal(lead=False).at(p).theta(0))


def audio(s: Sheet, y: float) -> None:
    stage_box(
        s,
        y + 2.4,
        y - 13.6,
        "AUDIO  \u2192 SC_IN (receive);  SC_OUT \u2192 line only while TALK is high",
    )
    # Line side: U4's switch (its LED is on the Pi side, below) with D17 across it, then C4.
    s.tag((LT_X, y), "LT", right=False)
    u4a, u4b = (LT_X + 0.6, y), (LT_X + 3.0, y)
    s.wire((LT_X, y), u4a)
    s.add(elm.Switch().endpoints(u4a, u4b))
    s.text((u4a[0] + u4b[0]) / 2, y + 0.75, "U4 switch", size=10.5, halign="center")
    s.dot(u4a)
    s.dot(u4b)
    s.wire(u4a, (u4a[0], y - 1.6))
    s.part(elm.DiodeTVS, (u4a[0], y - 1.6), (u4b[0], y - 1.6), "", "")
    s.wire((u4b[0], y - 1.6), u4b)
    s.text((u4a[0] + u4b[0]) / 2, y - 2.25, "D17 SMBJ300CA", size=9, halign="center")
    s.text((u4a[0] + u4b[0]) / 2, y - 2.65, "TVS, both ways", size=8.5, halign="center", color=NOTE)
    s.text(LT_X - 1.7, y - 3.4, "U4: AQY214EH photoMOS, 400 V.", size=8.5, color=NOTE)
    s.text(LT_X - 1.7, y - 3.8, "Closed unless the ring detector", size=8.5, color=NOTE)
    s.text(LT_X - 1.7, y - 4.2, "sees ringing; open unpowered.", size=8.5, color=NOTE)
    s.part(elm.Capacitor, (u4b[0], y), (u4b[0] + 2.8, y), "C4", "1.5 \u00b5F 400 V film")
    r10a = (u4b[0] + 2.8, y)
    s.part(elm.Resistor, r10a, (r10a[0] + 2.8, y), "R10", "100R 0.5 W")
    t = elm.Transformer(t1=6, t2=6).at((-0.5, y - 2.4)).theta(0)
    s.add(t)
    p1, p2 = (-0.5, y), (-0.5, y - 2.4)
    s1, s2 = (0.5, y), (0.5, y - 2.4)
    s.wire((r10a[0] + 2.8, y), p1)
    s.text(-0.8, y + 0.4, "T1", size=10.5, halign="right")
    s.text(-0.8, y - 2.95, "600:600 \u03a9 1:1, 2 H", size=9, halign="right", color=NOTE)
    s.wire(p2, (-3.9, y - 2.4))
    s.part(elm.Resistor, (-3.9, y - 2.4), (-6.9, y - 2.4), "R11", "100R 0.5 W")
    s.tag((-6.9, y - 2.4), "LR", right=False)
    # Pi side: receive through R12, clamp D12/D13; transmit R13 + U3 into the same winding;
    # D16 across the winding.
    sw_x, led_x = 2.1, 3.9
    s.wire(s1, (sw_x, y), (2.6, y))
    s.dot((sw_x, y))
    s.part(elm.Resistor, (2.6, y), (5.2, y), "R12", "4.7k")
    sc = (10.6, y)
    s.wire((5.2, y), sc, (11.2, y))
    s.dot(sc)
    s.tag((11.2, y), "SC_IN")
    s.part(elm.Zener, sc, (sc[0], y - 2.2), "D12", "5.1 V")
    s.part(elm.Zener, (sc[0], y - 2.2), (sc[0], y - 4.4), "D13", "5.1 V", reverse=True)
    s.text(sc[0] + 0.45, y - 4.95, "BZX79-C5V1,", size=8.5, color=NOTE)
    s.text(sc[0] + 0.45, y - 5.35, "back to back", size=8.5, color=NOTE)
    sc_gnd(s, (sc[0], y - 4.4))
    s.wire(s2, (s2[0], y - 3.0))
    sc_gnd(s, (s2[0], y - 3.0))
    # D16 from the winding's hot end (s1) down to ground, left of U3
    d16 = (1.05, y)
    s.dot(d16)
    s.part(elm.DiodeTVS, (d16[0], y - 4.6), d16, "", "")
    s.text(d16[0] - 0.3, y - 5.75, "D16 SMBJ12CA", size=9, halign="left")
    s.gnd((d16[0], y - 4.6))
    # U3: photoMOS relay, switch and its LED in one box
    s.box(1.45, y - 0.75, 4.6, y - 4.0, color="black", lw=1.2)
    s.text(4.85, y - 2.5, "U3", size=10.5)
    s.text(4.85, y - 2.95, "AQY212EH", size=9, color=NOTE)
    s.text(4.85, y - 3.35, "photoMOS relay", size=9, color=NOTE)
    s.add(elm.Switch().endpoints((sw_x, y - 0.75), (sw_x, y - 4.0)).flip())
    s.wire((sw_x, y), (sw_x, y - 0.75))
    s.add(elm.LED().endpoints((led_x, y - 1.5), (led_x, y - 3.3)).flip())
    s.wire((led_x, y - 1.5), (led_x, y - 1.25), (5.4, y - 1.25))
    s.part(elm.Resistor, (5.4, y - 1.25), (7.9, y - 1.25), "R14", "330R")
    s.tag((7.9, y - 1.25), "TALK")
    s.wire((led_x, y - 3.3), (led_x, y - 4.4))
    s.gnd((led_x, y - 4.4))
    s.wire((sw_x, y - 4.0), (sw_x, y - 6.2), (5.4, y - 6.2))
    s.text(sw_x - 0.15, y - 5.0, "t1", size=8, halign="right", color=NOTE)
    s.part(elm.Resistor, (5.4, y - 6.2), (7.9, y - 6.2), "R13", "470R")
    s.tag((7.9, y - 6.2), "SC_OUT")
    # U4's LED, lit through R19 by Q2 while RING_SENSE is high (no ringing)
    led4 = 8.6
    top4 = y - 7.8
    s.vdd((led4, top4))
    s.part(elm.Resistor, (led4, top4), (led4, top4 - 1.6), "R19", "330R")
    s.box(led4 - 0.75, top4 - 1.75, led4 + 3.6, top4 - 3.45, color="black", lw=1.2)
    s.add(elm.LED().endpoints((led4, top4 - 1.6), (led4, top4 - 3.6)))
    s.text(led4 + 1.0, top4 - 2.35, "U4 LED", size=10)
    s.text(led4 + 1.0, top4 - 2.8, "(switch: line side)", size=8.5, color=NOTE)
    q = elm.BjtNpn().at((led4 - 1.2, top4 - 4.4)).theta(0)
    s.add(q)
    qb = (round(q.absanchors["base"][0], 3), round(q.absanchors["base"][1], 3))
    qc = (round(q.absanchors["collector"][0], 3), round(q.absanchors["collector"][1], 3))
    qe = (round(q.absanchors["emitter"][0], 3), round(q.absanchors["emitter"][1], 3))
    s.wire((led4, top4 - 3.6), (qc[0], top4 - 3.6), qc)
    s.text(qc[0] + 0.35, qb[1] + 0.1, "Q2", size=10.5)
    s.text(qc[0] + 0.35, qb[1] - 0.35, "BC847", size=9, color=NOTE)
    s.wire(qe, (qe[0], qe[1] - 0.3))
    s.gnd((qe[0], qe[1] - 0.3))
    s.part(elm.Resistor, (qb[0] - 2.4, qb[1]), qb, "R18", "47k")
    s.tag((qb[0] - 2.4, qb[1]), "RING_SENSE", right=False)


def protection(s: Sheet, top: float) -> None:
    """J1 (line in), J2 (phone, straight through), F1/F2 and D1: the protected line LT/LR."""
    s.box(-36.6, top, -20.0, top - 11.2, color=BOX, ls="--", lw=1.0)
    s.text(-36.3, top - 0.4, "LINE IN / PHONE OUT, PROTECTION", size=11.5)
    tip_y, ring_y = top - 3.4, top - 8.4
    # J1: RJ11 6P4C, pins 3 (RING) and 4 (TIP)
    s.box(-35.0, tip_y + 1.0, -33.2, ring_y - 1.0, color="black", lw=1.2)
    s.text(-34.1, tip_y + 1.35, "J1", size=10.5, halign="center")
    s.text(-34.1, ring_y - 1.35, "LINE IN", size=9, halign="center", valign="top")
    s.text(-34.1, ring_y - 1.8, "RJ11 6P4C", size=8.5, halign="center", valign="top", color=NOTE)
    s.text(-34.1, tip_y - 2.2, "from the", size=8.5, halign="center", color=NOTE)
    s.text(-34.1, tip_y - 2.6, "wall", size=8.5, halign="center", color=NOTE)
    for y, pin, net, color in ((tip_y, "4", "TIP", TIP_GREEN), (ring_y, "3", "RING", RING_RED)):
        s.text(-33.35, y, pin, size=9, halign="right")
        s.wire((-33.2, y), (-29.5, y), color=color, lw=2.2)
        s.text(
            -32.4,
            y + 0.35,
            f"{net} ({'green' if net == 'TIP' else 'red'})",
            size=9,
            color=color,
            valign="bottom",
        )
    # J2 between the two legs, wired straight through: the phone stays on the line
    j2x = -29.5
    s.dot((j2x, tip_y), TIP_GREEN)
    s.dot((j2x, ring_y), RING_RED)
    s.wire((j2x, tip_y), (j2x, tip_y - 1.2), color=TIP_GREEN, lw=2.2)
    s.wire((j2x, ring_y), (j2x, ring_y + 1.2), color=RING_RED, lw=2.2)
    s.box(j2x - 1.0, tip_y - 1.2, j2x + 1.0, ring_y + 1.2, color="black", lw=1.2)
    s.text(j2x + 0.15, tip_y - 1.5, "4", size=9)
    s.text(j2x + 0.15, ring_y + 1.5, "3", size=9)
    s.text(j2x, tip_y - 2.2, "J2", size=10.5, halign="center")
    s.text(j2x, tip_y - 2.7, "PHONE", size=9, halign="center")
    s.text(j2x, tip_y - 3.1, "RJ11", size=8.5, halign="center", color=NOTE)
    s.text(j2x, ring_y - 0.5, "to the telephone", size=8.5, halign="center", color=NOTE)
    s.wire((j2x, tip_y), (-28.0, tip_y), color=TIP_GREEN, lw=2.2)
    s.wire((j2x, ring_y), (-28.0, ring_y), color=RING_RED, lw=2.2)
    s.part(elm.Fuse, (-28.0, tip_y), (-25.0, tip_y), "F1", "PTC 250 V 120 mA", color=TIP_GREEN)
    s.part(elm.Fuse, (-28.0, ring_y), (-25.0, ring_y), "F2", "PTC 250 V 120 mA", color=RING_RED)
    dx = -23.2
    s.wire((-25.0, tip_y), (-21.6, tip_y))
    s.wire((-25.0, ring_y), (-21.6, ring_y))
    s.dot((dx, tip_y))
    s.dot((dx, ring_y))
    s.wire((dx, tip_y), (dx, tip_y - 1.0))
    s.wire((dx, ring_y), (dx, ring_y + 1.0))
    s.part(elm.Diac, (dx, tip_y - 1.0), (dx, ring_y + 1.0), "D1", "surge thyristor", gap=0.75)
    s.text(dx + 0.75, tip_y - 3.05, "VDRM \u2265 275 V", size=8.5, color=NOTE)
    s.text(dx + 0.75, tip_y - 3.45, "P3100SBLRP", size=8.5, color=NOTE)
    s.tag((-21.6, tip_y), "LT")
    s.tag((-21.6, ring_y), "LR")
    s.text(
        -20.2,
        top - 10.6,
        "LT/LR: the protected line, to all three stages",
        size=8.5,
        halign="right",
        color=NOTE,
    )


def header_block(s: Sheet, x: float, top: float, signals: Sequence[Signal]) -> None:
    """J5: the header pins the board uses, each with its net label."""
    power = [(1, "3V3", "+3V3")]
    rows = sorted(power + [(sig.pin, f"GPIO{sig.gpio}", sig.net) for sig in signals])
    rows.append((0, "GND", "GND"))
    pitch = 0.95
    bottom = top - pitch * (len(rows) + 0.6)
    s.box(x, top, x + 3.4, bottom, color="black", lw=1.4)
    s.text(x + 1.7, top + 0.4, "J5", size=10.5, halign="center", valign="bottom")
    for i, (pin, name, net) in enumerate(rows):
        y = top - pitch * (i + 0.8)
        s.wire((x - 1.1, y), (x, y))
        s.text(x + 0.2, y, name, size=9.5)
        if pin == 0:
            pins = ", ".join(str(p) for p in GND_PINS)
            s.text(x - 0.15, y + 0.3, pins, size=8.5, halign="right")
            s.wire((x - 1.1, y), (x - 1.1, y - 0.3))
            s.gnd((x - 1.1, y - 0.3))
        else:
            s.text(x - 0.15, y + 0.3, str(pin), size=8.5, halign="right")
            s.tag((x - 1.1, y), net, right=False)
    s.text(x + 3.6, top - 0.5, "Raspberry Pi", size=9.5)
    s.text(x + 3.6, top - 0.95, "40-pin header", size=9.5)
    s.text(x + 3.6, top - 1.4, "2\u00d720 female,", size=8.5, color=NOTE)
    s.text(x + 3.6, top - 1.8, "HAT-style", size=8.5, color=NOTE)
    s.text(x + 3.6, top - 2.5, "pins of line 1", size=8.5, color=NOTE)
    s.text(x + 3.6, top - 2.9, "(hw/pinmap.toml)", size=8.5, color=NOTE)


def pi_side(s: Sheet, top: float, signals: Sequence[Signal]) -> None:
    x0, x1 = 16.4, 35.4
    s.box(x0, top, x1, top - 31.0, color=BOX, ls="--", lw=1.0)
    s.text(x0 + 0.3, top - 0.4, "PI SIDE: HEADER, LEDS, BUTTON, SOUND CARD", size=11.5)
    header_block(s, 24.2, top - 1.6, signals)
    # LEDs and button
    y = top - 12.6
    for net, r, ref, value in (
        ("REC_LED", "R15", "D14", "red, recording"),
        ("STATUS_LED", "R16", "D15", "green, status"),
    ):
        s.tag((21.0, y), net, right=False)
        s.part(elm.Resistor, (21.0, y), (23.8, y), r, "330R")
        s.wire((23.8, y), (25.0, y))
        s.part(elm.LED, (25.0, y), (25.0, y - 2.0), ref, value, gap=0.95)
        s.gnd((25.0, y - 2.0))
        y -= 3.6
    s.tag((21.0, y), "BUTTON", right=False)
    s.wire((21.0, y), (21.6, y))
    s.dot((21.6, y))
    s.part(elm.Capacitor, (21.6, y), (21.6, y - 2.2), "C5", "100 nF", side="left")
    s.gnd((21.6, y - 2.2))
    s.part(elm.Resistor, (21.6, y), (24.4, y), "R17", "1k")
    s.wire((24.4, y), (25.0, y))
    s.part(elm.Button, (25.0, y), (25.0, y - 2.2), "SW1", "pause / opt-out")
    s.gnd((25.0, y - 2.2))
    s.text(28.6, top - 12.4, "Outputs drive the LEDs", size=8.5, color=NOTE)
    s.text(28.6, top - 12.8, "through 330R (about 4 mA).", size=8.5, color=NOTE)
    s.text(28.6, top - 20.0, "The firmware enables the", size=8.5, color=NOTE)
    s.text(28.6, top - 20.4, "internal pull-up and", size=8.5, color=NOTE)
    s.text(28.6, top - 20.8, "debounces the button.", size=8.5, color=NOTE)
    # sound card jacks
    y = top - 24.0
    for ref, net, what in (
        ("J3", "SC_IN", "to sound card MIC/LINE IN"),
        ("J4", "SC_OUT", "from sound card OUT (headphone)"),
    ):
        jx = 24.2
        s.box(jx, y + 0.6, jx + 2.0, y - 2.4, color="black", lw=1.2)
        s.text(jx + 1.0, y + 0.95, ref, size=10.5, halign="center", valign="bottom")
        s.text(jx + 2.2, y + 0.25, "3.5 mm TRS", size=9)
        s.text(jx + 2.2, y - 0.2, what, size=8.5, color=NOTE)
        for i, contact in enumerate(("tip", "ring", "sleeve")):
            cy = y - i * 0.9
            s.text(jx + 0.15, cy, contact, size=8.5)
            s.wire((jx - 0.8, cy), (jx, cy))
        s.tag((jx - 0.8, y), net, right=False)
        s.text(jx - 0.9, y - 0.9, "n.c.", size=8.5, halign="right", color=NOTE)
        s.wire((jx - 0.8, y - 1.8), (jx - 1.3, y - 1.8), (jx - 1.3, y - 2.2))
        sc_gnd(s, (jx - 1.3, y - 2.2))
        y -= 4.0
    # SC_GND is GND on the board
    tie_y = top - 28.6
    s.wire((18.2, tie_y - 0.5), (18.2, tie_y), (20.4, tie_y), (20.4, tie_y - 0.5))
    sc_gnd(s, (18.2, tie_y - 0.5))
    s.gnd((20.4, tie_y - 0.5))
    s.text(17.0, tie_y + 1.1, "SC_GND (triangle) and GND", size=8.5, color=NOTE)
    s.text(17.0, tie_y + 0.7, "are tied on the board", size=8.5, color=NOTE)


SCHEMATIC_NOTES = (
    "Left of the red line everything carries the telephone line: 48-56 V DC on hook,",
    "ringing up to about 150 V rms on top (about 270 V peak), and surges.",
    "Only U1, U2 (optocouplers), U4 (photoMOS: LED Pi side, switch line side) and",
    "T1 (line transformer) cross the isolation barrier: use parts rated 1.5 kV or",
    "more and keep the gap under them free of copper. U3 switches the sound card's",
    "output onto T1's Pi-side winding; it is not part of the barrier.",
    "",
    "U4 takes the audio stage off the line while it rings: C4 and T1 resonate near",
    "92 Hz and would take watts from 50-68 Hz ringing (hw/README.md).",
    "",
    "TIP/RING polarity does not matter: the bridges and T1 work either way round.",
    "J1 and J2 are wired straight through: the phone stays on the line, and keeps",
    "working with the board unpowered.",
    "",
    "RING_SENSE: low while ringing.  HOOK_SENSE: high on hook, low off hook or",
    "with no line voltage.  TALK: high closes U3 while the notice or beep plays.",
    "The GPIO numbers are in the pin map. J5 is wired for line 1: a second",
    "board for line 2 is wired by hand to line 2's pins (pi-header.svg, wiring.md).",
    "",
    "Not a certified telecom device. See hw/wiring.md before connecting it.",
)


def schematic(signals: Sequence[Signal]) -> Sheet:
    s = Sheet()
    top, bottom = 4.6, -36.6
    s.box(-37.4, top, 0, bottom, color="none", fill=LINE_SIDE_FILL)
    s.box(0, top, 36.2, bottom, color="none", fill=PI_SIDE_FILL)
    s.text(-37.0, top + 1.6, "linerec line-interface board: one analog line", size=17)
    s.text(
        -37.0,
        top + 0.75,
        "Refs and values as in hw/spice and hw/README.md; J5 pins from "
        "hw/pinmap.toml. Drawn by hw/drawings/draw.py.",
        size=10,
        color=NOTE,
    )
    # isolation barrier
    s.wire((0, top), (0, bottom), color=BARRIER, lw=3.0, ls="--", zorder=1)
    s.text(0, top - 0.45, "ISOLATION BARRIER", size=12, halign="center", color=BARRIER)
    s.text(
        -0.6,
        top - 1.15,
        "\u25c0 LINE SIDE: hazardous voltages",
        size=10.5,
        halign="right",
        color=BARRIER,
    )
    s.text(0.6, top - 1.15, "PI SIDE: 3.3 V logic, GND \u25b6", size=10.5, color="#1f4f8f")
    s.text(-0.6, bottom + 0.45, "\u25c0 LINE SIDE", size=10.5, halign="right", color=BARRIER)
    s.text(0.6, bottom + 0.45, "PI SIDE \u25b6", size=10.5, color="#1f4f8f")
    protection(s, 2.8)
    ring_detector(s, -0.2)
    hook_sense(s, -11.0)
    audio(s, -21.8)
    board = [sig for sig in signals if sig.owner in ("board", "line 1")]
    pi_side(s, 2.8, board)
    y = -10.0
    s.text(-36.6, y, "NOTES", size=11.5)
    for line in SCHEMATIC_NOTES:
        y -= 0.5
        s.text(-36.6, y, line, size=9, color="black")
    return s


# --- the Pi header ------------------------------------------------------------------------

OWNER_COLOURS = {"board": BOARD, "line 1": LINE1, "line 2": LINE2}
EXTRA_COLOURS = ("#b9770e", "#117a65", "#7b241c")  # for a third or fourth line, if ever


def owner_colour(owner: str) -> str:
    if owner in OWNER_COLOURS:
        return OWNER_COLOURS[owner]
    number = int(owner.split()[-1]) if owner.split()[-1].isdigit() else 0
    return EXTRA_COLOURS[number % len(EXTRA_COLOURS)]


def pi_header(signals: Sequence[Signal]) -> Sheet:
    """The 40-pin header seen from above, pin 1 top left, with what each used pin carries."""
    s = Sheet()
    by_pin: dict[int, Signal] = {}
    for sig in signals:
        if sig.pin in by_pin:
            other = by_pin[sig.pin]
            raise SystemExit(
                f"pin map: GPIO{sig.gpio} is both {other.owner} {other.key} and "
                f"{sig.owner} {sig.key}"
            )
        by_pin[sig.pin] = sig
    pitch = 0.95
    top = 0.0
    s.text(-13.0, top + 3.3, "Raspberry Pi 40-pin header: what the linerec board uses", size=17)
    s.text(
        -13.0,
        top + 2.5,
        "Generated from hw/pinmap.toml, the pin map the firmware reads. "
        "GPIO numbers are BCM numbers, as in pinmap.toml and linerec.toml.",
        size=10,
        color=NOTE,
    )
    s.text(
        -13.0,
        top + 1.9,
        "Seen from above, pin 1 (square) top left: pin 1 is the corner pin "
        "at the end of the header nearest the microSD card, away from the USB ports.",
        size=10,
        color=NOTE,
    )
    # the header body
    rows = 20
    bottom = top - pitch * rows
    s.box(-1.0, top + 0.1, 1.0, bottom - 0.1, color="#333333", fill="#3a3a3a", lw=1.0)
    for pin in range(1, 41):
        row = (pin - 1) // 2
        left = pin % 2 == 1
        y = top - pitch * (row + 0.5)
        x = -0.45 if left else 0.45
        name = HEADER[pin]
        sig = by_pin.get(pin)
        if sig is not None:
            fill = owner_colour(sig.owner)
        elif name == "GND":
            fill = GROUND
        elif name == "3V3":
            fill = POWER if pin == 1 else "#f5b7b1"
        elif name == "5V":
            fill = "#f9e79f"
        else:
            fill = "white"
        if pin == 1:
            s.box(
                x - 0.22, y + 0.22, x + 0.22, y - 0.22, color="#d4ac0d", fill=fill, lw=1.4, zorder=3
            )
        else:
            s.add(elm.Dot(radius=0.2, color="#d4ac0d", fill=fill).at((x, y)).theta(0))
        side = -1 if left else 1
        align = "right" if left else "left"
        s.text(side * 1.2, y, str(pin), size=9.5, halign=align)
        label = name + (f" ({HEADER_ALT[pin]})" if pin in HEADER_ALT else "")
        used = sig is not None or name == "GND" or pin == 1
        s.text(side * 2.0, y, label, size=9.5, halign=align, color="black" if used else MUTED)
        tip = side * 4.9
        if sig is not None:
            colour = owner_colour(sig.owner)
            s.wire((side * 4.2, y), (tip, y), color=colour)
            s.tag((tip, y), f"{sig.owner}: {sig.net}", right=not left, color=colour)
        elif name == "GND":
            s.tag((tip, y), "GND", right=not left, color=GROUND)
            s.wire((side * 4.2, y), (tip, y), color=GROUND)
        elif pin == 1:
            s.tag((tip, y), "+3V3 to the board", right=not left, color=POWER)
            s.wire((side * 4.2, y), (tip, y), color=POWER)
        elif name == "5V":
            s.text(tip, y, "5 V: never to the board", size=9, halign=align, color="#9a7d0a")
    # the table: one row per pin-map entry
    y = bottom - 1.3
    s.text(-13.0, y, "From hw/pinmap.toml", size=12)
    y -= 0.75
    columns = (-13.0, -9.4, -5.2, 0.2)
    for x, head in zip(columns, ("who", "board net", "GPIO and header pin", "what"), strict=True):
        s.text(x, y, head, size=9.5, color=NOTE)
    for sig in signals:
        y -= 0.62
        colour = owner_colour(sig.owner)
        s.text(columns[0], y, sig.owner, size=10, color=colour)
        s.text(columns[1], y, sig.net, size=10, color=colour)
        s.text(columns[2], y, f"GPIO{sig.gpio} = pin {sig.pin}", size=10)
        s.text(columns[3], y, sig.what, size=10)
    y -= 0.62
    s.text(columns[0], y, "board", size=10, color=POWER)
    s.text(columns[1], y, "+3V3", size=10, color=POWER)
    s.text(columns[2], y, "3V3 = pin 1", size=10)
    s.text(columns[3], y, "supply for the pull-ups and the optos' outputs", size=10)
    y -= 0.62
    s.text(columns[0], y, "board", size=10)
    s.text(columns[1], y, "GND", size=10)
    s.text(columns[2], y, "pins " + ", ".join(map(str, GND_PINS)), size=10)
    s.text(columns[3], y, "any or all of them", size=10)
    y -= 1.0
    for line in (
        "Line 2: a second board wired by hand to these pins (not stacked), sharing 3V3 and GND. "
        "A site can move any pin in /etc/linerec/linerec.toml",
        "([[line]] hook_pin, ring_pin, led_pin, button_pin, talk_pin; [hardware] "
        "status_led_pin): then this picture no longer applies. Pins 27/28 are for HAT EEPROMs.",
    ):
        s.text(-13.0, y, line, size=9.5, color=NOTE)
        y -= 0.5
    return s


# --- pictures: the line, and the USB interface ----------------------------------------------

PAIR_GAP = 0.13  # half the spacing of the two wires of a drawn cord


def pair(s: Sheet, *points: Point, lw: float = 2.2) -> None:
    """A two-wire cord along an axis-parallel path: TIP green on the left of the way, RING red."""
    normals = []
    for a, b in itertools.pairwise(points):
        dx, dy = b[0] - a[0], b[1] - a[1]
        length = (dx * dx + dy * dy) ** 0.5
        normals.append((-dy / length, dx / length))
    for colour, sign in ((TIP_GREEN, 1), (RING_RED, -1)):
        shifted = []
        for k, p in enumerate(points):
            ends = [normals[i] for i in (k - 1, k) if 0 <= i < len(normals)]
            if len(ends) == 2 and abs(ends[0][0] * ends[1][0] + ends[0][1] * ends[1][1]) > 0.5:
                ends = ends[:1]  # straight on: one offset, not two
            ox = sum(n[0] for n in ends) * PAIR_GAP * sign
            oy = sum(n[1] for n in ends) * PAIR_GAP * sign
            shifted.append((p[0] + ox, p[1] + oy))
        s.wire(*shifted, color=colour, lw=lw)


def plug(s: Sheet, p: Point) -> None:
    """An RJ11 plug where a cord meets a jack."""
    s.box(
        p[0] - 0.22,
        p[1] + 0.3,
        p[0] + 0.22,
        p[1] - 0.3,
        color="#555555",
        fill="#d5d8dc",
        lw=1.0,
        zorder=3,
    )


def jack(s: Sheet, p: Point, name: str, *, left: bool = True) -> None:
    """A jack on a box edge; its name above it, inside the box."""
    s.box(
        p[0] - 0.3,
        p[1] + 0.4,
        p[0] + 0.3,
        p[1] - 0.4,
        color="black",
        fill="white",
        lw=1.2,
        zorder=2,
    )
    if left:
        s.text(p[0] + 0.4, p[1] + 0.62, name, size=9.5)
    else:
        s.text(p[0] - 0.5, p[1], name, size=10, halign="right")


def wall_socket(s: Sheet, x: float, y: float, lines: Sequence[str]) -> Point:
    """A wall socket (its jack on the right side); returns the jack."""
    s.box(x, y + 1.3, x + 2.6, y - 1.3, color="#555555", fill="#fbfcfc", lw=1.4)
    s.box(x + 1.7, y + 0.5, x + 2.3, y - 0.5, color="black", fill="white", lw=1.2)
    s.text(x + 0.2, y + 0.9, "wall", size=9.5)
    s.text(x + 0.2, y + 0.5, "socket", size=9.5)
    for i, line in enumerate(lines):
        s.text(x + 1.3, y - 1.75 - 0.42 * i, line, size=8.5, halign="center", color=NOTE)
    return (x + 2.3, y)


def telephone(s: Sheet, x: float, y: float) -> Point:
    """A desk telephone (its cord enters on the left); returns where the cord ends."""
    s.box(x, y + 0.9, x + 2.6, y - 0.9, color="#555555", fill="#fbfcfc", lw=1.4)
    s.add(elm.Arc2(k=0.35, lw=3).at((x + 0.4, y + 0.35)).to((x + 2.2, y + 0.35)))
    s.text(x + 1.3, y - 0.35, "telephone", size=9.5, halign="center")
    return (x, y)


def linerec_box(s: Sheet, x: float, y: float, *, j2_used: bool = True) -> tuple[Point, Point]:
    """The linerec board in its box, line side left; returns the points of J1 and J2."""
    w, h = 13.0, 6.0
    top, bottom = y + h / 2, y - h / 2
    bar = x + 7.4
    s.box(x, top, bar, bottom, color="none", fill=LINE_SIDE_FILL)
    s.box(bar, top, x + w, bottom, color="none", fill=PI_SIDE_FILL)
    s.box(x, top, x + w, bottom, color="black", lw=1.6)
    s.wire((bar, top), (bar, bottom), color=BARRIER, lw=2.4, ls="--", zorder=1)
    s.text(x + 0.2, top + 0.4, "linerec board (in its box)", size=10.5)
    j1, j2 = (x, y + 1.4), (x, y - 1.6)
    jack(s, j1, "J1 line")
    jack(s, j2, "J2 phone" if j2_used else "J2 (free)")
    # protection right behind J1, then the stages
    s.box(x + 3.0, y + 2.3, x + 5.6, y + 0.5, color=BARRIER, fill="white", lw=1.2)
    s.text(x + 4.3, y + 1.85, "protection", size=9, halign="center", color=BARRIER)
    s.text(x + 4.3, y + 1.35, "F1, F2 (PTC)", size=8.5, halign="center")
    s.text(x + 4.3, y + 0.9, "D1 (surge)", size=8.5, halign="center")
    pair(s, (j1[0] + 0.3, j1[1]), (x + 3.0, j1[1]), lw=1.6)
    pair(s, (j2[0] + 0.3, j2[1]), (x + 1.9, j2[1]), (x + 1.9, j1[1]), lw=1.6)
    green, red = (x + 1.9 - PAIR_GAP, j1[1] + PAIR_GAP), (x + 1.9 + PAIR_GAP, j1[1] - PAIR_GAP)
    s.wire((green[0], j1[1]), green, color=TIP_GREEN, lw=1.6)
    s.wire((red[0], j1[1]), red, color=RING_RED, lw=1.6)
    s.dot(green, TIP_GREEN)
    s.dot(red, RING_RED)
    s.text(x + 2.25, y - 0.1, "straight", size=8, color=NOTE)
    s.text(x + 2.25, y - 0.45, "through", size=8, color=NOTE)
    s.text(x + 4.9, y - 0.6, "ring detector", size=8.5, color=NOTE, halign="center")
    s.text(x + 4.9, y - 1.05, "hook sense", size=8.5, color=NOTE, halign="center")
    s.text(x + 4.9, y - 1.5, "audio", size=8.5, color=NOTE, halign="center")
    s.text(bar + 0.2, y - 2.5, "isolation: U1, U2, T1", size=8.5, color=BARRIER)
    s.text(bar - 0.15, bottom - 0.4, "line side", size=8.5, halign="right", color=BARRIER)
    s.text(bar + 0.15, bottom - 0.4, "Pi side", size=8.5, color="#1f4f8f")
    for i, (name, what) in enumerate(
        (("J5", "to the Pi header"), ("J3", "to sound card IN"), ("J4", "to sound card OUT"))
    ):
        jy = y + 1.6 - 1.5 * i
        jack(s, (x + w, jy), name, left=False)
        s.text(x + w + 0.5, jy, what, size=9)
    return j1, j2


def doubler(s: Sheet, x: float, y: float) -> tuple[Point, Point, Point]:
    """An RJ11 doubler (one plug, two jacks in parallel); returns plug, out 1, out 2."""
    s.box(x, y + 1.1, x + 1.8, y - 1.1, color="#555555", fill="#fbfcfc", lw=1.4)
    s.text(x + 0.9, y + 1.5, "RJ11 doubler", size=9, halign="center")
    s.text(x + 0.9, y - 1.5, "1 in, 2 out", size=8.5, halign="center", color=NOTE)
    return (x, y), (x + 1.8, y + 0.55), (x + 1.8, y - 0.55)


def terminal_block(s: Sheet, x: float, y: float) -> tuple[Point, Point]:
    """Two screw terminals, TIP above RING; returns both."""
    s.box(x, y + 1.6, x + 1.4, y - 1.6, color="#555555", fill="#f2f3f4", lw=1.4)
    tip, ring = (x + 0.7, y + 0.7), (x + 0.7, y - 0.7)
    for p, colour, name in ((tip, TIP_GREEN, "TIP"), (ring, RING_RED, "RING")):
        s.add(elm.Dot(radius=0.3, color="#555555", fill="white").at(p).theta(0))
        s.wire((p[0] - 0.2, p[1] - 0.2), (p[0] + 0.2, p[1] + 0.2), color="#555555", lw=1.2)
        s.text(p[0] + 0.4, p[1] + 0.4, name, size=8.5, color=colour)
    return tip, ring


def line_picture(signals: Sequence[Signal]) -> Sheet:
    del signals  # the line side has no GPIOs
    s = Sheet()
    s.text(0, 5.4, "Connecting the box to the telephone line: a parallel tap", size=17)
    s.text(
        0,
        4.6,
        "The phone stays on the line; the box listens beside it. Pick whichever of "
        "A, B or C fits the site. Green = TIP, red = RING (North American colours).",
        size=10,
        color=NOTE,
    )
    # A: a cord from the wall to J1, the phone's cord to J2
    y = -0.6
    s.text(0, y + 4.3, "A  Through the box: wall socket to J1, the phone to J2", size=12.5)
    j1, j2 = linerec_box(s, 9.0, y)
    sock = wall_socket(s, 0.5, j1[1], ("line from the exchange,", "a PBX port or an ATA"))
    pair(s, sock, j1)
    plug(s, (sock[0] + 0.35, sock[1]))
    plug(s, (j1[0] - 0.45, j1[1]))
    tel = telephone(s, 3.2, j2[1] - 0.3)
    pair(s, (tel[0] + 2.6, j2[1]), j2)
    plug(s, (j2[0] - 0.45, j2[1]))
    # B: a doubler at the wall
    y = -10.6
    s.text(
        0,
        y + 4.3,
        "B  RJ11 doubler at the wall socket: one jack to J1, one to the phone",
        size=12.5,
    )
    j1, _ = linerec_box(s, 9.0, y, j2_used=False)
    d_in, out1, out2 = doubler(s, 3.9, j1[1] - 0.55)
    sock = wall_socket(s, 0.3, d_in[1], ("line",))
    pair(s, sock, d_in)
    plug(s, (d_in[0] - 0.3, d_in[1]))
    pair(s, out1, j1)
    plug(s, (j1[0] - 0.45, j1[1]))
    plug(s, (out1[0] + 0.3, out1[1]))
    tel = telephone(s, 3.6, y - 3.0)
    pair(s, out2, (7.0, out2[1]), (7.0, tel[1] + 0.5), (tel[0] + 2.6, tel[1] + 0.5))
    plug(s, (out2[0] + 0.3, out2[1]))
    # C: splice at a terminal block
    y = -20.6
    s.text(
        0,
        y + 4.3,
        "C  Hard-wired line: the board's cord on the pair at a terminal block",
        size=12.5,
    )
    j1, _ = linerec_box(s, 9.0, y, j2_used=False)
    tip, ring = terminal_block(s, 2.6, j1[1] - 1.0)
    s.wire((0.3, tip[1]), (tip[0] - 0.3, tip[1]), color=TIP_GREEN, lw=2.2)
    s.wire((0.3, ring[1]), (ring[0] - 0.3, ring[1]), color=RING_RED, lw=2.2)
    s.text(0.3, tip[1] + 0.45, "line pair in", size=9)
    s.text(0.3, ring[1] - 0.5, "(exchange or PBX)", size=8.5, color=NOTE)
    s.wire((tip[0] + 0.3, tip[1]), (6.0, tip[1]), color=TIP_GREEN, lw=2.2)
    s.wire((ring[0] + 0.3, ring[1]), (6.0, ring[1]), color=RING_RED, lw=2.2)
    s.text(6.1, (tip[1] + ring[1]) / 2 + 0.2, "on to the", size=8.5, color=NOTE)
    s.text(6.1, (tip[1] + ring[1]) / 2 - 0.2, "phone", size=8.5, color=NOTE)
    up, down = tip[1] + 1.5, ring[1] - 1.5
    s.wire(
        (tip[0], tip[1] + 0.3),
        (tip[0], up),
        (7.7, up),
        (7.7, j1[1] + PAIR_GAP),
        (j1[0], j1[1] + PAIR_GAP),
        color=TIP_GREEN,
        lw=2.2,
    )
    s.wire(
        (ring[0], ring[1] - 0.3),
        (ring[0], down),
        (8.1, down),
        (8.1, j1[1] - PAIR_GAP),
        (j1[0], j1[1] - PAIR_GAP),
        color=RING_RED,
        lw=2.2,
    )
    plug(s, (j1[0] - 0.45, j1[1]))
    s.text(
        0.3, down - 0.6, "the board's cord: one RJ11 plug (J1), the other end", size=8.5, color=NOTE
    )
    s.text(
        0.3,
        down - 1.0,
        "cut; green and red (plug pins 4 and 3) on the terminals",
        size=8.5,
        color=NOTE,
    )
    # the RJ11 jack, front view
    x0, y0 = 27.5, 1.0
    s.text(x0, y0 + 1.4, "RJ11 (6P4C) jack, front view", size=12)
    s.box(x0, y0 + 0.6, x0 + 4.2, y0 - 2.6, color="black", fill="white", lw=1.6)
    s.box(x0 + 1.5, y0 - 2.6, x0 + 2.7, y0 - 3.1, color="black", fill="white", lw=1.6)
    colours = {
        2: ("#222222", "black"),
        3: (RING_RED, "red"),
        4: (TIP_GREEN, "green"),
        5: ("#d4ac0d", "yellow"),
    }
    for pin in range(1, 7):
        px = x0 + 0.6 + (pin - 1) * 0.6
        colour = colours.get(pin, ("#bbbbbb", ""))[0]
        s.wire((px, y0 + 0.3), (px, y0 - 0.7), color=colour, lw=3.0 if pin in (3, 4) else 1.5)
        s.text(px, y0 - 1.05, str(pin), size=9, halign="center")
    s.text(x0 + 2.1, y0 - 1.6, "3 = RING (red)", size=9.5, halign="center", color=RING_RED)
    s.text(x0 + 2.1, y0 - 2.05, "4 = TIP (green)", size=9.5, halign="center", color=TIP_GREEN)
    s.text(x0 + 4.5, y0 + 0.2, "The line is the centre pair,", size=9)
    s.text(x0 + 4.5, y0 - 0.2, "pins 3 and 4. Pins 2 and 5", size=9)
    s.text(x0 + 4.5, y0 - 0.6, "(black, yellow) carry a", size=9)
    s.text(x0 + 4.5, y0 - 1.0, "second line on some cords:", size=9)
    s.text(x0 + 4.5, y0 - 1.4, "the board does not use them.", size=9)
    notes = (
        ("Where the protection is", BARRIER),
        ("The building entry has the network's primary protector;", None),
        ("leave it in place. On the board, F1/F2 and D1 sit right", None),
        ("behind J1: J2 is wired straight to J1, so the phone", None),
        ("does not depend on the board (nor on its fuses).", None),
        ("", None),
        ("Polarity and colours", "black"),
        ("The board works with TIP and RING either way round", None),
        ("(diode bridges, transformer). Green/red is the North", None),
        ("American convention; elsewhere (UK, EU) sockets, plugs", None),
        ("and wire colours differ: find the line pair (about", None),
        ("48 V DC across it with all phones on hook), use a", None),
        ("country adapter or splice (C), and bring the pair to", None),
        ("J1 pins 3 and 4.", None),
        ("", None),
        ("Before you plug in", "black"),
        ("The box goes in parallel, never in series. Connect it", None),
        ("only where the network operator or the PBX owner", None),
        ("allows it. Ringing reaches about 150 V rms: handle", None),
        ("the pair as live. Read hw/wiring.md first.", None),
    )
    y = y0 - 4.4
    for text, colour in notes:
        if colour is not None:
            y -= 0.25
            s.text(x0, y, text, size=11.5, color=colour)
        else:
            s.text(x0, y, text, size=9.5)
        y -= 0.5
    return s


def nearest_gnd(pin: int) -> int:
    return min(GND_PINS, key=lambda g: (abs(g - pin), g))


USB_CONFIG = (
    "# /etc/linerec/linerec.toml",
    "[[line]]",
    'capture_device = "plughw:CARD=<name>,DEV=0"',
    "rate = 8000               # one the interface offers",
    'hook_source = "audio"     # no hook-sense wire',
    "silence_ends_call_s = 8",
    'consent = "notice"        # needs a playback path',
)

AUDIO_LIMITS = (
    "What deciding from the audio cannot do (firmware/linerec/dsp/linestate.py):",
    "\u2022 a call is seen when the first sound comes, up to half a second late",
    "\u2022 two people silent for longer than silence_ends_call_s end the recording;",
    "   when they speak again a new one begins (with the notice again)",
    "\u2022 most interfaces do not pass ringing, so every call looks outbound",
    "\u2022 a phone lifted and put down without a sound is not seen at all",
)


def usb_picture(signals: Sequence[Signal]) -> Sheet:
    s = Sheet()
    s.text(0, 4.6, "Without the board: a USB telephone interface", size=17)
    s.text(
        0,
        3.8,
        "The interface does the line side (isolation, protection, line "
        "coupling) and shows up on the Pi as a USB sound card.",
        size=10,
        color=NOTE,
    )
    s.text(
        0,
        3.3,
        "linerec then tells on hook from off hook by the audio alone: "
        'hook_source = "audio". No hook, ring or talk wires; the LEDs and the button '
        "are optional.",
        size=10,
        color=NOTE,
    )
    y = 0.0
    sock = wall_socket(s, 0.3, y, ("line from the exchange,", "a PBX port or an ATA"))
    # the interface
    ix = 5.2
    s.box(ix, y + 1.8, ix + 5.0, y - 1.8, color="black", fill="#fdf0ee", lw=1.6)
    s.text(ix + 2.5, y + 2.2, "USB telephone interface", size=11, halign="center")
    s.text(ix + 2.5, y + 0.3, "line side inside:", size=8.5, halign="center", color=NOTE)
    s.text(ix + 2.5, y - 0.1, "isolation, protection", size=8.5, halign="center", color=NOTE)
    s.text(ix + 2.5, y - 0.5, "= a USB sound card", size=8.5, halign="center", color=NOTE)
    line_in, phone_out = (ix, y), (ix, y - 1.2)
    jack(s, line_in, "LINE")
    s.box(
        ix - 0.3,
        phone_out[1] + 0.4,
        ix + 0.3,
        phone_out[1] - 0.4,
        color="black",
        fill="white",
        lw=1.2,
        zorder=2,
    )
    s.text(ix + 0.4, phone_out[1] - 0.3, "PHONE", size=9.5)
    pair(s, sock, line_in)
    plug(s, (sock[0] + 0.35, sock[1]))
    plug(s, (line_in[0] - 0.45, line_in[1]))
    tel = telephone(s, 0.3, y - 4.2)
    pair(s, (tel[0] + 2.6, tel[1] + 0.4), (4.0, tel[1] + 0.4), (4.0, phone_out[1]), phone_out)
    plug(s, (phone_out[0] - 0.45, phone_out[1]))
    s.text(
        3.1,
        y - 6.0,
        "no PHONE jack on the interface? an RJ11",
        size=8.5,
        halign="center",
        color=NOTE,
    )
    s.text(
        3.1,
        y - 6.4,
        "doubler at the wall socket (line.svg, B)",
        size=8.5,
        halign="center",
        color=NOTE,
    )
    # USB cable to the Pi
    usb_out = (ix + 5.0, y + 0.6)
    px, pw, ph = 13.0, 10.5, 9.0
    ptop = y + 2.0
    s.wire(usb_out, (px, usb_out[1]), color="#555555", lw=4.0)
    s.box(
        usb_out[0] - 0.1,
        usb_out[1] + 0.25,
        usb_out[0] + 0.35,
        usb_out[1] - 0.25,
        color="#555555",
        fill="#d5d8dc",
        lw=1.0,
        zorder=3,
    )
    s.text((usb_out[0] + px) / 2, usb_out[1] + 0.45, "USB cable", size=9, halign="center")
    s.box(px, ptop, px + pw, ptop - ph, color="#1e8449", fill="#eafaf1", lw=1.6)
    s.text(px + 0.3, ptop - 0.45, "Raspberry Pi", size=11)
    s.box(
        px - 0.15,
        usb_out[1] + 0.35,
        px + 0.6,
        usb_out[1] - 0.35,
        color="black",
        fill="#d5d8dc",
        lw=1.2,
        zorder=2,
    )
    s.text(px + 0.8, usb_out[1], "USB port", size=9)
    # optional LEDs and button on the header, from the pin map
    board = {sig.key: sig for sig in signals if sig.owner in ("board", "line 1")}
    s.text(
        px + 0.3,
        ptop - 2.7,
        "Optional, on the 40-pin header (pins from hw/pinmap.toml):",
        size=9,
        color=NOTE,
    )
    ry = ptop - 3.6
    parts = (
        ("status_led", "330R", "green status LED", elm.LED),
        ("recording_led", "330R", "red recording LED", elm.LED),
        ("button", "1k", "pause/opt-out button", elm.Button),
    )
    for key, value, what, kind in parts:
        sig = board.get(key)
        if sig is None:
            continue
        x = px + 0.3
        s.text(x, ry, f"GPIO{sig.gpio} (pin {sig.pin})", size=9.5)
        s.part(elm.Resistor, (x + 3.2, ry), (x + 5.0, ry), "", value, side="tb")
        s.wire((x + 2.9, ry), (x + 3.2, ry))
        s.part(kind, (x + 5.0, ry), (x + 6.5, ry), "", "")
        s.wire((x + 6.5, ry), (x + 6.8, ry))
        s.text(x + 6.9, ry, f"GND (pin {nearest_gnd(sig.pin)})", size=9.5)
        s.text(x + 3.2, ry + 0.62, what, size=8.5, color=NOTE)
        ry -= 1.6
    unused = [
        sig
        for sig in signals
        if sig.owner == "line 1" and sig.key in ("hook_sense", "ring_sense", "talk_switch")
    ]
    if unused:
        names = ", ".join(f"GPIO{sig.gpio}" for sig in unused)
        s.text(
            px + 0.3, ry + 0.3, f"Leave {names} (hook, ring, talk) unconnected.", size=9, color=NOTE
        )
    # the configuration
    cx, cy = 25.5, ptop
    s.text(cx, cy + 0.2, "Configuration", size=12)
    s.box(
        cx,
        cy - 0.3,
        cx + 12.6,
        cy - 0.6 - 0.55 * len(USB_CONFIG),
        color="#555555",
        fill="#f4f6f6",
        lw=1.0,
    )
    for i, line in enumerate(USB_CONFIG):
        s.text(cx + 0.3, cy - 0.75 - 0.55 * i, line, size=10, font="mono")
    ny = cy - 1.3 - 0.55 * len(USB_CONFIG)
    notes = (
        "Find the card's name with  arecord -L  (or arecord -l) and put it",
        "in capture_device; playback_device defaults to the same card.",
        "An interface that only listens cannot play the notice or the beep",
        'to the line: use it only where consent = "one-party" is lawful.',
        "Then run linerec selftest: its hook and ring checks only read the",
        "unconnected GPIOs here; the audio checks are the ones that count.",
    )
    for line in notes:
        s.text(cx, ny, line, size=9.5)
        ny -= 0.48
    ny -= 0.4
    for i, line in enumerate(AUDIO_LIMITS):
        s.text(cx, ny, line, size=9.5 if i else 10, color="black" if i else "#1f4f8f")
        ny -= 0.48
    return s


# --- output -------------------------------------------------------------------------------

DRAWINGS = {
    "schematic.svg": ("linerec line-interface board: schematic", schematic),
    "line.svg": ("linerec: connecting the box to the telephone line", line_picture),
    "pi-header.svg": ("linerec: Raspberry Pi header pins (from hw/pinmap.toml)", pi_header),
    "usb-interface.svg": ("linerec: a USB telephone interface instead of the board", usb_picture),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="directory (default: %(default)s)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    signals = load_signals()
    for name, (title, draw) in DRAWINGS.items():
        (args.out / name).write_bytes(svg_bytes(draw(signals), title))
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
