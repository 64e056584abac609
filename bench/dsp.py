"""Line-signal analysis side by side with spandsp and multimon-ng: prints figures, asserts nothing.

    .venv/bin/python bench/dsp.py [--minutes 60] [--runs 3] [--compare OLD_CHECKOUT]

Needs Debian's libspandsp-dev and multimon-ng (`apt-get install libspandsp-dev multimon-ng`);
the small driver `bench/spandsp_driver.c` is compiled into a temporary directory.

Every decoder gets the same signals, generated here at 8 kHz (multimon-ng reads 22.05 kHz
raw, so it gets the same signal resampled). Rows:

* DTMF (Q.24 North American values): 160 digits per row (all 16 digits, 10 times), across
  frequency error, duration, twist, level and noise; "accept" rows count digits found,
  "reject" rows count digits that should not have been found; talk-off counts false digits on
  recorded speech (Debian's pocketsphinx-testdata and linerec's own clips, at three levels).
* Caller ID: 20 MDMF messages per row, Bell 202 and V.23, across level and noise; a message
  counts when its number is decoded right. multimon-ng decodes only V.23 (CLIPFSK).
* Speed: an hour of speech with DTMF sprinkled in: linerec's streaming DTMF receiver and the
  whole analyzer fed 20 ms frames; the whole analyzer fed 100 ms blocks with a pause of
  `PAUSE` before each, as the daemon feeds it (its thread sleeps between blocks, and code that
  wakes on a core others used meanwhile runs at about half speed: this counts the CPU of the
  analyzer's calls, not of the sleeps); and `analyze()` on the whole signal (CPU, one core,
  each in its own process). Then whole-file runs of `linerec analyze`, multimon-ng and the
  spandsp driver (wall and CPU time); all of them taking turns, medians of `--runs` (on a
  shared machine the CPU time is the steadier of the two). linerec runs from a copy of its
  package compiled to bytecode first, as a wheel install leaves it (with
  PYTHONDONTWRITEBYTECODE set, a checkout would compile itself from source on every run, some
  40 ms of a short file's).

With `--compare OLD_CHECKOUT`, linerec's speed is measured for an older checkout too (its
`firmware/` first on PYTHONPATH), in the same run, the two taking turns run by run; the
detection rows are this checkout's.
"""

from __future__ import annotations

import argparse
import difflib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# isort: off
import linerec  # noqa: F401 - first, as in `linerec run`: the package sets up numpy's threads
import numpy as np
# isort: on

from linerec.codec import RATE
from linerec.dsp.analyzer import LineAnalyzer
from linerec.dsp.callerid import CallerId
from linerec.dsp.dtmf import DtmfDetector
from linerec.resample import Resampler, to_int16
from linerec.resources import data_path
from linerec.sim.callerid import mdmf, modulate
from linerec.tones import amplitude, dtmf_pair, tone
from linerec.wav import read_mono_8k, write_wav

ALL = "123A456B789C*0#D"
PAUSE = 0.0005  # seconds between blocks in the paced speed figure
SPEECH = Path("/usr/share/pocketsphinx/test/data")


