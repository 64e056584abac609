"""The board netlist and BOM (hw/board.py -> hw/linerec-board.net, hw/bom.csv).

- hw/board.py regenerates both committed files byte for byte (they cannot drift);
- every BOM line names a manufacturer part number and an alternative;
- J5 (the Pi header) carries the GPIOs of hw/pinmap.toml's first line and [board];
- every element of the SPICE stage subcircuits (hw/spice/*.cir) is on the board with the same
  value and the same connections, through the explicit node tables below.

Only the generator test needs skidl; the others read the committed files.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HW = ROOT / "hw"
SPICE = HW / "spice"
NETLIST = HW / "linerec-board.net"
BOM = HW / "bom.csv"

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


# ---- Reading the KiCad netlist ------------------------------------------------------------


def parse_sexp(text: str) -> list:
    stack: list[list] = [[]]
    for tok in re.findall(r'\(|\)|"(?:[^"\\]|\\.)*"|[^\s()]+', text):
        if tok == "(":
            stack.append([])
        elif tok == ")":
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(tok[1:-1].replace('\\"', '"') if tok.startswith('"') else tok)
    assert len(stack) == 1 and len(stack[0]) == 1, "unbalanced netlist"
    return stack[0][0]


def child(node: list, key: str) -> list:
    for item in node[1:]:
        if isinstance(item, list) and item and item[0] == key:
            return item
    raise KeyError(key)


def children(node: list, key: str) -> list[list]:
    return [item for item in node[1:] if isinstance(item, list) and item and item[0] == key]


@dataclass
class Comp:
    ref: str
    value: str
    footprint: str
    fields: dict[str, str]


@dataclass
class Board:
    comps: dict[str, Comp] = field(default_factory=dict)
    pin_net: dict[tuple[str, str], str] = field(default_factory=dict)

    def pins_on(self, ref: str) -> dict[str, str]:
        return {pin: net for (r, pin), net in self.pin_net.items() if r == ref}


def read_board(path: Path = NETLIST) -> Board:
    tree = parse_sexp(path.read_text(encoding="utf-8"))
    board = Board()
    for comp in children(child(tree, "components"), "comp"):
        fields = {}
        for fld in children(child(comp, "fields"), "field"):
            fields[child(fld, "name")[1]] = fld[2] if len(fld) > 2 else ""
        ref = child(comp, "ref")[1]
        board.comps[ref] = Comp(ref, child(comp, "value")[1], child(comp, "footprint")[1], fields)
    for net in children(child(tree, "nets"), "net"):
        name = child(net, "name")[1]
        for node in children(net, "node"):
            key = (child(node, "ref")[1], child(node, "pin")[1])
            assert key not in board.pin_net, f"pin {key} is on two nets"
            board.pin_net[key] = name
    return board


@pytest.fixture(scope="module")
def board() -> Board:
    return read_board()


def read_bom() -> list[dict[str, str]]:
    with BOM.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == BOM_COLUMNS
        return list(reader)


# ---- Values -------------------------------------------------------------------------------

_SCALE = {"f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "meg": 1e6, "g": 1e9}


def number(text: str) -> float:
    """SPICE-style value ('2.2u', '10k', '100Meg', '1.5') or a board value ('100R', '4.7k')."""
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[-+]?\d+)?)(meg|[fpnumkg])?(r|ohm|f|h)?", text.lower())
    if not m:
        raise ValueError(f"not a value: {text!r}")
    return float(m.group(1)) * _SCALE.get(m.group(2) or "", 1.0)


def test_number():
    assert number("2.2u") == pytest.approx(2.2e-6)
    assert number("1.5u") == pytest.approx(1.5e-6)
    assert number("10k") == number("10K") == 10e3
    assert number("100") == number("100R") == 100
    assert number("100Meg") == 1e8
    assert number("4.7k") == pytest.approx(4700)
    with pytest.raises(ValueError):
        number("{txr}")


# ---- The generator ------------------------------------------------------------------------


def test_board_py_reproduces_the_committed_files(tmp_path):
    # Not imported here: skidl leaves <script>.log/.erc files in the working directory.
    # skidl is a dev dependency: without it board.py fails, and so does this test.
    proc = subprocess.run(
        [sys.executable, str(HW / "board.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    # skidl's expected noise is filtered by board.py; anything left is a new warning.
    assert proc.stderr == "", f"hw/board.py printed warnings or errors:\n{proc.stderr}"
    for name in (NETLIST.name, BOM.name):
        fresh = (tmp_path / name).read_bytes()
        committed = (HW / name).read_bytes()
        tool = re.compile(rb'\(tool "[^"]*"\)')
        assert fresh == committed, (
            f"hw/{name} is not what hw/board.py generates: run `.venv/bin/python hw/board.py` "
            f"and commit the result (generator {tool.findall(fresh)[:1]}, "
            f"committed {tool.findall(committed)[:1]})"
        )


# ---- The BOM -------------------------------------------------------------------------------


def test_every_bom_line_has_a_part_number_and_an_alternative():
    for row in read_bom():
        for col in ("manufacturer", "mpn", "alt_manufacturer", "alt_mpn", "footprint"):
            assert row[col].strip(), f"{row['refs']}: no {col}"
        assert row["alt_mpn"] != row["mpn"], f"{row['refs']}: the alternative is the same part"


def test_bom_and_netlist_list_the_same_parts(board):
    seen: dict[str, dict[str, str]] = {}
    for row in read_bom():
        refs = row["refs"].split()
        assert int(row["qty"]) == len(refs), row["refs"]
        for ref in refs:
            assert ref not in seen, f"{ref} is on two BOM lines"
            seen[ref] = row
    assert set(seen) == set(board.comps)
    for ref, row in seen.items():
        comp = board.comps[ref]
        assert row["value"] == comp.value, ref
        assert row["footprint"] == comp.footprint, ref
        assert row["mpn"] == comp.fields["MPN"], ref
        assert row["alt_mpn"] == comp.fields["Alt_MPN"], ref


# Nets that carry line voltage (up to 56 V DC + 150 V rms ringing, 268 V peak).
LINE_NETS = {"TIP", "RING", "LT", "LR", "RD_N1", "RD_N2", "RD_N3"}
LINE_NETS |= {"HS_N1", "HS_N2", "AU_N1", "AU_N2", "AU_N3"}


def test_line_side_resistors_are_rated_for_the_line(board):
    rows = {ref: row for row in read_bom() for ref in row["refs"].split()}
    line_resistors = sorted(
        ref
        for (ref, _pin), net in board.pin_net.items()
        if ref.startswith("R") and net in LINE_NETS
    )
    assert set(line_resistors) >= {"R1", "R2", "R5", "R6", "R10", "R11"}
    for ref in line_resistors:
        rating = rows[ref]["rating/notes"]
        watts = re.search(r"([0-9.]+) W", rating)
        volts = re.search(r"([0-9]+) V", rating)
        assert watts and float(watts.group(1)) >= 0.5, f"{ref}: {rating!r}"
        assert volts and int(volts.group(1)) >= 350, f"{ref}: {rating!r}"


# ---- J5 against hw/pinmap.toml ------------------------------------------------------------

# Raspberry Pi 40-pin header: BCM GPIO number -> physical pin.
BCM_TO_HEADER_PIN = {
    0: 27, 1: 28, 2: 3, 3: 5, 4: 7, 5: 29, 6: 31, 7: 26, 8: 24, 9: 21, 10: 19, 11: 23,
    12: 32, 13: 33, 14: 8, 15: 10, 16: 36, 17: 11, 18: 12, 19: 35, 20: 38, 21: 40, 22: 15,
    23: 16, 24: 18, 25: 22, 26: 37, 27: 13,
}  # fmt: skip
HEADER_GND_PINS = {6, 9, 14, 20, 25, 30, 34, 39}

# pinmap.toml key -> board net. [board] keys, then the keys of each [[line]].
PINMAP_BOARD_NETS = {"status_led": "STATUS_LED"}
PINMAP_LINE_NETS = {
    "hook_sense": "HOOK_SENSE",
    "ring_sense": "RING_SENSE",
    "recording_led": "REC_LED",
    "button": "BUTTON",
    "talk_switch": "TALK",
}


def test_j5_carries_the_gpios_of_pinmap_line_1(board):
    pinmap = tomllib.loads((HW / "pinmap.toml").read_text(encoding="utf-8"))
    line1 = pinmap["line"][0]
    wanted: dict[str, int] = {}
    for section, table in ((pinmap["board"], PINMAP_BOARD_NETS), (line1, PINMAP_LINE_NETS)):
        for key, net in table.items():
            assert key in section, f"hw/pinmap.toml has no {key}, but the board has net {net}"
            wanted[net] = BCM_TO_HEADER_PIN[section[key]]
    j5 = board.pins_on("J5")
    for net, pin in wanted.items():
        on_net = sorted(int(p) for p, n in j5.items() if n == net)
        assert on_net == [pin], f"{net}: pinmap says header pin {pin}, J5 has {on_net}"
    assert j5["1"] == "+3V3"
    assert {int(p) for p, n in j5.items() if n == "GND"} == HEADER_GND_PINS
    used = set(wanted.values()) | HEADER_GND_PINS | {1}
    assert {int(p) for p in j5} == used, "J5 has pins on nets the pin map does not know"


# ---- The SPICE stages ---------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    prefix: str  # board net of local node n1 is prefix + "N1"
    ports: dict[str, str]  # subckt port -> board net


# Subcircuit -> how its nodes map to board nets.
STAGES = {
    "PROTECT": Stage("PR_", {"TIP": "TIP", "RING": "RING", "LT": "LT", "LR": "LR"}),
    "RINGDET": Stage(
        "RD_", {"TIP": "LT", "RING": "LR", "VDD": "+3V3", "GND": "GND", "OUT": "RING_SENSE"}
    ),
    "HOOKSENSE": Stage(
        "HS_", {"TIP": "LT", "RING": "LR", "VDD": "+3V3", "GND": "GND", "OUT": "HOOK_SENSE"}
    ),
    # SC_GND is tied to GND on the board (the sound card is powered by the Pi): one net.
    # RDCOL: U4 follows the ring detector's output.
    "AUDIO": Stage(
        "AU_",
        {
            "TIP": "LT",
            "RING": "LR",
            "VDD": "+3V3",
            "GND": "GND",
            "SC": "SC_IN",
            "SPK": "SC_OUT",
            "TALK": "TALK",
            "RDCOL": "RING_SENSE",
        },
    ),
}

# SPICE names that differ from the board ref (SPICE's first letter picks the element kind).
RENAMED = {
    "XU1": "U1",  # OPTO subcircuit instances
    "XU2": "U2",
    "XD1": "D1",  # TSPD subcircuit
    "RF1": "F1",  # PTCs, modelled by their cold resistance
    "RF2": "F2",
    "XU3": "U3",  # PHOTOMOS subcircuit instances
    "XU4": "U4",
    "XD16": "D16",  # bidirectional TVS subcircuits
    "XD17": "D17",
}

# Elements that model one board part together: T1 is RP/LP (primary), LS/RS (secondary) and
# the coupling KT1. Each winding is a resistor in series with an inductor whose first node is
# the dotted end; board pads 1/3 are T1's dotted ends.
TRANSFORMERS = {
    "T1": {"windings": [("RP", "LP", ("1", "2")), ("RS", "LS", ("3", "4"))], "coupling": "KT1"}
}

# Board parts that are deliberately not in any SPICE stage.
NOT_SIMULATED = {
    "J1": "line jack",
    "J2": "phone jack, straight through to J1",
    "J3": "sound card input jack",
    "J4": "sound card output jack",
    "J5": "Pi header",
    "R15": "REC LED resistor",
    "R16": "status LED resistor",
    "D14": "REC LED",
    "D15": "status LED",
    "R17": "button series resistor",
    "SW1": "button",
    "C5": "button filter",
}

# Device models (hw/spice/parts.lib) -> the board values they stand for. Zeners are matched
# by voltage: the model's BV against the part's nominal zener voltage.
MODEL_PARTS = {
    "DSIG": {"1N4007"},
    "QNPN": {"BC847"},
    "OPTO": {"LTV-817"},
    "TSPD": {"P3100SB"},
    "PHOTOMOS": {"AQY212EH", "AQY214EH"},
    "TVS13": {"SMBJ12CA"},
    "TVS335": {"SMBJ300CA"},
}
ZENER_VOLTS = {"1N4746A": 18.0, "1N4749A": 24.0, "BZX79-C5V1": 5.1}


@dataclass(frozen=True)
class Element:
    name: str
    nodes: tuple[str, ...]
    value: str  # value (R, C, L, K) or model / subcircuit name (D, Q, X)


@dataclass
class Subckt:
    name: str
    ports: tuple[str, ...]
    elements: dict[str, Element]


def spice_lines(path: Path) -> list[str]:
    """Logical lines: comments dropped, '+' continuations joined."""
    lines: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        text = re.split(r"\s;|\s\$\s", raw, maxsplit=1)[0].rstrip()
        if not text.strip() or text.lstrip().startswith("*"):
            continue
        if text.lstrip().startswith("+") and lines:
            lines[-1] += " " + text.lstrip()[1:]
        else:
            lines.append(text.strip())
    return lines


def read_subckts(paths: list[Path]) -> dict[str, Subckt]:
    subckts: dict[str, Subckt] = {}
    for path in paths:
        current: Subckt | None = None
        for line in spice_lines(path):
            words = [w for w in line.split() if "=" not in w]  # drop parameters (ctr=0.5)
            head = words[0].lower()
            if head == ".subckt":
                current = Subckt(words[1], tuple(words[2:]), {})
                subckts[current.name] = current
            elif head == ".ends":
                current = None
            elif current is not None and not head.startswith("."):
                name, kind = words[0], words[0][0].upper()
                if kind in "RCLD":
                    element = Element(name, tuple(words[1:3]), words[3])
                elif kind == "Q":
                    element = Element(name, tuple(words[1:4]), words[4])
                elif kind == "K":
                    element = Element(name, tuple(words[1:3]), words[3])
                elif kind == "X":
                    element = Element(name, tuple(words[1:-1]), words[-1])
                else:
                    raise AssertionError(f"{path.name}: no rule for element {line!r}")
                assert name not in current.elements, f"{name} twice in {current.name}"
                current.elements[name] = element
    return subckts


def model_bv(model: str) -> float:
    text = (SPICE / "parts.lib").read_text(encoding="utf-8")
    m = re.search(rf"^\.model\s+{model}\s+D\s*\(([^)]*)\)", text, re.M | re.I)
    assert m, f"no diode model {model} in parts.lib"
    bv = re.search(r"\bBV=([0-9.eE+-]+\w*)", m.group(1))
    assert bv, f"model {model} has no BV"
    return number(bv.group(1))


def sim_values(comp: Comp) -> dict[str, str]:
    """A board part's 'Sim' field: 'RP=60 LP=2 ...' -> {'RP': '60', 'LP': '2', ...}."""
    return dict(item.split("=", 1) for item in comp.fields.get("Sim", "").split())


