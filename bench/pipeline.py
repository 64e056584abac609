"""Benchmark of the recording path: prints figures, asserts nothing.

    .venv/bin/python bench/pipeline.py [--hours 1] [--runs 3] [--compare OLD_CHECKOUT]

With `--compare`, every figure is measured for an older checkout too (its `firmware/` first on
PYTHONPATH, the same bench code driving it), in the same run, side by side, the two taking
turns run by run: on a shared machine absolute figures move with the load, the ratios much
less. Each measurement runs in its own process, so RSS is the daemon's and not this script's.
Medians throughout (of `--runs` runs each, paced ones too). Every daemon runs as on the box:
with the `Environment=` of its tree's `systemd/linerec.service`, and its modules loaded from
bytecode (a cache per tree, filled by an unmeasured first run) rather than compiled at each
start. `--only-memory`: start-up, its CPU and the peak RSS alone (run as root, the start-up
also at the unit's `Nice=`, as systemd starts it on the box), and the same for a box with an
`[uplink]` (mqtts to a real mosquitto, up to its first health report).

1. Throughput: an hour of line audio (real recorded speech, looped) through the daemon's own
   path — capture thread reading the ALSA file plugin, bounded queue, main loop (hook sense,
   analysis, call policy, line output to ALSA playback, delay line), the encrypted ring store
   — as fast as the machine allows: audio seconds per CPU second (all threads), peak RSS.
2. Paced as a sound card paces it (capture sleeping between periods), one line and four
   lines at once: CPU per second of audio. At 50 times real time, and one line also in real
   time (`--real-seconds`), as on a Pi: there every wake-up of a thread comes after a real
   sleep, and the main loop's timed wake-ups (LEDs, watchdog) come 50 times as often per
   second of audio, which the fast-paced run does not see.
3. The floor: `arecord` (the same ALSA file plugin) piped into `sox` encoding µ-law, on the
   same hour: the CPU any recorder spends just moving and encoding the audio.
4. Resampling 48 kHz -> 8 kHz (a USB interface) per 20 ms period, and 8 -> 48 kHz for the
   line output; pass-band ripple (300-3400 Hz) and stop-band (what folds into 0-3.6 kHz)
   beside sox's `rate` (the anchor), and sox's own CPU per period on an hour.
5. Hook edge to first notice sample: the off-hook edge at 8 sub-frame offsets; latency from
   the debounced edge (edge + 30 ms) to the first notice sample in the line output (which
   runs one period behind capture, as on a device).
6. Start-up: `linerec run` with the simulated backend, from spawn to READY=1 on a real
   NOTIFY_SOCKET, and the peak RSS of that `linerec run` process itself (idle, no call).
7. Streaming (issue 15): the same daemon path with an `[uplink]` to a real mosquitto and a
   real collector (`linerec collector run`, its own process: its CPU is not the appliance's),
   one call paced at `--stream-speed` times real time, `[uplink] stream = true` and `false`
   run alternately in one run: the daemon process's CPU (all threads) per audio second during
   the call, and up to the collector's signed ack of the whole recording (streaming sends
   during the call what the sealed upload would send after it). Medians, and on/off ratios.
   The bytes the stream skipped ahead over are printed: a stream that skipped would have done
   less work than a live one.

Targets (issue 19): >= x1000 real time flat out; <= 1.5 ms CPU per second of audio paced;
four lines <= 4x one line; resampling <= 0.05 ms per period; notice <= 30 ms after debounce;
start-up <= 1 s busy; peak RSS <= 45 MB. Issue 15: streaming adds <= 20 % CPU.
"""

from __future__ import annotations

# subprocess, statistics, shutil and tempfile are imported in the functions that use them, all
# on this side: the workers measured (their peak RSS is the daemon's figure) must carry only
# what the daemon loads, not 1.7 MB of the bench's own modules.
import argparse
import json
import os
import resource
import socket
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

# isort: off
import linerec  # noqa: F401 - first, as in `linerec run`: the package sets up numpy's threads
import numpy as np
# isort: on

from linerec.codec import RATE

try:
    from linerec.cli import Parser
except ImportError:  # an older tree, measured beside this one: argparse's own
    Parser = argparse.ArgumentParser  # type: ignore[misc,assignment]

HERE = Path(__file__).resolve()


