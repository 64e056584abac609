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
from collections.abc import Callable, Sequence
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

    analyze = commands.add_parser("analyze", help="say what is heard on a recording of the line")
    analyze.add_argument(
        "file", type=Path, metavar="FILE.wav", help="any WAV: mono or stereo, any rate"
    )
    analyze.add_argument("--json", action="store_true", help="one JSON object per event")

    keygen = commands.add_parser("keygen", help="make a collector key pair")
    keygen.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="writes DIR/collector.key (0600) and DIR/collector.pub",
    )

    decrypt = commands.add_parser("decrypt", help="decrypt a recording to WAV (collector side)")
    decrypt.add_argument("file", type=Path, metavar="FILE")
    decrypt.add_argument("--key", type=Path, required=True, metavar="KEY", help="collector.key")
    decrypt.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="OUT.wav",
        help="writes OUT.wav and OUT.json (metadata)",
    )

    store = commands.add_parser("store", help="look at the recordings on a card (no key needed)")
    store_commands = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    verify = store_commands.add_parser("verify", help="check every recording and the chain")
    verify.add_argument("dir", type=Path, metavar="DIR")
    listing = store_commands.add_parser("list", help="list the recordings")
    listing.add_argument("dir", type=Path, metavar="DIR")
    listing.add_argument("--json", action="store_true", help="one JSON object per recording")

    uplink = commands.add_parser("uplink", help="the appliance's link to the collector")
    uplink_commands = uplink.add_subparsers(dest="uplink_command", required=True, metavar="ACTION")
    flush = uplink_commands.add_parser(
        "flush", help="send everything waiting; exit 0 once the collector acknowledged all of it"
    )
    flush.add_argument("--config", type=Path, default=None)
    flush.add_argument("--timeout", type=float, default=60.0, metavar="S")
    csr = uplink_commands.add_parser(
        "csr", help="make this device's TLS key and certificate request"
    )
    csr.add_argument("--config", type=Path, default=None)
    csr.add_argument("--out", type=Path, required=True, metavar="DIR")

    collector = commands.add_parser("collector", help="the server side: receive, list, export")
    collector_commands = collector.add_subparsers(
        dest="collector_command", required=True, metavar="ACTION"
    )
    collector_run = collector_commands.add_parser("run", help="receive from appliances")
    collector_list = collector_commands.add_parser("list", help="the recordings received")
    collector_list.add_argument("--json", action="store_true")
    export = collector_commands.add_parser("export", help="decrypt one recording to WAV")
    export.add_argument("id", metavar="ID")
    export.add_argument("--reason", required=True, help="why (kept in the audit log)")
    export.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.wav")
    for sub_parser in (collector_run, collector_list, export):
        sub_parser.add_argument("--config", type=Path, default=None)
    delete = collector_commands.add_parser(
        "delete", help="crypto-shred a recording at the collector"
    )
    delete.add_argument("id", metavar="ID")
    delete.add_argument("--reason", required=True)
    hold = collector_commands.add_parser("hold", help="legal hold at the collector")
    hold.add_argument("id", metavar="ID")
    hold.add_argument("--release", action="store_true", help="lift the hold")
    audit = collector_commands.add_parser("audit", help="every access, and the deletion log")
    audit.add_argument("--json", action="store_true")
    for sub_parser in (delete, hold, audit):
        sub_parser.add_argument("--config", type=Path, default=None)
    for sub_parser in (collector_list, hold, audit):
        sub_parser.add_argument(
            "--reason", default="", help="why (kept in the audit log; say it for a legal hold)"
        )
    verify_export = collector_commands.add_parser(
        "verify-export", help="check a customer copy against its verification file"
    )
    verify_export.add_argument("wav", type=Path, metavar="OUT.wav")
    verify_export.add_argument("--collector", type=Path, required=True, metavar="collector.pub")
    command = collector_commands.add_parser("command", help="send a signed command to a device")
    command.add_argument("device", metavar="DEVICE")
    command.add_argument(
        "action",
        choices=["status", "pause", "resume", "opt_out", "hold", "release", "delete", "consent"],
    )
    command.add_argument("--line", help="for pause, resume, opt_out, consent")
    command.add_argument("--id", help="the recording, for hold, release, delete")
    command.add_argument("--mode", help="the consent mode, for consent")
    command.add_argument(
        "--ttl", type=float, default=300.0, metavar="S", help="valid for S seconds"
    )
    command.add_argument("--config", type=Path, default=None)
    enroll = collector_commands.add_parser(
        "enroll", help="sign a device's request; write the broker's TLS and ACL files"
    )
    enroll.add_argument("csr", type=Path, metavar="DEVICE.csr")
    enroll.add_argument(
        "--site",
        type=Path,
        required=True,
        metavar="DIR",
        help="the site's CA and broker files (made on first use)",
    )
    enroll.add_argument(
        "--broker-name",
        action="append",
        default=[],
        metavar="NAME",
        help="host name or address of the broker (repeatable)",
    )
    enroll.add_argument("--port", type=int, default=8883)

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
        if args.command == "selftest":
            return _selftest(args)
        if args.command == "provision":
            return _provision(args)
        if args.command == "keygen":
            return _keygen(args)
        if args.command == "analyze":
            return _analyze(args)
        if args.command == "uplink":
            return _uplink_flush(args) if args.uplink_command == "flush" else _uplink_csr(args)
        if args.command == "collector":
            return _collector(args)
        if args.command == "decrypt":
            return _decrypt(args)
        if args.command == "store":
            return _store_verify(args) if args.store_command == "verify" else _store_list(args)
        return _config_check(args)
    except LinerecError as exc:
        print(f"linerec: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `linerec ... | head`: the reader has all it wanted
        sys.stderr.close()
        return 0


def _config_check(args: argparse.Namespace) -> int:
    from linerec.config import load_config

    config = load_config(args.path)
    lines = ", ".join(f"{line.name} ({line.consent.value})" for line in config.lines)
    print(
        f"{args.path}: ok: device {config.device_id}, "
        f"backend {config.hardware.backend}, lines: {lines}"
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


def _collector(args: argparse.Namespace) -> int:
    if args.collector_command == "verify-export":
        from linerec.collector.exports import verify_export
        from linerec.store.keys import load_public

        problem = verify_export(args.wav, load_public(args.collector))
        if problem:
            print(f"linerec: {args.wav}: NOT verified: {problem}", file=sys.stderr)
            return 1
        print(f"{args.wav}: verified: the audio of a recording signed by its appliance, unaltered")
        return 0
    if args.collector_command == "enroll":
        from linerec.collector.enroll import enroll

        cert = enroll(
            args.csr, args.site, broker_names=args.broker_name or ["localhost"], port=args.port
        )
        print(
            f"{cert}: the device's certificate ([uplink] cert); CA for [uplink] ca: "
            f"{args.site / 'ca.crt'}; broker: mosquitto -c {args.site / 'mosquitto.conf'}"
        )
        return 0
    from linerec.collector.config import DEFAULT_PATH, load_collector_config

    settings = load_collector_config(args.config or DEFAULT_PATH)
    if args.collector_command == "run":
        from linerec.collector.service import Collector
        from linerec.logs import setup_logging

        setup_logging()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
        Collector(settings).run(stop)
        return 0
    from linerec.collector.store import CollectorStore

    store = CollectorStore(settings.data_dir, settings.database)
    if args.collector_command == "command":
        return _collector_command(args, settings, store)
    if args.collector_command == "delete":
        try:
            entry = store.delete(args.id, args.reason)
        except (KeyError, PermissionError) as exc:
            print(f"linerec: error: {exc}", file=sys.stderr)
            return 1
        print(f"{args.id}: deleted; its key is destroyed (deletion log {entry['hash'][:16]})")
        return 0
    if args.collector_command == "hold":
        store.hold(args.id, not args.release)
        store.audit("release" if args.release else "hold", args.id, args.reason)
        print(f"{args.id}: {'released' if args.release else 'on legal hold'}")
        return 0
    if args.collector_command == "audit":
        store.audit("audit", None, args.reason)
        records = [{"log": "access", **r} for r in store.audit_log()]
        records += [{"log": "deletion", **r} for r in store.deletions()]
        for record in records:
            print(
                json.dumps(record) if args.json else " ".join(f"{k}={v}" for k, v in record.items())
            )
        return 0
    if args.collector_command == "list":
        store.audit("list", None, args.reason)
        for row in store.recordings():
            if args.json:
                print(json.dumps(row))
            else:
                numbers = " ".join(
                    f"{k.split('_')[0]}={row[k]}"
                    for k in ("caller_number", "called_number")
                    if row[k]
                )
                when = f"{row['started_at'] or '':29} {row['duration'] or 0:8.1f} s"
                line = f"{row['id']:48} {row['device']:16} {row['line'] or '':8} {when}  {numbers}"
                print(line.rstrip())
        return 0
    return _collector_export(args, settings, store)


def _collector_command(args: argparse.Namespace, settings: object, store: object) -> int:
    import os

    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from linerec.collector.service import CollectorSettings
    from linerec.collector.store import CollectorStore
    from linerec.mqttapi import make_client, sign, topic
    from linerec.uplink.commands import ACTIONS, command_body

    assert isinstance(settings, CollectorSettings) and isinstance(store, CollectorStore)
    arguments = {name: getattr(args, name) for name in ACTIONS[args.action]}
    missing = [f"--{name}" for name, value in arguments.items() if not value]
    if missing:
        print(f"linerec: error: {args.action} needs {', '.join(missing)}", file=sys.stderr)
        return 2
    counter = store.next_command_counter(args.device)
    body = command_body(args.device, counter, args.action, ttl=args.ttl, **arguments)
    store.audit(f"command {args.action}", arguments.get("id"), json.dumps(arguments))
    broker = settings.broker
    client = make_client(
        f"linerec-command-{os.getpid()}",
        broker,
        ca=settings.ca,
        cert=settings.cert,
        key=settings.client_key,
    )
    client.connect(broker.host, broker.port)
    client.loop_start()
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.MessageExpiryInterval = max(int(args.ttl), 1)
    info = client.publish(
        topic(args.device, "command"),
        sign(settings.key.signing, body),
        qos=1,
        properties=properties,
    )
    info.wait_for_publish(timeout=10)
    client.loop_stop()
    client.disconnect()
    print(f"{args.device}: {args.action} sent (counter {counter}, valid {args.ttl:g} s)")
    return 0 if info.is_published() else 1


def _collector_export(args: argparse.Namespace, settings: object, store: object) -> int:
    from linerec.collector.service import CollectorSettings
    from linerec.collector.store import CollectorStore
    from linerec.store.reader import IntegrityError

    assert isinstance(settings, CollectorSettings) and isinstance(store, CollectorStore)
    if not args.reason.strip():
        print("linerec: error: --reason must say why the recording is exported", file=sys.stderr)
        return 2
    row = store.recording(args.id)
    if row is None:
        print(f"linerec: error: no recording {args.id!r} at this collector", file=sys.stderr)
        return 1
    store.audit("export", args.id, args.reason)
    from linerec.collector.exports import export

    try:
        result = export(store, settings.key, args.id, args.output, args.reason)
    except (IntegrityError, ValueError) as exc:
        print(f"linerec: error: {args.id}: {exc}", file=sys.stderr)
        return 1
    print(
        f"{args.id}: {result.inspected.state}, {len(result.samples) / 8000:.1f} s -> {args.output} "
        f"(+ .json metadata, .lrec and .verify.json for whoever must check it)"
    )
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from linerec.store.keys import keygen

    private, public = keygen(args.out)
    print(f"{private}: collector private key (mode 0600): keep it on the collector only")
    print(f"{public}: collector public key: put it in each appliance's [store] recipients")
    return 0


def _decrypt(args: argparse.Namespace) -> int:
    from linerec.codec import Codec
    from linerec.store.keys import load_private
    from linerec.store.reader import COMPLETE, IntegrityError, decrypt
    from linerec.wav import write_wav

    key = load_private(args.key)
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        print(f"linerec: error: {args.file}: cannot read: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        result = decrypt(data, key)
    except IntegrityError as exc:
        print(f"linerec: error: {args.file}: {exc}", file=sys.stderr)
        return 1
    write_wav(args.output, result.samples, rate=8000, codec=Codec.PCM16)
    inspected = result.inspected
    metadata = {
        "header": inspected.header,
        "state": inspected.state,
        "end": inspected.end,
        **({"metadata": result.metadata} if result.metadata else {}),
    }
    args.output.with_suffix(".json").write_text(json.dumps(metadata, indent=2) + "\n")
    seconds = len(result.samples) / 8000
    if inspected.state == COMPLETE:
        print(f"{args.file}: complete, {seconds:.1f} s -> {args.output}")
    else:
        print(
            f"{args.file}: cut by power loss after {seconds:.1f} s (what reached the card is "
            f"intact) -> {args.output}"
        )
    return 0


def _store_verify(args: argparse.Namespace) -> int:
    from linerec.store.verify import verify_ring

    count, problems = verify_ring(args.dir)
    for problem in problems:
        print(f"linerec: {args.dir}: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{args.dir}: ok: {count} recording(s), chain unbroken")
    return 0


def _store_list(args: argparse.Namespace) -> int:
    from linerec.store.format import SUFFIX
    from linerec.store.ring import read_entry

    if not args.dir.is_dir():
        print(f"linerec: error: {args.dir}: no such directory", file=sys.stderr)
        return 2
    entries = []
    for path in sorted(args.dir.glob(f"*{SUFFIX}")):
        try:
            entries.append(read_entry(path))
        except (ValueError, KeyError, OSError) as exc:
            print(f"linerec: {path}: unreadable: {exc}", file=sys.stderr)
    for entry in entries:
        if args.json:
            print(json.dumps(entry.as_json()))
        else:
            state = (
                entry.state
                + (",acknowledged" if entry.acknowledged else "")
                + (",held" if entry.held else "")
            )
            print(
                f"{entry.id:48} {entry.started_at:29} {entry.duration:8.1f} s  "
                f"{entry.line:8} {state}"
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


def _provision(args: argparse.Namespace) -> int:
    from linerec.errors import ConfigError
    from linerec.provision.apply import (
        provision,
        provisioned_digest,
        report_failure,
        report_success,
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
    if site.digest == provisioned_digest(args.root) and not args.force:
        print(f"{path}: this box was already set up from this file (--force to redo)")
        return 0
    done = provision(site, args.root)
    report_success(site, args.root, done)
    for line in done:
        print(line)
    print(f"{site.device_id}: provisioned from {path}")
    return 0


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


def _run(args: argparse.Namespace) -> int:
    from linerec.call.events import CallEvent
    from linerec.config import DEFAULT_PATH, load_config
    from linerec.daemon.backends import open_backend
    from linerec.daemon.notify import Notifier
    from linerec.daemon.report import event_text
    from linerec.daemon.service import Daemon
    from linerec.daemon.storage import open_outbox, open_store, open_uplink, queueing
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

    sinks: list[Callable[[CallEvent], None]] = [log_event]  # the store reports through it too
    store = open_store(config, emit=lambda event: sinks[0](event), clock=backend.clock)
    uplink = None
    daemons: list[Daemon] = []
    if config.uplink is not None:  # every event also waits on the card for the collector
        outbox = open_outbox(config)
        uplink = open_uplink(
            config,
            store,
            on_command=lambda command, why: daemons[0].submit_command(command, why),
            outbox=outbox,
        )
        sinks[0] = queueing(log_event, outbox, device_id=config.uplink.device_id, t0=start)
    daemon = Daemon(
        config,
        backend,
        store,
        emit=sinks[0],
        notifier=Notifier(),
        on_status_request=uplink.publish_status if uplink else lambda: None,
        on_health=uplink.publish_health if uplink else lambda health: None,
        uplink_connected=(lambda: uplink.connected) if uplink else None,
    )
    daemons.append(daemon)
    if uplink is not None:
        uplink.start()
    daemon.start()
    try:
        daemon.run(stop)
    finally:
        daemon.shutdown()
        if uplink is not None:
            uplink.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