def board_pads(element: Element) -> tuple[str, ...]:
    """Board pads of the part behind a SPICE element, in the element's node order."""
    kind = element.name[0].upper()
    if kind == "D":
        return ("2", "1")  # SPICE: anode, cathode; board: 1 = K, 2 = A
    if kind == "Q":
        return ("3", "1", "2")  # SPICE: C, B, E; SOT-23: 1 = B, 2 = E, 3 = C
    if kind == "X":
        # OPTO A K C E -> DIP-4 1 = A, 2 = K, 3 = E, 4 = C; PHOTOMOS A K P Q -> 1, 2, 3, 4;
        # TSPD and the TVS A B -> pads 1, 2.
        pads = {"OPTO": ("1", "2", "4", "3"), "PHOTOMOS": ("1", "2", "3", "4")}
        return pads.get(element.value, ("1", "2"))
    return ("1", "2")


def check_value(element: Element, comp: Comp) -> None:
    sim = sim_values(comp)
    if element.name in sim:  # a model element: its value is recorded on the board part
        spice, recorded = element.value, sim[element.name]
        if spice.startswith("{"):
            assert spice == recorded, f"{element.name}: SPICE {spice}, board Sim {recorded}"
        else:
            assert number(spice) == pytest.approx(number(recorded)), (
                f"{element.name}: SPICE {spice}, board {comp.ref} Sim {recorded}"
            )
        return
    kind = element.name[0].upper()
    if kind in "RC":
        assert number(element.value) == pytest.approx(number(comp.value)), (
            f"{element.name} = {element.value} in SPICE, {comp.value} on the board"
        )
    elif element.value.upper().startswith("DZ"):
        assert comp.value in ZENER_VOLTS, f"{comp.ref} {comp.value}: unknown zener voltage"
        assert model_bv(element.value) == pytest.approx(ZENER_VOLTS[comp.value]), (
            f"{element.name}: model {element.value} is not a {comp.value}"
        )
    else:
        assert comp.value in MODEL_PARTS[element.value], (
            f"{element.name}: model {element.value} stands for {MODEL_PARTS[element.value]}, "
            f"the board has {comp.value}"
        )