def hour_call(hours: float, line: str = "line1") -> str:
    """A one-party call of `hours`, speech alternating as in a conversation."""
    steps = ["[[call]]", f'line = "{line}"', 'consent = "one-party"']
    steps += ["[[call.step]]", "off_hook = true"]
    total, clips = 0.0, (("caller", 7.1), ("office", 5.3))
    i = 0
    while total < hours * 3600:
        name, seconds = clips[i % 2]
        steps += ["[[call.step]]", f'say = "{name}"', "[[call.step]]", "wait = 0.4"]
        total += seconds + 0.4
        i += 1
    steps += ["[[call.step]]", "on_hook = true"]
    return "\n".join(steps) + "\n"


# -- workers: each runs in its own process, against the tree on its PYTHONPATH ----------------


def worker(
    call_file: Path, store: Path, speed: float, lines: int, uplink: list[str] | None = None
) -> None:
    """One throughput run; prints a JSON line. The simulated lines are set up first (their
    audio written to the files the ALSA plugin reads); the clock runs from the daemon's start
    to its orderly stop. With `uplink` (broker URL, collector key, device id, "on"/"off"):
    see stream_worker."""
    import threading

    from linerec.daemon.backends import open_sim_backend
    from linerec.daemon.recorder import build_recorder
    from linerec.daemon.simulate import default_config, demo_keys
    from linerec.sim.callfile import load_call_file

    names = [f"line{i + 1}" for i in range(lines)]
    try:
        config = default_config(names, store, dict.fromkeys(names, "one-party"))
    except Exception as exc:  # an older tree that cannot simulate this many lines
        print(json.dumps({"error": str(exc)}))
        return
    calls = load_call_file(call_file)
    config, backend = open_sim_backend(config, calls, speed=speed, echo=False)
    sealed = []

    def emit(event: object) -> None:
        if getattr(event, "name", "") == "recording_sealed":
            sealed.append(event)

    _, public = demo_keys(store)
    if uplink is not None:
        stream_worker(config, backend, uplink, sealed, emit)
        return
    recorder = build_recorder(config, backend, emit=emit, recipients=[public])
    end = max(backend.script_end(name) for name in names) + 1.5
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    recorder.run(threading.Event(), until=end)
    cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start_wall
    audio = sum(e.duration for e in sealed)  # type: ignore[attr-defined]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"audio": audio, "cpu": cpu, "wall": wall, "rss_mb": rss_mb}))