def dtmf_signal(
    *,
    on: float = 0.05,
    off: float = 0.05,
    deviation: float = 0.0,
    level: float = -10.0,
    twist: float = 0.0,
    snr: float | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    digits = ALL * 10
    parts = [np.zeros(RATE // 10)]
    for i, digit in enumerate(digits):
        low, high = dtmf_pair(digit)
        t = np.arange(round(on * RATE)) / RATE
        burst = amplitude(level) * np.sin(2 * np.pi * low * (1 + deviation) * t) + amplitude(
            level + twist
        ) * np.sin(2 * np.pi * high * (1 + deviation) * t + i)
        parts += [burst, np.zeros(round((off + 0.003 * (i % 7)) * RATE))]
    x = np.concatenate([*parts, np.zeros(RATE // 10)])
    if snr is not None:
        power = amplitude(level) ** 2 / 2
        x = x + np.random.default_rng(seed).normal(0, np.sqrt(power / 10 ** (snr / 10)), len(x))
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16), digits


def speech() -> np.ndarray:
    files = sorted(SPEECH.glob("librivox/*.wav")) + sorted(SPEECH.glob("cards/*.wav"))
    clips = [read_mono_8k(p) for p in files] + [
        read_mono_8k(data_path(f"speech/{n}.wav")) for n in ("caller", "office")
    ]
    return np.concatenate(clips)


def callerid_signal(
    standard: str, *, level: float = -13.0, snr: float | None = None
) -> tuple[np.ndarray, list[str]]:
    numbers = [f"555{1000000 + 7919 * i:07d}" for i in range(20)]
    parts = []
    for i, number in enumerate(numbers):
        message = mdmf(datetime="11251430", number=number, name=f"CALLER {i}")
        parts += [
            np.zeros(RATE // 2, np.int16),
            modulate(message, standard=standard, level_dbfs=level),
            np.zeros(RATE // 2, np.int16),
        ]
    x = np.concatenate(parts).astype(np.float64)
    if snr is not None:
        power = amplitude(level) ** 2 / 2
        x = x + np.random.default_rng(1).normal(0, np.sqrt(power / 10 ** (snr / 10)), len(x))
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16), numbers


# -- the decoders ------------------------------------------------------------------------------


def ours_dtmf(x: np.ndarray) -> str:
    detector = DtmfDetector()
    found = []
    for start in range(0, len(x), 160):
        found += detector.feed(x[start : start + 160])
    return "".join(d.digit for d in found + detector.flush())


def ours_callerid(x: np.ndarray) -> list[str]:
    analyzer = LineAnalyzer()
    heard = []
    for start in range(0, len(x), 160):
        heard += analyzer.feed(x[start : start + 160])
    heard += analyzer.flush()
    return [e.number for e in heard if isinstance(e, CallerId)]


class External:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.driver = workdir / "spandsp_driver"
        subprocess.run(
            [
                "gcc",
                "-O2",
                "-o",
                str(self.driver),
                str(Path(__file__).with_name("spandsp_driver.c")),
                "-lspandsp",
                "-lm",
            ],
            check=True,
        )

    def raw8k(self, x: np.ndarray) -> Path:
        path = self.workdir / "in8k.raw"
        x.astype("<i2").tofile(path)
        return path

    def raw22k(self, x: np.ndarray) -> Path:
        path = self.workdir / "in22k.raw"
        resampler = Resampler(RATE, 22050)  # a second at a time: bounded memory for an hour
        with open(path, "wb") as out:
            for start in range(0, len(x), RATE):
                piece = to_int16(resampler.process(x[start : start + RATE]))
                out.write(piece.astype("<i2").tobytes())
        return path

    def spandsp(self, mode: str, x: np.ndarray) -> list[str]:
        with open(self.raw8k(x), "rb") as source:
            out = subprocess.run(
                [str(self.driver), mode], stdin=source, capture_output=True, text=True, check=True
            )
        return out.stdout.split("\n")

    def multimon(self, demods: list[str], x: np.ndarray) -> list[str]:
        args = ["multimon-ng", "-t", "raw", "-q", "-c"] + [a for d in demods for a in ("-a", d)]
        return subprocess.run(
            [*args, str(self.raw22k(x))], capture_output=True, text=True, check=True
        ).stdout.split("\n")

    def spandsp_dtmf(self, x: np.ndarray) -> str:
        return "".join(
            line.split()[1] for line in self.spandsp("dtmf", x) if line.startswith("dtmf ")
        )

    def multimon_dtmf(self, x: np.ndarray) -> str:
        return "".join(
            line.split(": ")[1].strip()
            for line in self.multimon(["DTMF"], x)
            if line.startswith("DTMF: ")
        )

    def spandsp_callerid(self, standard: str, x: np.ndarray) -> list[str]:
        numbers = []
        for line in self.spandsp("class" if standard == "bell202" else "clip", x):
            if line.startswith("cid "):
                data = bytes.fromhex(line[4:])
                i = 2
                while i + 2 <= len(data) - 1:
                    code, length = data[i], data[i + 1]
                    if code in (0x02, 0x03):
                        numbers.append(data[i + 2 : i + 2 + length].decode("latin-1"))
                    i += 2 + length
        return numbers

    def multimon_callerid(self, x: np.ndarray) -> list[str]:
        numbers = []
        for line in self.multimon(["CLIPFSK"], x):
            if "CID=" in line:
                numbers.append(line.split("CID=")[1].split()[0])
        return numbers


def score(expected: str, found: str) -> tuple[int, int]:
    """(digits found in order, extra or wrong digits)."""
    matcher = difflib.SequenceMatcher(None, expected, found, autojunk=False)
    correct = sum(block.size for block in matcher.get_matching_blocks())
    return correct, len(found) - correct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compare", type=Path, help="an older checkout, timed beside this one")
    parser.add_argument("--speed-worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.speed_worker:
        speed_worker(args.speed_worker[0], Path(args.speed_worker[1]))
        return
    for tool in ("gcc", "multimon-ng"):
        if shutil.which(tool) is None:
            sys.exit(f"bench/dsp.py needs {tool} (apt-get install libspandsp-dev multimon-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        ext = External(Path(tmp))
        print(
            "DTMF, 160 digits per row: found (accept rows) or wrongly found (reject rows); "
            "+N = extra or wrong digits"
        )
        print(f"{'condition':34} {'expect':7} {'linerec':>12} {'spandsp':>12} {'multimon-ng':>12}")
        rows: list[tuple[str, str, dict[str, float]]] = [
            ("clean, 50 ms / 50 ms, -10 dBFS", "accept", {}),
            ("frequency +1.5 %", "accept", {"deviation": 0.015}),
            ("frequency -1.5 %", "accept", {"deviation": -0.015}),
            ("frequency +3.5 %", "reject", {"deviation": 0.035}),
            ("frequency -3.5 %", "reject", {"deviation": -0.035}),
            ("40 ms tone, 40 ms pause", "accept", {"on": 0.04, "off": 0.04}),
            ("23 ms tone", "reject", {"on": 0.023, "off": 0.04}),
            ("twist 8 dB (high group weaker)", "accept", {"twist": -8.0}),
            ("twist 4 dB (high group stronger)", "accept", {"twist": 4.0}),
            ("level -33 dBFS (about -30 dBm0)", "accept", {"level": -33.0}),
            (
                "-33 dBFS, twist 8 dB, +1.5 %",
                "accept",
                {"level": -33.0, "twist": -8.0, "deviation": 0.015},
            ),
            (
                "-33 dBFS, twist 8 dB, -1.5 %",
                "accept",
                {"level": -33.0, "twist": -8.0, "deviation": -0.015},
            ),
            ("-33 dBFS, twist 4 dB reverse", "accept", {"level": -33.0, "twist": 4.0}),
            ("level -50 dBFS (below the floor)", "reject", {"level": -50.0}),
            ("noise, 20 dB SNR", "accept", {"snr": 20.0}),
            ("noise, 15 dB SNR", "accept", {"snr": 15.0}),
            ("noise, 12 dB SNR", "accept", {"snr": 12.0}),
            ("noise, 10 dB SNR", "accept", {"snr": 10.0}),
            ("noise, 8 dB SNR", "accept", {"snr": 8.0}),
            ("noise, 6 dB SNR", "accept", {"snr": 6.0}),
        ]
        for name, expect, options in rows:
            x, digits = dtmf_signal(**options)  # type: ignore[arg-type]
            cells = []
            for decode in (ours_dtmf, ext.spandsp_dtmf, ext.multimon_dtmf):
                correct, extra = score(digits, decode(x))
                shown = correct if expect == "accept" else correct + extra
                cells.append(
                    f"{shown:>4}/160 +{extra}" if expect == "accept" else f"{shown:>4} found"
                )
            print(f"{name:34} {expect:7} {cells[0]:>12} {cells[1]:>12} {cells[2]:>12}")
        talk = speech()
        false = {"linerec": 0, "spandsp": 0, "multimon": 0}
        for gain in (0.5, 1.0, 2.0):
            y = np.clip(talk * gain, -32768, 32767).astype(np.int16)
            false["linerec"] += len(ours_dtmf(y))
            false["spandsp"] += len(ext.spandsp_dtmf(y))
            false["multimon"] += len(ext.multimon_dtmf(y))
        minutes = 3 * len(talk) / RATE / 60
        print(
            f"{'talk-off: false digits in speech':34} {'0':7} {false['linerec']:>12} "
            f"{false['spandsp']:>12} {false['multimon']:>12}   "
            f"({minutes:.1f} min of speech at 3 levels)"
        )

        print("\nCaller ID, 20 MDMF messages per row: numbers decoded right")
        print(f"{'condition':34} {'linerec':>12} {'spandsp':>12} {'multimon-ng':>12}")
        for standard in ("bell202", "v23"):
            for name, options in (
                ("clean, -13 dBFS", {}),
                ("level -40 dBFS", {"level": -40.0}),
                ("noise, 15 dB SNR", {"snr": 15.0}),
                ("noise, 10 dB SNR", {"snr": 10.0}),
                ("noise, 8 dB SNR", {"snr": 8.0}),
                ("noise, 6 dB SNR", {"snr": 6.0}),
            ):
                x, numbers = callerid_signal(standard, **options)  # type: ignore[arg-type]
                got = [
                    ours_callerid(x),
                    ext.spandsp_callerid(standard, x),
                    ext.multimon_callerid(x) if standard == "v23" else None,
                ]
                cells = ["n/a" if g is None else f"{sum(n in g for n in numbers)}/20" for g in got]
                print(f"{standard + ', ' + name:34} {cells[0]:>12} {cells[1]:>12} {cells[2]:>12}")

        print(
            f"\nSpeed, {args.minutes:g} min of speech with DTMF every 6 s "
            f"(load {os.getloadavg()[0]:.1f}):"
        )
        speed(ext, Path(tmp), args, speed_signal(args.minutes))


def speed(ext: External, tmp: Path, args: argparse.Namespace, hour: np.ndarray) -> None:
    seconds = len(hour) / RATE
    signal = tmp / "speed.npy"
    np.save(signal, hour)
    wav = tmp / "hour.wav"
    write_wav(wav, hour, rate=RATE)
    raw8, raw22 = ext.raw8k(hour), ext.raw22k(hour)
    trees: list[tuple[str, Path | None]] = [("this", None)]
    if args.compare:
        trees.insert(0, (args.compare.name or str(args.compare), args.compare.resolve()))
    # As installed: a wheel install compiles the package's bytecode, and this machine may set
    # PYTHONDONTWRITEBYTECODE (then every run of a checkout compiles linerec from source). Each
    # tree's package is copied and compiled once; every run below imports that copy.
    installed = {
        name: _compiled(tree, tmp / f"installed-{i}") for i, (name, tree) in enumerate(trees)
    }
    kinds = {
        "dtmf": ("DTMF receiver, 20 ms frames", 1000),
        "analyzer": ("whole analyzer (DTMF, caller ID, tones), 20 ms frames", 3000),
        "paced": ("whole analyzer, 100 ms blocks, a pause between (as in the daemon)", 0),
        "analyze": ("analyze() on the whole signal, in-process", 0),
    }
    multimon = ["multimon-ng", "-t", "raw", "-q", "-c", "-a", "DTMF"]
    commands = {
        "linerec analyze FILE.wav (all detectors)": [
            sys.executable,
            "-m",
            "linerec.cli",
            "analyze",
            str(wav),
        ],
        "multimon-ng -a DTMF -a CLIPFSK": [*multimon, "-a", "CLIPFSK", str(raw22)],
        "multimon-ng -a DTMF": [*multimon, str(raw22)],
        "spandsp DTMF driver": [str(ext.driver), "dtmf"],
    }
    ours = "linerec analyze FILE.wav (all detectors)"
    cpu: dict[tuple[str, str], list[float]] = {}
    wall: dict[tuple[str, str], list[float]] = {}
    loads = [os.getloadavg()[0]]
    for _ in range(args.runs):  # taking turns: a load that comes and goes falls on each alike
        for name, _ in trees:
            for kind in kinds:
                worker = [sys.executable, __file__, "--speed-worker", kind, str(signal)]
                out = subprocess.run(
                    worker, env=_env(installed[name]), capture_output=True, text=True, check=True
                )
                cpu.setdefault((name, kind), []).append(float(out.stdout))
        for label, command in commands.items():
            for name, _ in trees if label == ours else [("", None)]:
                stdin = raw8.read_bytes() if label.startswith("spandsp") else None
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                env = _env(installed[name]) if label == ours else _env(None)
                subprocess.run(command, input=stdin, env=env, capture_output=True, check=True)
                wall.setdefault((name, label), []).append(time.perf_counter() - start)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu.setdefault((name, label), []).append(
                    after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                )
        loads.append(os.getloadavg()[0])
    print(
        f"  load average during the runs: {min(loads):.1f}-{max(loads):.1f}; linerec's package "
        "compiled to bytecode first, as a wheel install leaves it"
    )
    median = {key: statistics.median(values) for key, values in cpu.items()}
    for name, _ in trees:
        tag = f"[{name}] " if len(trees) > 1 else ""
        for kind, (label, target) in kinds.items():
            goal = f" (target >= {target})" if target else ""
            print(
                f"  {tag}linerec {label}: x{seconds / median[(name, kind)]:6.0f} real time "
                f"on one core{goal}"
            )
    for label in commands:
        for name, _ in trees if label == ours else [("", None)]:
            tag = f"[{name}] " if name and len(trees) > 1 else ""
            w, c = statistics.median(wall[(name, label)]), median[(name, label)]
            print(
                f"  {tag + label:42} {w:6.2f} s wall: x{seconds / w:6.0f} real time, "
                f"{c:6.2f} s CPU: x{seconds / c:6.0f}"
            )
    theirs = "multimon-ng -a DTMF -a CLIPFSK"
    for name, _ in trees:
        tag = f"[{name}] " if len(trees) > 1 else ""
        w = statistics.median(wall[("", theirs)]) / statistics.median(wall[(name, ours)])
        c = median[("", theirs)] / median[(name, ours)]
        print(
            f"  {tag}linerec analyze is {w:.2f}x multimon-ng's speed by wall time, {c:.2f}x by "
            f"CPU time (target >= 1.5)"
        )


def _env(path: Path | None) -> dict[str, str]:
    """The environment of a run that imports linerec from `path` (None: as this one does)."""
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = str(path)
    return env


def _compiled(tree: Path | None, where: Path) -> Path:
    """A copy of the tree's `linerec` package (None: this checkout's) with its bytecode."""
    source = (tree or Path(__file__).resolve().parent.parent) / "firmware" / "linerec"
    shutil.copytree(source, where / "linerec", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(where)], check=True)
    return where


def speed_worker(kind: str, signal: Path) -> None:
    """CPU seconds of one way of analysing the signal, in this process (the tree on its
    PYTHONPATH)."""
    from linerec.dsp.analyzer import analyze

    x = np.load(signal)
    start = time.process_time()
    if kind == "analyze":
        analyze(x)
    elif kind == "paced":
        analyzer, block, spent = LineAnalyzer(), 5 * 160, 0.0
        for offset in range(0, len(x), block):
            time.sleep(PAUSE)
            begun = time.thread_time()
            analyzer.feed_block(x[offset : offset + block])
            spent += time.thread_time() - begun
        print(spent)
        return
    else:
        detector = DtmfDetector() if kind == "dtmf" else LineAnalyzer()
        for offset in range(0, len(x), 160):
            detector.feed(x[offset : offset + 160])
    print(time.process_time() - start)


def speed_signal(minutes: float) -> np.ndarray:
    talk = speech()
    total = round(minutes * 60 * RATE)
    x = np.resize(talk, total).astype(np.float64)
    for i, start in enumerate(range(3 * RATE, total - RATE, 6 * RATE)):
        burst = tone(dtmf_pair(ALL[i % 16]), 0.06, -10).astype(np.float64)
        x[start : start + len(burst)] += burst
    return np.clip(x, -32768, 32767).astype(np.int16)


if __name__ == "__main__":
    main()