def board_net(stage: Stage, node: str) -> str:
    if node == "0":
        return "GND"
    return stage.ports.get(node, stage.prefix + node.upper())


def winding_ends(r: Element, inductor: Element) -> tuple[str, str]:
    """The outer nodes of a resistor + inductor winding, dotted end first."""
    (inner,) = set(r.nodes) & set(inductor.nodes)
    r_outer = next(n for n in r.nodes if n != inner)
    l_outer = next(n for n in inductor.nodes if n != inner)
    return (r_outer, l_outer) if inductor.nodes[0] == inner else (l_outer, r_outer)


# The stage netlists. hw/spice/parts.lib is not one of them: its OPTO (DL, VSENSE, BPT, RLEAK)
# TSPD (VA, DA, DB), PHOTOMOS and TVS subcircuits are device models, not board parts; the board parts are
# their instances XU1, XU2, XD1. A stage element of a kind not handled here (a V or B source,
# say) fails read_subckts, so it gets a mapping or an explicit exclusion, never silence.
STAGE_FILES = sorted(SPICE.glob("*.cir"))


@pytest.fixture(scope="module")
def subckts() -> dict[str, Subckt]:
    return read_subckts(STAGE_FILES)


def test_every_stage_subckt_has_a_node_table(subckts):
    assert set(subckts) == set(STAGES), "a stage subcircuit without a table here (or gone)"
    for name, sub in subckts.items():
        assert set(sub.ports) == set(STAGES[name].ports), f"{name} ports {sub.ports}"