def stream_worker(
    config: Any,
    backend: Any,
    uplink: list[str],
    sealed: list[Any],
    emit: Callable[[object], None],
) -> None:
    """The daemon with an [uplink]: CPU of the call, and up to the collector's ack of it."""
    import dataclasses
    import threading

    from linerec.broker import Broker
    from linerec.config import UplinkConfig
    from linerec.daemon.recorder import build_recorder

    url, collector_key, device, mode = uplink
    settings = UplinkConfig(
        broker=Broker.parse(url, allow_plaintext=True),
        url=url,
        device_id=device,
        collector=Path(collector_key),
        ca=None,
        cert=None,
        key=None,
        stream=mode == "on",
    )
    config = dataclasses.replace(config, device_id=device, uplink=settings)
    # Sealed to the collector's key, as on a site (the collector indexes what it can open).
    recorder = build_recorder(config, backend, emit=emit, recipients=[Path(collector_key)])
    assert recorder.uplink is not None
    up = recorder.uplink
    names = [line.name for line in config.lines]
    end = max(backend.script_end(name) for name in names) + 1.5
    up.start()
    deadline = time.monotonic() + 30
    while not up.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    start_cpu, start_threads = time.process_time(), thread_cpu()
    recorder.daemon.start()
    try:
        recorder.daemon.run(threading.Event(), until=end)
        threads = thread_cpu()  # before the capture threads stop
    finally:
        recorder.daemon.shutdown()
    call_cpu = time.process_time() - start_cpu
    # The audio path: the main loop (analysis, policy, delay line, store), the capture threads
    # and the store's sync thread. The uplink's own threads (sender, paho's, the store writer
    # that checks acks) are the rest.
    audio_path = sum(
        cpu - start_threads.get(name, 0.0)
        for name, cpu in threads.items()
        if name in ("MainThread", "store-sync") or name.startswith("capture-")
    )
    deadline = time.monotonic() + 120
    while recorder.store.sealed() and time.monotonic() < deadline:  # until acknowledged
        time.sleep(0.01)
    delivered = not recorder.store.sealed()
    total_cpu = time.process_time() - start_cpu
    up.stop()
    audio = sum(e.duration for e in sealed)
    print(
        json.dumps(
            {
                "audio": audio,
                "call_cpu": call_cpu,
                "audio_path_cpu": audio_path,
                "threads": {  # paho's thread is named after its client id
                    name.split("-linerec-")[0]: cpu - start_threads.get(name, 0.0)
                    for name, cpu in threads.items()
                },
                "total_cpu": total_cpu,
                "delivered": delivered,
                "skipped": up.streams.skipped,
            }
        )
    )


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of this process, by name (Linux)."""
    import threading

    ticks = os.sysconf("SC_CLK_TCK")
    cpu = {}
    for thread in threading.enumerate():
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # from field 3 (state) on
        cpu[thread.name] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return cpu


def resample_worker() -> None:
    """Median time per 20 ms period of the Resampler, both directions; prints a JSON line."""
    import statistics

    from linerec.resample import Resampler

    rng = np.random.default_rng(1)
    out = {}
    for name, rate_in, rate_out in (("down", 48000, RATE), ("up", RATE, 48000)):
        resampler = Resampler(rate_in, rate_out)
        period = rng.normal(0, 3000, rate_in // 50)
        times = []
        for _ in range(7):
            start = time.process_time()
            for _ in range(500):
                resampler.process(period)
            times.append((time.process_time() - start) / 500)
        out[name] = statistics.median(times)
    print(json.dumps(out))


def latency_worker() -> None:
    import tempfile

    from linerec.daemon.simulate import simulate
    from linerec.resources import data_path
    from linerec.wav import read_wav

    notice = read_wav(data_path("notice-en.wav")).mono
    first_sound = int(np.flatnonzero(notice)[0])
    latencies = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(8):
            edge = 1.0 + k * 0.0025  # edges across a 20 ms period
            call = Path(tmp) / f"c{k}.toml"
            call.write_text(
                f"[[call]]\n[[call.step]]\nat = {edge}\noff_hook = true\n"
                "[[call.step]]\nwait = 1.0\n[[call.step]]\non_hook = true\n"
            )
            sim = simulate([call], config=None, store_dir=Path(tmp) / f"s{k}", emit=lambda e: None)
            line_out = np.fromfile(sim.backend.line_out("line1"), dtype="<i2")
            first = int(np.flatnonzero(line_out)[0]) - first_sound  # where the notice began
            debounce = sim.config.lines[0].hook_debounce
            latencies.append(first / RATE - (edge + debounce))
    print(json.dumps(latencies))


# -- driving them --------------------------------------------------------------------------


def unit_environment(tree: Path | None) -> dict[str, str]:
    """The `Environment=` of the tree's systemd unit: the daemon runs with it on the box, so
    the daemon measured here does too."""
    unit = (tree or HERE.parents[1]) / "systemd" / "linerec.service"
    lines = unit.read_text().splitlines() if unit.exists() else []
    settings = [
        line.removeprefix("Environment=") for line in lines if line.startswith("Environment=")
    ]
    return dict(setting.split("=", 1) for setting in settings)  # type: ignore[misc]


def unit_nice(tree: Path | None) -> int:
    """The `Nice=` of the tree's systemd unit (0 if it sets none)."""
    unit = (tree or HERE.parents[1]) / "systemd" / "linerec.service"
    lines = unit.read_text().splitlines() if unit.exists() else []
    return next((int(line.removeprefix("Nice=")) for line in lines if line.startswith("Nice=")), 0)


def _env(tree: Path | None) -> dict[str, str]:
    env = dict(os.environ, **unit_environment(tree))
    if tree is not None:
        env["PYTHONPATH"] = str(tree / "firmware")
    # As installed on the box, modules load from bytecode rather than being compiled at every
    # start (where the environment says PYTHONDONTWRITEBYTECODE): each tree its own cache.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache(tree))
    return env


def pycache(tree: Path | None) -> Path:
    import tempfile

    where = str(tree or HERE.parents[1]).encode()
    return Path(tempfile.gettempdir()) / f"linerec-bench-pycache-{zlib.crc32(where):08x}"


def warm_up(trees: list[tuple[str, Path | None]]) -> None:
    """One start and one short run per tree, unmeasured: its bytecode cache is then filled."""
    for _, tree in trees:
        startup(tree, 1)
        run_calls(tree, 0.01, 1, 0.0)


