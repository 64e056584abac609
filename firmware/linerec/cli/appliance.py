"""Commands for the recorder on the box: run, simulate, selftest, provision, config, analyze,
uplink."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

log = logging.getLogger("linerec")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser("run", help="run the recorder daemon")
    run.add_argument(
        "--config",
        type=Path,
        default=None,
        help="configuration file (default /etc/linerec/linerec.toml)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    run.set_defaults(handler=_run)

    selftest = commands.add_parser(
        "selftest", help="check the box's wiring: sound card, hook and ring sense, LEDs"
    )
    selftest.add_argument("--config", type=Path, default=None)
    selftest.add_argument(
        "--loopback",
        action="store_true",
        help="also play a 1 kHz tone and listen for it (sound card output tied to its input)",
    )
    selftest.add_argument(
        "--led-seconds", type=float, default=2.0, metavar="S", help="how long each LED stays lit"
    )
    selftest.set_defaults(handler=_selftest)

    provision = commands.add_parser(
        "provision", help="first boot: set the box up from the site file on the boot partition"
    )
    provision.add_argument(
        "--site",
        type=Path,
        default=None,
        help="the site file (default /boot/firmware/linerec-site.toml)",
    )
    provision.add_argument(
        "--root", type=Path, default=Path("/"), help="the root filesystem to set up (default /)"
    )
    provision.add_argument(
        "--force", action="store_true", help="even if the box was set up from this very file"
    )
    provision.add_argument(
        "--blink-on-error",
        type=float,
        default=None,
        metavar="S",
        help="on a bad site file, blink the status LED's config code for S seconds",
    )
    provision.set_defaults(handler=_provision)

    reset = commands.add_parser(
        "factory-reset",
        help="wipe the box's keys, site secrets, Wi-Fi and recordings, so it can be passed on",
    )
    reset.add_argument(
        "--yes", action="store_true", help="really wipe (without it nothing is changed)"
    )
    reset.add_argument(
        "--button",
        action="store_true",
        help="at boot (linerec-reset-button.service): wipe only if line 1's button is held "
        "from now for --hold seconds (the status LED blinks meanwhile), then reboot",
    )
    reset.add_argument(
        "--hold", type=float, default=None, metavar="S", help="with --button (default 10)"
    )
    reset.add_argument(
        "--root", type=Path, default=Path("/"), help="the root filesystem to wipe (default /)"
    )
    reset.add_argument(
        "--boot",
        type=Path,
        default=None,
        help="the boot partition (default ROOT/boot/firmware)",
    )
    reset.set_defaults(handler=_factory_reset)

    sim = commands.add_parser(
        "simulate", help="record scripted calls on a simulated line (no hardware, no broker)"
    )
    sim.add_argument(
        "callfiles",
        nargs="*",
        type=Path,
        metavar="CALLFILE",
        help="scripted call TOML files (default: an inbound call)",
    )
    sim.add_argument(
        "--store", type=Path, default=None, help="where recordings go (default ./linerec-sim)"
    )
    sim.add_argument(
        "--config", type=Path, default=None, help="use this configuration's lines and policy"
    )
    sim.add_argument("--json", action="store_true", help="print one JSON object per event")
    sim.add_argument(
        "--recipient",
        type=Path,
        action="append",
        default=[],
        metavar="FILE.pub",
        help="encrypt to this collector key (repeatable; default: a demo key pair "
        "made in the store)",
    )
    sim.set_defaults(handler=_simulate)

    analyze = commands.add_parser("analyze", help="say what is heard on a recording of the line")
    analyze.add_argument(
        "file", type=Path, metavar="FILE.wav", help="any WAV: mono or stereo, any rate"
    )
    analyze.add_argument("--json", action="store_true", help="one JSON object per event")
    analyze.set_defaults(handler=_analyze)

    uplink = commands.add_parser("uplink", help="the appliance's link to the collector")
    uplink_commands = uplink.add_subparsers(dest="uplink_command", required=True, metavar="ACTION")
    flush = uplink_commands.add_parser(
        "flush", help="send everything waiting; exit 0 once the collector acknowledged all of it"
    )
    flush.add_argument("--config", type=Path, default=None)
    flush.add_argument("--timeout", type=float, default=60.0, metavar="S")
    flush.set_defaults(handler=_uplink_flush)
    csr = uplink_commands.add_parser(
        "csr", help="make this device's TLS key and certificate request"
    )
    csr.add_argument("--config", type=Path, default=None)
    csr.add_argument("--out", type=Path, required=True, metavar="DIR")
    csr.set_defaults(handler=_uplink_csr)

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_commands.add_parser("check", help="validate a configuration file")
    check.add_argument("path", type=Path, metavar="PATH", nargs="?", default=None)
    check.add_argument(
        "--config",
        type=Path,
        default=None,
        help="the file to check, as the other commands take it (instead of PATH)",
    )
    check.set_defaults(handler=_config_check)


def _run(args: argparse.Namespace) -> int:
    from linerec.call.events import CallEvent
    from linerec.config import DEFAULT_PATH, load_config
    from linerec.daemon.backends import open_backend
    from linerec.daemon.notify import Notifier
    from linerec.daemon.recorder import build_recorder
    from linerec.daemon.report import event_text
    from linerec.logs import setup_logging

    setup_logging(args.verbose)
    config = load_config(args.config or DEFAULT_PATH)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: finishing", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    config, backend = open_backend(config)
    start = backend.clock()

    def log_event(event: CallEvent) -> None:
        log.info(event_text(event, start), extra={"LINE": event.line, "EVENT": event.name})

    recorder = build_recorder(config, backend, emit=log_event, notifier=Notifier(), t0=start)
    recorder.run(stop)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from linerec.call.events import CallEvent
    from linerec.config import load_config
    from linerec.daemon.events import RecordingSealed
    from linerec.daemon.report import event_record, event_text
    from linerec.daemon.simulate import DEFAULT_STORE, simulate

    logging.basicConfig(level=logging.WARNING, format="linerec: %(levelname)s: %(message)s")
    config = load_config(args.config) if args.config else None

    def emit(event: CallEvent) -> None:
        if args.json:
            print(json.dumps(event_record(event)), flush=True)
        else:
            print(event_text(event), flush=True)

    if not args.json:
        print("     time  line     event              details")
    result = simulate(
        args.callfiles,
        config=config,
        store_dir=args.store,
        emit=emit,
        recipients=args.recipient or None,
    )
    if args.json:
        return 0
    sealed = [e for e in result.events if isinstance(e, RecordingSealed)]
    store = result.config.store.dir if config or args.store else DEFAULT_STORE
    print()
    if not sealed:
        print(f"No recording was kept (store: {store}).")
    key = result.demo_key or "collector.key"
    if result.demo_key:
        print(
            f"No recipient given: made a demo key pair in {result.demo_key.parent} (a real "
            "appliance holds only the .pub)."
        )
    for event in sealed:
        wav = Path(event.path).with_suffix(".wav").name
        print(f"Recording ({event.duration:.1f} s, encrypted): {event.path}")
        print(f"  play it:  {_me()} decrypt {event.path} --key {key} -o {wav} && aplay {wav}")
    for line in result.config.lines:
        print(
            f"Line output of {line.name} (what the callers heard, raw s16le {line.audio.rate} Hz): "
            f"{result.backend.line_out(line.name)}"
        )
    return 0


def _me() -> str:
    """How the user ran us (e.g. .venv/bin/linerec), so commands we print work as given."""
    invoked = sys.argv[0]
    return invoked if Path(invoked).name == "linerec" else "linerec"


def _selftest(args: argparse.Namespace) -> int:
    from linerec.config import DEFAULT_PATH, load_config
    from linerec.daemon.backends import open_backend, open_sim_backend
    from linerec.daemon.selftest import LATENCY_S, LISTEN_S, TONE_S, selftest
    from linerec.hardware.backend import Backend
    from linerec.sim.callfile import ScriptedCall, Step

    config = load_config(args.config or DEFAULT_PATH)
    backend: Backend
    if config.hardware.backend == "sim" and not config.sim.calls:
        # A quiet line, long enough for every check: the simulated box on an idle line.
        idle = LISTEN_S + TONE_S + LATENCY_S + 1.0
        calls = [
            ScriptedCall(
                line=line.name,
                consent=None,
                steps=(
                    Step(
                        action="wait",
                        value=idle,
                        at=None,
                        options={"noise_dbfs": -65.0},  # an idle line's hiss
                        where="selftest",
                    ),
                ),
                source=config.path,
                description="an idle line for the self-test",
            )
            for line in config.lines
        ]
        config, backend = open_sim_backend(config, calls, speed=0)
    else:
        config, backend = open_backend(config)
    try:
        checks = selftest(config, backend, loopback=args.loopback, led_seconds=args.led_seconds)
    finally:
        backend.close()
    for check in checks:
        print(f"{'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
    failed = [check for check in checks if not check.ok]
    print(f"{len(checks) - len(failed)} of {len(checks)} checks passed")
    return 1 if failed else 0


def _provision(args: argparse.Namespace) -> int:
    from linerec.errors import ConfigError
    from linerec.provision.apply import (
        Journal,
        provision,
        provisioned_digest,
        remove_again,
        report_failure,
    )
    from linerec.provision.site import DEFAULT_SITE, load_site

    path: Path = args.site or DEFAULT_SITE
    if not path.exists():
        print(f"{path}: no site file: nothing to do")
        return 0
    try:
        site = load_site(path)
    except ConfigError as exc:
        report_failure(path, str(exc))
        print(f"linerec: error: {exc}; nothing was changed", file=sys.stderr)
        if args.blink_on_error is not None and provisioned_digest(args.root) is None:
            # A box that was set up before keeps recording with what it had; only a new box,
            # which cannot record at all, holds the LED to show the technician.
            _blink_config_fault(args.blink_on_error)
        return 2
    journal = Journal(args.root, site.digest, fresh=args.force)
    if journal.complete:
        remove_again(site)  # it may hold a Wi-Fi passphrase; /etc has its copy
        print(
            f"{path}: this box was already set up from this file (--force to redo); "
            "removed it from the boot partition"
        )
        return 0
    if journal.done:
        print(
            f"{path}: completing the set-up a power cut interrupted ({len(journal.done)} of "
            f"its steps were done)"
        )
    done = provision(site, args.root, journal)
    for line in done:
        print(line)
    print(f"{site.device_id}: provisioned from {path}")
    return 0


def _factory_reset(args: argparse.Namespace) -> int:
    import subprocess

    from linerec.errors import LinerecError
    from linerec.provision.reset import configured_store, factory_reset

    root: Path = args.root
    if args.button:
        if not _reset_button_held(args.hold):
            print("factory reset: the button was not held; nothing changed")
            return 0
    elif not args.yes:
        print(
            "linerec: error: factory-reset wipes this box's identity and TLS keys, the site's "
            "secrets, Wi-Fi credentials and every recording not yet collected; "
            "give --yes to do it",
            file=sys.stderr,
        )
        return 2
    extra: tuple[Path, ...] = ()
    config_path = root / "etc/linerec/linerec.toml"
    if config_path.exists():  # a store the configuration put somewhere else goes too
        from linerec.config import load_config

        try:
            store = load_config(config_path).store
        except (LinerecError, ValueError, OSError) as exc:
            print(f"{config_path}: not readable ({exc}); wiping the default places only")
        else:
            extra = configured_store(root, store.dir, store.identity)
    on_the_box = root.resolve() == Path("/")
    if on_the_box:  # the recorder lets go of the ring; the read-only root opens for the wipe
        subprocess.run(["systemctl", "stop", "linerec.service"], check=False)
        subprocess.run(["mount", "-o", "remount,rw", "/"], check=False)
    try:
        done = factory_reset(root, args.boot or root / "boot/firmware", extra)
    finally:
        if on_the_box:
            subprocess.run(["sync"], check=False)
            subprocess.run(["mount", "-o", "remount,ro", "/"], check=False)
    for line in done:
        print(line)
    print(
        "factory reset: done; the next boot is a first boot, waiting for linerec-site.toml "
        "on the boot partition"
    )
    if args.button and on_the_box:
        subprocess.run(["systemctl", "reboot"], check=False)
    return 0


def _reset_button_held(hold: float | None) -> bool:
    """Watch line 1's button on the real board (pins from the configuration, or the default
    pin map on a box not yet provisioned)."""
    import time

    from linerec.config import DEFAULT_PATH, default_pinmap, load_config, load_pinmap
    from linerec.errors import LinerecError
    from linerec.hardware.backend import GpioBackend
    from linerec.provision.button import HOLD, watch

    try:
        config = load_config(DEFAULT_PATH) if DEFAULT_PATH.exists() else None
    except (LinerecError, OSError):
        config = None  # a broken configuration is one more reason to be able to reset
    button: int | None
    if config is not None and config.lines and config.lines[0].pins.button is not None:
        button, led = config.lines[0].pins.button, config.hardware.status_led
    else:
        pinmap = load_pinmap(default_pinmap())
        button, led = pinmap.lines[0].button, pinmap.status_led
    if button is None:
        print("factory reset: line 1 has no button in the pin map")
        return False
    backend = GpioBackend()
    try:
        return watch(
            backend.pins,
            button=button,
            led=led,
            clock=backend.clock,
            wait=time.sleep,  # edges are collected by the pin's callback meanwhile
            hold=hold if hold is not None else HOLD,
        )
    finally:
        backend.close()


def _blink_config_fault(seconds: float) -> None:
    """Show the bad-configuration code on the status LED of the default pin map."""
    import time

    from linerec.config import default_pinmap, load_pinmap
    from linerec.hardware.backend import GpioBackend
    from linerec.hardware.leds import Led, Show

    try:
        backend = GpioBackend()
    except ImportError:  # not on a Pi: the journal has the message
        return
    try:
        led = Led(backend.pins.output(load_pinmap(default_pinmap()).status_led, name="status LED"))
        start = time.monotonic()
        led.set(Show.FAULT_CONFIG, start)
        while time.monotonic() - start < seconds:
            time.sleep(0.05)
            led.update(time.monotonic())
        led.off()
    finally:
        backend.close()


def _config_check(args: argparse.Namespace) -> int:
    from linerec.config import DEFAULT_PATH, load_config

    if args.path is not None and args.config is not None and args.path != args.config:
        print("linerec: error: config check: give PATH or --config, not both", file=sys.stderr)
        return 2
    path = args.path or args.config or DEFAULT_PATH
    config = load_config(path)
    lines = ", ".join(f"{line.name} ({line.consent.value})" for line in config.lines)
    print(
        f"{path}: ok: device {config.device_id}, backend {config.hardware.backend}, lines: {lines}"
    )
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from linerec.dsp.analyzer import analyze, as_record, as_text
    from linerec.wav import read_mono_8k

    events = analyze(read_mono_8k(args.file))
    if args.json:
        for event in events:
            print(json.dumps(as_record(event)))
    else:
        for line in as_text(events) or [f"{args.file}: nothing heard"]:
            print(line)
    return 0


def _uplink_flush(args: argparse.Namespace) -> int:
    import time

    from linerec.config import DEFAULT_PATH, load_config
    from linerec.daemon.storage import open_store, open_uplink
    from linerec.errors import ConfigError

    logging.basicConfig(level=logging.WARNING, format="linerec: %(levelname)s: %(message)s")
    config = load_config(args.config or DEFAULT_PATH)
    if config.uplink is None:
        raise ConfigError(config.path, "uplink", "no [uplink] section: nothing to flush to")
    ring = open_store(config, emit=lambda event: None, clock=time.monotonic)
    uplink = open_uplink(config, ring, role="flush")
    uplink.start()
    deadline = time.monotonic() + args.timeout
    try:
        while time.monotonic() < deadline:
            events, recordings = uplink.waiting()
            if not events and not recordings:
                print(f"{config.store.dir}: everything acknowledged by the collector")
                return 0
            uplink.kick()
            time.sleep(0.2)
        events, recordings = uplink.waiting()
        state = "connected" if uplink.connected else f"not connected to {config.uplink.url}"
        print(
            f"linerec: uplink flush timed out after {args.timeout:g} s ({state}): still waiting: "
            f"{events} event(s), {len(recordings)} recording(s)",
            file=sys.stderr,
        )
        for recording in recordings:
            print(f"  {recording}", file=sys.stderr)
        return 1
    finally:
        uplink.stop()


def _uplink_csr(args: argparse.Namespace) -> int:
    from linerec.config import DEFAULT_PATH, load_config
    from linerec.uplink.tls import device_request

    config = load_config(args.config or DEFAULT_PATH)
    device = config.uplink.device_id if config.uplink else config.device_id
    key, csr = device_request(device, args.out)
    print(f"{key}: this device's TLS key (0600): [uplink] key")
    print(f"{csr}: give it to `linerec collector enroll`; its answer goes in [uplink] cert")
    return 0