@pytest.mark.parametrize("stage_name", sorted(STAGES))
def test_spice_stage_matches_the_board(stage_name, subckts, board):
    sub, stage = subckts[stage_name], STAGES[stage_name]
    model_elements = {
        name: ref
        for ref, t in TRANSFORMERS.items()
        for name in [t["coupling"], *(n for w in t["windings"] for n in w[:2])]
    }
    for element in sub.elements.values():
        if element.name in model_elements:
            continue  # checked as a whole below
        ref = RENAMED.get(element.name, element.name)
        assert ref in board.comps, f"{stage_name}: {element.name} has no board part {ref}"
        comp = board.comps[ref]
        check_value(element, comp)
        for node, pad in zip(element.nodes, board_pads(element), strict=True):
            assert board.pin_net.get((ref, pad)) == board_net(stage, node), (
                f"{stage_name}: {element.name} node {node} should be net "
                f"{board_net(stage, node)}, board {ref} pad {pad} is on "
                f"{board.pin_net.get((ref, pad))}"
            )
    for ref, t in TRANSFORMERS.items():
        names = {t["coupling"], *(n for w in t["windings"] for n in w[:2])}
        present = names & set(sub.elements)
        if not present:
            continue
        assert present == names, f"{stage_name}: {ref} model incomplete: {sorted(present)}"
        comp = board.comps[ref]
        for name in sorted(names):
            check_value(sub.elements[name], comp)
        coupling = sub.elements[t["coupling"]]
        assert set(coupling.nodes) == {w[1] for w in t["windings"]}, coupling
        for r_name, l_name, pads in t["windings"]:
            ends = winding_ends(sub.elements[r_name], sub.elements[l_name])
            for node, pad in zip(ends, pads, strict=True):
                assert board.pin_net.get((ref, pad)) == board_net(stage, node), (
                    f"{stage_name}: {ref} pad {pad} should be on {board_net(stage, node)}"
                )


def test_every_board_part_is_simulated_or_listed_as_not(subckts, board):
    simulated = {RENAMED.get(name, name) for sub in subckts.values() for name in sub.elements}
    model_elements = {
        name for t in TRANSFORMERS.values() for w in t["windings"] for name in w[:2]
    } | {t["coupling"] for t in TRANSFORMERS.values()}
    simulated = (simulated - model_elements) | set(TRANSFORMERS)
    assert simulated <= set(board.comps), (
        f"SPICE elements with no board part: {sorted(simulated - set(board.comps))}"
    )
    assert not simulated & set(NOT_SIMULATED), "listed as not simulated but it is"
    assert set(board.comps) == simulated | set(NOT_SIMULATED), (
        f"board parts neither in a SPICE stage nor in NOT_SIMULATED: "
        f"{sorted(set(board.comps) - simulated - set(NOT_SIMULATED))}"
    )
