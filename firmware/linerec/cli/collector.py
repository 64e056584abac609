"""Commands for the server side: run, list, quarantine, export, delete, hold, audit,
verify-export, command, enroll."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from linerec.collector.service import CollectorSettings
    from linerec.collector.store import CollectorStore


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    collector = commands.add_parser("collector", help="the server side: receive, list, export")
    collector_commands = collector.add_subparsers(
        dest="collector_command", required=True, metavar="ACTION"
    )
    collector_run = collector_commands.add_parser("run", help="receive from appliances")
    collector_run.set_defaults(handler=_run)
    collector_list = collector_commands.add_parser("list", help="the recordings received")
    collector_list.add_argument("--json", action="store_true")
    collector_list.set_defaults(handler=_list)
    quarantine = collector_commands.add_parser(
        "quarantine", help="uploads kept apart: whole, but not a recording of their device"
    )
    quarantine.add_argument("--json", action="store_true")
    quarantine.add_argument("--device", type=_device_id, help="only this device's")
    quarantine.set_defaults(handler=_quarantine)
    export = collector_commands.add_parser("export", help="decrypt one recording to WAV")
    export.add_argument("id", metavar="ID", help="the recording's ID, or DEVICE/ID")
    export.add_argument("--reason", required=True, help="why (kept in the audit log)")
    export.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.wav")
    export.set_defaults(handler=_export)
    delete = collector_commands.add_parser(
        "delete", help="crypto-shred a recording at the collector"
    )
    delete.add_argument("id", metavar="ID")
    delete.add_argument("--reason", required=True)
    delete.set_defaults(handler=_delete)
    hold = collector_commands.add_parser("hold", help="legal hold at the collector")
    hold.add_argument("id", metavar="ID")
    hold.add_argument("--release", action="store_true", help="lift the hold")
    hold.set_defaults(handler=_hold)
    audit = collector_commands.add_parser("audit", help="every access, and the deletion log")
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(handler=_audit)
    for sub_parser in (export, delete, hold):
        sub_parser.add_argument(
            "--device",
            type=_device_id,
            help="the device, if several have a recording with this ID (or DEVICE/ID)",
        )
    for sub_parser in (collector_list, hold, audit):
        sub_parser.add_argument(
            "--reason", default="", help="why (kept in the audit log; say it for a legal hold)"
        )
    verify_export = collector_commands.add_parser(
        "verify-export", help="check a customer copy against its verification file"
    )
    verify_export.add_argument("wav", type=Path, metavar="OUT.wav")
    verify_export.add_argument("--collector", type=Path, required=True, metavar="collector.pub")
    verify_export.set_defaults(handler=_verify_export)
    command = collector_commands.add_parser("command", help="send a signed command to a device")
    command.add_argument("device", metavar="DEVICE", type=_device_id)
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
    command.set_defaults(handler=_command)
    for sub_parser in (
        collector_run,
        collector_list,
        quarantine,
        export,
        delete,
        hold,
        audit,
        command,
    ):
        sub_parser.add_argument("--config", type=Path, default=None)
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
    enroll.set_defaults(handler=_enroll)


def _device_id(text: str) -> str:
    from linerec.ids import device_id_problem

    problem = device_id_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _settings(args: argparse.Namespace) -> CollectorSettings:
    from linerec.collector.config import DEFAULT_PATH, load_collector_config

    return load_collector_config(args.config or DEFAULT_PATH)


def _store(settings: CollectorSettings) -> CollectorStore:
    from linerec.collector.store import CollectorStore

    return CollectorStore(settings.data_dir, settings.database)


def _verify_export(args: argparse.Namespace) -> int:
    from linerec.collector.exports import verify_export
    from linerec.store.keys import load_public

    problem = verify_export(args.wav, load_public(args.collector))
    if problem:
        print(f"linerec: {args.wav}: NOT verified: {problem}", file=sys.stderr)
        return 1
    print(f"{args.wav}: verified: the audio of a recording signed by its appliance, unaltered")
    return 0


def _enroll(args: argparse.Namespace) -> int:
    from linerec.collector.enroll import enroll

    cert = enroll(
        args.csr, args.site, broker_names=args.broker_name or ["localhost"], port=args.port
    )
    print(
        f"{cert}: the device's certificate ([uplink] cert); CA for [uplink] ca: "
        f"{args.site / 'ca.crt'}; broker: mosquitto -c {args.site / 'mosquitto.conf'}"
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from linerec.collector.service import Collector
    from linerec.logs import setup_logging

    settings = _settings(args)
    setup_logging()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    Collector(settings).run(stop)
    return 0


def _delete(args: argparse.Namespace) -> int:
    store = _store(_settings(args))
    try:
        entry = store.delete(args.id, args.reason, args.device)
    except (KeyError, PermissionError) as exc:
        print(f"linerec: error: {_message(exc)}", file=sys.stderr)
        return 1
    print(
        f"{entry['device']}/{entry['id']}: deleted; its key is destroyed "
        f"(deletion log {entry['hash'][:16]})"
    )
    return 0


def _message(exc: Exception) -> str:
    # KeyError's str() is the repr of its argument; say the sentence itself.
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def _hold(args: argparse.Namespace) -> int:
    store = _store(_settings(args))
    try:
        name = store.hold(args.id, not args.release, args.device)
    except KeyError as exc:
        print(f"linerec: error: {_message(exc)}", file=sys.stderr)
        return 1
    store.audit("release" if args.release else "hold", name.rpartition("/")[2], args.reason)
    print(f"{name}: {'released' if args.release else 'on legal hold'}")
    return 0


def _audit(args: argparse.Namespace) -> int:
    store = _store(_settings(args))
    store.audit("audit", None, args.reason)
    records = [{"log": "access", **r} for r in store.audit_log()]
    records += [{"log": "deletion", **r} for r in store.deletions()]
    for record in records:
        print(json.dumps(record) if args.json else " ".join(f"{k}={v}" for k, v in record.items()))
    return 0


def _list(args: argparse.Namespace) -> int:
    store = _store(_settings(args))
    store.audit("list", None, args.reason)
    for row in store.recordings():
        if args.json:
            print(json.dumps(row))
        else:
            numbers = " ".join(
                f"{k.split('_')[0]}={row[k]}" for k in ("caller_number", "called_number") if row[k]
            )
            when = f"{row['started_at'] or '':29} {row['duration'] or 0:8.1f} s"
            line = f"{row['id']:48} {row['device']:16} {row['line'] or '':8} {when}  {numbers}"
            print(line.rstrip())
    return 0


def _quarantine(args: argparse.Namespace) -> int:
    from linerec.ids import shown

    store = _store(_settings(args))
    store.audit("quarantine", None, "")
    for row in store.quarantined(args.device):
        if args.json:
            print(json.dumps(row))
        else:
            print(
                f"{row['device']}/{row['id']}  {row['size']} bytes  sha256 {row['sha256'][:16]}  "
                f"{shown(row['reason'], 200)}"
            )
    return 0


def _command(args: argparse.Namespace) -> int:
    import os

    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from linerec.mqttapi import make_client, sign, topic
    from linerec.uplink.commands import ACTIONS, command_body

    settings = _settings(args)
    store = _store(settings)
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


def _export(args: argparse.Namespace) -> int:
    from linerec.store.reader import IntegrityError

    settings = _settings(args)
    store = _store(settings)
    if not args.reason.strip():
        print("linerec: error: --reason must say why the recording is exported", file=sys.stderr)
        return 2
    try:
        row = store.find(args.id, args.device)
    except KeyError as exc:
        print(f"linerec: error: {_message(exc)}", file=sys.stderr)
        return 1
    store.audit("export", row["id"], args.reason)
    from linerec.collector.exports import export

    try:
        result = export(store, settings.key, row["id"], args.output, args.reason, row["device"])
    except (IntegrityError, ValueError) as exc:
        print(f"linerec: error: {args.id}: {exc}", file=sys.stderr)
        return 1
    print(
        f"{row['device']}/{row['id']}: {result.inspected.state}, "
        f"{len(result.samples) / 8000:.1f} s -> {args.output} "
        f"(+ .json metadata, .lrec and .verify.json for whoever must check it)"
    )
    return 0
