"""The `linerec` command: the only place that parses arguments.

Exit status: 0 done; 1 a failure at run time; 2 bad input (configuration, call file, usage),
with a message that names the file and the key or step.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from linerec import __version__
from linerec.errors import LinerecError

log = logging.getLogger("linerec")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linerec", description="Call-recorder appliance for analog telephone lines."
    )
    parser.add_argument("--version", action="version", version=f"linerec {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the recorder daemon")
    run.add_argument(
        "--config",
        type=Path,
        default=None,
        help="configuration file (default /etc/linerec/linerec.toml)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="log debug messages")

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

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_commands.add_parser("check", help="validate a configuration file")
    check.add_argument("path", type=Path, metavar="PATH")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "simulate":
            return _simulate(args)
        return _config_check(args)
    except LinerecError as exc:
        print(f"linerec: error: {exc}", file=sys.stderr)
        return 2


def _config_check(args: argparse.Namespace) -> int:
    from linerec.config import load_config

    config = load_config(args.path)
    lines = ", ".join(f"{line.name} ({line.consent.value})" for line in config.lines)
    print(
        f"{args.path}: ok: device {config.device_id}, "
        f"backend {config.hardware.backend}, lines: {lines}"
    )
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
    result = simulate(args.callfiles, config=config, store_dir=args.store, emit=emit)
    if args.json:
        return 0
    sealed = [e for e in result.events if isinstance(e, RecordingSealed)]
    store = result.config.store.dir if config or args.store else DEFAULT_STORE
    print()
    if not sealed:
        print(f"No recording was kept (store: {store}).")
    for event in sealed:
        print(
            f"Recording ({event.duration:.1f} s, {result.config.store.codec.value}, 8 kHz): "
            f"{event.path}"
        )
        print(f"  metadata: {Path(event.path).with_suffix('.json')}")
        print(f"  play it:  aplay {event.path}    (or: play {event.path})")
    for line in result.config.lines:
        print(
            f"Line output of {line.name} (what the callers heard, raw s16le {line.audio.rate} Hz): "
            f"{result.backend.line_out(line.name)}"
        )
    return 0


def _run(args: argparse.Namespace) -> int:
    from linerec.config import DEFAULT_PATH, load_config
    from linerec.daemon.backends import open_backend
    from linerec.daemon.notify import Notifier
    from linerec.daemon.report import event_text
    from linerec.daemon.service import Daemon
    from linerec.logs import setup_logging
    from linerec.store.wavstore import WavStore

    setup_logging(args.verbose)
    config = load_config(args.config or DEFAULT_PATH)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: finishing", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    config, backend = open_backend(config)
    store = WavStore(config.store.dir, config.store.codec)
    daemon = Daemon(
        config,
        backend,
        store,
        emit=lambda event: log.info(
            event_text(event, daemon.clock_start), extra={"LINE": event.line, "EVENT": event.name}
        ),
        notifier=Notifier(),
    )
    daemon.start()
    try:
        daemon.run(stop)
    finally:
        daemon.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