def _json(tree: Path | None, *args: str) -> Any:
    import subprocess

    out = subprocess.run(
        [sys.executable, str(HERE), *args],
        capture_output=True,
        text=True,
        check=True,
        env=_env(tree),
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_calls(tree: Path | None, hours: float, lines: int, speed: float) -> dict[str, float]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        call = Path(tmp) / "calls.toml"
        call.write_text("".join(hour_call(hours, f"line{i + 1}") for i in range(lines)))
        store = Path(tmp) / "store"
        return _json(  # type: ignore[no-any-return]
            tree, "--worker", str(call), str(store), "--speed", str(speed), "--lines", str(lines)
        )


Run = tuple[float, float, float, float, float]


def startup(tree: Path | None, runs: int, nice: int = 0) -> list[Run]:
    """(seconds to READY=1, peak RSS in MB up to the stop, and of the RSS at READY=1 the MB in
    mapped files — the interpreter, numpy's and cryptography's libraries — and in anonymous
    memory, the Python objects; the CPU seconds of the whole run, start to READY=1 and the stop)
    of `linerec run` itself, idle, per run; at `nice` (the unit's Nice=, as on the box)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        from linerec.store.keys import keygen

        config = Path(tmp) / "linerec.toml"
        (Path(tmp) / "idle.toml").write_text("[[call]]\n[[call.step]]\nwait = 1.0\n")
        _, public = keygen(Path(tmp) / "keys")
        config.write_text(
            f'[hardware]\nbackend = "sim"\n[store]\ndir = "{tmp}/ring"\n'
            f'recipients = ["{public}"]\n[sim]\ncalls = ["idle.toml"]\n[[line]]\n'
        )
        return [measured_run(tree, config, nice=nice) for _ in range(runs)]


def measured_run(
    tree: Path | None,
    config: Path,
    nice: int = 0,
    then: Callable[[], None] = lambda: None,
) -> Run:
    """One `linerec run --config config` (see startup), stopped at READY=1 or, with `then`,
    once `then` returns (its RSS at READY=1 still). The peak is the process's own high-water
    mark before the stop (VmHWM): a child's ru_maxrss starts from its parent's RSS at the
    spawn, and this process, once it has set up a site for the uplink, is larger than the
    daemon."""
    import subprocess

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        path = config.parent / f".notify-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind(str(path))
        sock.settimeout(30)
        env = dict(_env(tree), NOTIFY_SOCKET=str(path))
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "linerec.cli", "run", "--config", str(config)],
            env=env,
            stderr=subprocess.DEVNULL,
            preexec_fn=(lambda: os.nice(nice)) if nice else None,
        )
        while b"READY=1" not in sock.recv(4096):
            pass
        ready = time.perf_counter() - start
        kinds = dict(
            line.split(":", 1) for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
        )
        then()
        peak = dict(
            line.split(":", 1) for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
        )["VmHWM"]
        proc.terminate()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        path.unlink()
    file_mb, anon_mb, peak_mb = (
        int(x.split()[0]) / 1024 for x in (kinds["RssFile"], kinds["RssAnon"], peak)
    )
    cpu = usage.ru_utime + usage.ru_stime
    return ready, peak_mb, file_mb, anon_mb, cpu


def uplink_startup(trees: list[tuple[str, Path | None]], runs: int) -> dict[str, list[Run]]:
    """`linerec run` as a box with an `[uplink]` runs it: mqtts with its client certificate to
    a real mosquitto set up as `linerec collector enroll` sets a site up (tests/enrolled.py),
    stopped once its first health telemetry has arrived (connected, the TLS handshake done,
    its certificate's expiry read), the trees taking turns."""
    import tempfile
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    sys.path.insert(0, str(HERE.parents[1] / "tests"))
    from enrolled import TlsBroker, enrol_site

    results: dict[str, list[Run]] = {name: [] for name, _ in trees}
    healthy = threading.Event()
    with tempfile.TemporaryDirectory() as tmp:
        site = enrol_site(Path(tmp))
        broker = TlsBroker(site).start()
        watcher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        watcher.tls_set(
            ca_certs=str(site.site / "ca.crt"),
            certfile=str(site.site / "linerec-collector.crt"),
            keyfile=str(site.site / "linerec-collector.key"),
        )
        watcher.on_message = lambda c, u, message: message.retain or healthy.set()
        watcher.connect("127.0.0.1", site.port)
        watcher.subscribe("linerec/v1/box1/health")
        watcher.loop_start()

        def first_health() -> None:
            if not healthy.wait(30):
                raise RuntimeError("no health telemetry from the box in 30 s")

        try:
            for run in range(-1, runs):  # the first unmeasured: the uplink's bytecode cached
                for name, tree in trees:
                    healthy.clear()
                    directory = Path(tmp) / f"{name}{run}"
                    directory.mkdir()
                    config = site.sim_box_config("box1", directory)
                    measured = measured_run(tree, config, then=first_health)
                    if run >= 0:
                        results[name].append(measured)
        finally:
            watcher.loop_stop()
            watcher.disconnect()
            broker.stop()
    return results


def streaming_cost(
    tree: Path | None, seconds: float, speed: float, runs: int
) -> dict[str, list[dict[str, Any]]]:
    """Streaming on and off, alternately, against one mosquitto and one collector process."""
    import subprocess
    import tempfile

    sys.path.insert(0, str(HERE.parents[1] / "tests"))
    from broker import Mosquitto
    from linerec.store.keys import keygen

    results: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        keygen(root / "keys")
        broker = Mosquitto(root).start()
        (root / "collector.toml").write_text(
            f'[collector]\nbroker = "{broker.url}"\nallow_plaintext = true\n'
            'data_dir = "central"\nkey = "keys/collector.key"\n'
        )
        collector = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "linerec.cli",
                "collector",
                "run",
                "--config",
                str(root / "collector.toml"),
            ],
            env=_env(tree),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            call = root / "call.toml"
            call.write_text(hour_call(seconds / 3600))
            for run in range(runs):
                for mode in ("on", "off") if run % 2 == 0 else ("off", "on"):
                    results[mode].append(
                        _json(
                            tree,
                            "--worker",
                            str(call),
                            str(root / f"store-{mode}-{run}"),
                            "--speed",
                            str(speed),
                            "--uplink",
                            broker.url,
                            str(root / "keys" / "collector.pub"),
                            f"bench-{mode}-{run}",
                            mode,
                        )
                    )
        finally:
            collector.terminate()
            collector.wait(20)
            broker.stop()
    return results


def floor_arecord_sox(hours: float) -> float | None:
    """CPU seconds per audio second of `arecord | sox` (µ-law WAV) on the same audio."""
    import shutil
    import subprocess
    import tempfile

    if shutil.which("arecord") is None or shutil.which("sox") is None:
        return None
    from linerec.resources import data_path
    from linerec.wav import read_mono_8k

    speech = np.concatenate(
        [read_mono_8k(data_path(f"speech/{n}.wav")) for n in ("caller", "office")]
    )
    samples = round(hours * 3600 * RATE)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "in.raw"
        np.resize(speech, samples).astype("<i2").tofile(raw)
        conf = Path(tmp) / "asound.conf"
        conf.write_text(
            f'pcm.hour {{\n  type file\n  slave.pcm {{ type null }}\n  file "/dev/null"\n'
            f'  infile "{raw}"\n  format "raw"\n}}\n'
        )
        env = dict(os.environ, ALSA_CONFIG_PATH=str(conf))
        pipeline = (
            f"arecord -q -D hour -f S16_LE -r {RATE} -c 1 -t raw -s {samples} "
            f"| sox -t raw -r {RATE} -e signed -b 16 -c 1 - -t wav -e u-law {tmp}/out.wav"
        )
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(["sh", "-c", pipeline], env=env, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu / (samples / RATE)


def resample_quality() -> dict[str, tuple[float, float]]:
    """(pass-band ripple dB, worst stop-band gain dB) of 48 -> 8 kHz: ours and sox's."""
    import subprocess

    from linerec.resample import Resampler

    rate = 48000
    passband = np.arange(300, 3401, 100)
    stopband = np.arange(4400, 23901, 250)  # what would fold into 0-3.6 kHz
    t = np.arange(rate) / rate

    def gains(resample: Callable[[np.ndarray], np.ndarray], freqs: np.ndarray) -> np.ndarray:
        out = []
        for f in freqs:
            x = 0.3 * np.sin(2 * np.pi * f * t)  # sox reads floats as -1..1
            y = resample(x)[len(x) // 6 // 4 : -len(x) // 6 // 4]
            out.append(20 * np.log10(max(float(np.std(y)), 1e-9) / float(np.std(x))))
        return np.array(out)

    def ours(x: np.ndarray) -> np.ndarray:
        return Resampler(rate, RATE).process(x)

    def sox(x: np.ndarray) -> np.ndarray:
        return np.frombuffer(
            subprocess.run(
                [
                    "sox",
                    "-t",
                    "raw",
                    "-r",
                    str(rate),
                    "-e",
                    "floating-point",
                    "-b",
                    "32",
                    "-c",
                    "1",
                    "-",
                    "-t",
                    "raw",
                    "-e",
                    "floating-point",
                    "-b",
                    "32",
                    "-",
                    "rate",
                    str(RATE),
                ],
                input=x.astype("<f4").tobytes(),
                capture_output=True,
                check=True,
            ).stdout,
            dtype="<f4",
        ).astype(np.float64)

    result = {}
    for name, resample in (("linerec", ours), ("sox rate", sox)):
        p = gains(resample, passband)
        result[name] = (float(p.max() - p.min()), float(gains(resample, stopband).max()))
    return result


def sox_resample_cpu() -> float:
    """sox's CPU per 20 ms period resampling an hour of 48 kHz audio (int16 in and out)."""
    import subprocess
    import tempfile

    seconds = 3600
    x = np.random.default_rng(3).normal(0, 3000, 48000 * 60).astype("<i2").tobytes()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "in.raw"
        with open(raw, "wb") as out:
            for _ in range(seconds // 60):
                out.write(x)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [
                "sox",
                "-t",
                "raw",
                "-r",
                "48000",
                "-e",
                "signed",
                "-b",
                "16",
                "-c",
                "1",
                str(raw),
                "-t",
                "raw",
                f"{tmp}/out.raw",
                "rate",
                "8000",
            ],
            check=True,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu / (seconds * 50)


def streaming_figures(trees: list[tuple[str, Path | None]], args: argparse.Namespace) -> None:
    import statistics

    for name, tree in trees:
        results = streaming_cost(tree, args.stream_seconds, args.stream_speed, args.runs)
        if any("error" in r for rs in results.values() for r in rs):
            print(f"streaming, {name}: this tree cannot run it")
            continue
        figures = {}
        for mode, rs in results.items():
            figures[mode] = {
                key: 1000 * statistics.median(r[key] / r["audio"] for r in rs)
                for key in ("audio_path_cpu", "call_cpu", "total_cpu")
            }
        delivered = all(r["delivered"] for rs in results.values() for r in rs)
        skipped = max(r["skipped"] for r in results["on"])
        on, off = figures["on"], figures["off"]
        print(
            f"streaming, {name}: one call of {args.stream_seconds:g} s at x{args.stream_speed:g} "
            f"real time, {args.runs} runs each, alternating; daemon CPU ms per audio s, "
            f"stream on / off: audio path threads during the call {on['audio_path_cpu']:.2f} / "
            f"{off['audio_path_cpu']:.2f} (x{on['audio_path_cpu'] / off['audio_path_cpu']:.2f}), "
            f"whole process during the call {on['call_cpu']:.2f} / {off['call_cpu']:.2f} "
            f"(x{on['call_cpu'] / off['call_cpu']:.2f}), up to the collector's ack "
            f"{on['total_cpu']:.2f} / {off['total_cpu']:.2f} "
            f"(x{on['total_cpu'] / off['total_cpu']:.2f}); target <= x1.20; "
            f"{'all delivered' if delivered else 'NOT ALL DELIVERED'}, "
            f"stream skipped ahead over {skipped} bytes at most"
        )
        names = sorted({n for rs in results.values() for r in rs for n in r["threads"]})
        print(
            "  by thread, CPU ms per audio s during the call, on / off: "
            + ", ".join(
                f"{n} {per_thread(results['on'], n):.2f} / {per_thread(results['off'], n):.2f}"
                for n in names
            )
        )


def memory_figures(trees: list[tuple[str, Path | None]], args: argparse.Namespace) -> None:
    """`--only-memory`: start-up and peak RSS of `linerec run`, and the peak RSS of the
    flat-out run, the trees taking turns, `--runs` of each."""
    import statistics

    runs: dict[str, list[Run]] = {n: [] for n, _ in trees}
    niced: dict[str, list[Run]] = {n: [] for n, _ in trees}
    flat: dict[str, list[float]] = {name: [] for name, _ in trees}
    can_nice = os.geteuid() == 0  # a negative Nice= needs the privilege systemd has
    warm_up(trees)
    for _ in range(args.runs):
        for name, tree in trees:
            runs[name] += startup(tree, 1)
            if can_nice:
                niced[name] += startup(tree, 1, nice=unit_nice(tree))
            flat[name].append(run_calls(tree, args.hours, 1, 0.0)["rss_mb"])
    rows = {
        "start-up to READY=1, ms (median / max)": lambda r, f: (
            f"{1000 * statistics.median(x[0] for x in r):.0f} / {1000 * max(x[0] for x in r):.0f}"
        ),
        "  CPU of that run (to READY=1, then stopped), ms": lambda r, f: (
            f"{1000 * statistics.median(x[4] for x in r):.0f}"
        ),
        "peak RSS of `linerec run` idle, MB (median / max)": lambda r, f: (
            f"{statistics.median(x[1] for x in r):.1f} / {max(x[1] for x in r):.1f}"
        ),
        "  of it at READY=1: mapped files / anonymous": lambda r, f: (
            f"{statistics.median(x[2] for x in r):.1f} / {statistics.median(x[3] for x in r):.1f}"
        ),
        f"peak RSS flat out ({args.hours:g} h), MB (median / max)": lambda r, f: (
            f"{statistics.median(f):.1f} / {max(f):.1f}"
        ),
    }
    print(f"{'figure':52} " + " ".join(f"{n[:16]:>16}" for n, _ in trees))
    for key, cell in rows.items():
        print(f"{key:52} " + " ".join(f"{cell(runs[n], flat[n]):>16}" for n, _ in trees))
    key = "  the same at the unit's Nice=, as on the box, ms"
    cells = [
        f"{1000 * statistics.median(x[0] for x in niced[n]):.0f} / "
        f"{1000 * max(x[0] for x in niced[n]):.0f}"
        if niced[n]
        else "n/a (not root)"
        for n, _ in trees
    ]
    print(f"{key:52} " + " ".join(f"{c:>16}" for c in cells))
    up = uplink_startup(trees, args.runs)
    for key, cell in {
        "with an [uplink] (mqtts), to its first health report:": lambda r: "",
        "  peak RSS, MB (median / max)": lambda r: (
            f"{statistics.median(x[1] for x in r):.1f} / {max(x[1] for x in r):.1f}"
        ),
        "  of it at READY=1: mapped files / anonymous": lambda r: (
            f"{statistics.median(x[2] for x in r):.1f} / {statistics.median(x[3] for x in r):.1f}"
        ),
        "  start-up to READY=1, ms (median / max)": lambda r: (
            f"{1000 * statistics.median(x[0] for x in r):.0f} / {1000 * max(x[0] for x in r):.0f}"
        ),
    }.items():
        print(f"{key:52} " + " ".join(f"{cell(up[n]):>16}" for n, _ in trees))
    print(f"load at the end {os.getloadavg()[0]:.1f}")


def per_thread(results: list[dict[str, Any]], name: str) -> float:
    """Median CPU ms per audio second of one thread over the runs."""
    import statistics

    return 1000 * statistics.median(r["threads"].get(name, 0.0) / r["audio"] for r in results)


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])  # argparse's own would load shutil
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compare", type=Path, help="an older checkout, measured beside this one")
    parser.add_argument("--stream-seconds", type=float, default=60.0, help="call streamed (0: not)")
    parser.add_argument("--stream-speed", type=float, default=4.0, help="x real time")
    parser.add_argument(
        "--real-seconds", type=float, default=20.0, help="one line paced in real time (0: not)"
    )
    parser.add_argument("--only-streaming", action="store_true")
    parser.add_argument(
        "--only-memory", action="store_true", help="start-up and peak RSS only (issue 19)"
    )
    parser.add_argument("--worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--uplink", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--speed", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--lines", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--resample-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--latency-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        call_file, store = args.worker
        worker(call_file, store, speed=args.speed, lines=args.lines, uplink=args.uplink)
        return
    if args.resample_worker:
        resample_worker()
        return
    if args.latency_worker:
        latency_worker()
        return

    import statistics

    trees: list[tuple[str, Path | None]] = [("this", None)]
    if args.compare:
        trees.insert(0, (args.compare.name or str(args.compare), args.compare.resolve()))
    print(
        f"linerec bench/pipeline.py — {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
        f"Python {sys.version.split()[0]}; medians; columns: {', '.join(n for n, _ in trees)}"
    )
    if args.only_memory:
        memory_figures(trees, args)
        return
    if args.stream_seconds > 0:
        streaming_figures(trees, args)
    if args.only_streaming:
        return
    rows: list[tuple[str, list[str], str]] = []
    factors: dict[str, float] = {}
    flat: dict[str, list[dict[str, float]]] = {name: [] for name, _ in trees}
    paced1: dict[str, list[float]] = {name: [] for name, _ in trees}
    paced4: dict[str, list[float]] = {name: [] for name, _ in trees}
    real1: dict[str, list[float]] = {name: [] for name, _ in trees}
    starts: dict[str, list[float]] = {name: [] for name, _ in trees}
    run_rss: dict[str, list[float]] = {name: [] for name, _ in trees}
    # The trees take turns, run by run: a load that comes and goes on a shared machine then
    # falls on both alike, and the medians compare like with like.
    warm_up(trees)
    for _ in range(args.runs):
        for name, tree in trees:
            flat[name].append(run_calls(tree, args.hours, 1, 0.0))
            one_line = run_calls(tree, 10 / 60, 1, 50.0)
            paced1[name].append(1000 * one_line["cpu"] / one_line["audio"])
            four_lines = run_calls(tree, 10 / 60, 4, 50.0)
            # CPU per second of wall-clock audio with four lines recording at once.
            if "cpu" in four_lines:
                paced4[name].append(1000 * four_lines["cpu"] / four_lines["audio"] * 4)
            if args.real_seconds > 0:
                real = run_calls(tree, args.real_seconds / 3600, 1, 1.0)
                real1[name].append(1000 * real["cpu"] / real["audio"])
            for ready, rss, *_ in startup(tree, 2):
                starts[name].append(ready)
                run_rss[name].append(rss)
    for name, tree in trees:
        results = flat[name]
        factors[name] = statistics.median(r["audio"] / r["cpu"] for r in results)
        resample = _json(tree, "--resample-worker")
        latency = sorted(1000 * x for x in _json(tree, "--latency-worker"))
        one = statistics.median(paced1[name])
        four = statistics.median(paced4[name]) if paced4[name] else float("nan")
        real = statistics.median(real1[name]) if real1[name] else float("nan")
        cells = {
            "flat out, audio s per CPU s, one line": f"x{factors[name]:.0f}",
            "paced, CPU ms per s of audio, one line": f"{one:.2f}",
            "paced, four lines at once, CPU ms per s": f"{four:.2f} ({four / one:.1f}x one)",
            "paced in real time, CPU ms per s, one line": f"{real:.2f}",
            "resample 48 -> 8 kHz, ms per 20 ms period": f"{1000 * resample['down']:.3f}",
            "resample 8 -> 48 kHz, ms per 20 ms period": f"{1000 * resample['up']:.3f}",
            "hook edge -> notice, ms (median / max)": (
                f"{statistics.median(latency):.1f} / {max(latency):.1f}"
            ),
            "start-up to READY=1, ms (median / max)": (
                f"{1000 * statistics.median(starts[name]):.0f} / {1000 * max(starts[name]):.0f}"
            ),
            "peak RSS, MB (max of runs)": f"{max(r['rss_mb'] for r in results):.1f}",
            "peak RSS of `linerec run` idle, MB (max)": f"{max(run_rss[name]):.1f}",
        }
        for key, value in cells.items():
            row = next((r for r in rows if r[0] == key), None)
            if row is None:
                rows.append((key, [value], ""))
            else:
                row[1].append(value)
    targets = [
        ">= x1000",
        "<= 1.5",
        "<= 4x one",
        "<= 1.5",
        "<= 0.05",
        "",
        "<= 30",
        "<= 1000",
        "<= 45",
        "",
    ]
    print(f"{'figure':44} " + " ".join(f"{n[:18]:>18}" for n, _ in trees) + f" {'target':>10}")
    for (key, values, _), target in zip(rows, targets, strict=True):
        print(f"{key:44} " + " ".join(f"{v:>18}" for v in values) + f" {target:>10}")

    floor = floor_arecord_sox(args.hours)
    if floor is not None:
        print(
            f"floor: arecord | sox (µ-law WAV) on the same {args.hours:g} h: "
            f"x{1 / floor:.0f} real time ({1000 * floor:.2f} ms CPU per s of audio); "
            + ", ".join(f"{n} is {factor * floor:.2f}x its speed" for n, factor in factors.items())
        )
    quality = resample_quality()
    sox_cpu = sox_resample_cpu()
    print("48 -> 8 kHz resampling quality (a sine at each frequency):")
    for name, (ripple, stop) in quality.items():
        print(
            f"  {name:9} pass-band ripple 300-3400 Hz {ripple:.3f} dB, "
            f"stop-band (folds into 0-3.6 kHz) {stop:.1f} dB"
        )
    print(f"  sox rate, an hour at 48 kHz: {1000 * sox_cpu:.4f} ms CPU per 20 ms period")


if __name__ == "__main__":
    main()
