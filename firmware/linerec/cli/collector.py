"""Commands for the server side: run, migrate, list, quarantine, chain, export, listen, delete,
hold, audit, verify-export, command, rotate-key, enroll."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from linerec.collector.config import CollectorSettings
    from linerec.collector.store import CollectorStore


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Adds `collector ...`; returns its subcommands, for the console's to join them."""
    collector = commands.add_parser("collector", help="the server side: receive, list, export")
    collector_commands = collector.add_subparsers(
        dest="collector_command", required=True, metavar="ACTION"
    )
    collector_run = collector_commands.add_parser("run", help="receive from appliances")
    collector_run.set_defaults(handler=_run)
    migrate = collector_commands.add_parser(
        "migrate", help="bring the collector's database to this linerec's schema version"
    )
    migrate.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="SQLITE_FILE",
        help="copy this SQLite collector database into the configured (empty) one",
    )
    migrate.set_defaults(handler=_migrate)
    collector_list = collector_commands.add_parser("list", help="the recordings received")
    collector_list.add_argument("--json", action="store_true")
    _search_filters(collector_list)
    collector_list.set_defaults(handler=_list)
    quarantine = collector_commands.add_parser(
        "quarantine", help="uploads kept apart: whole, but not a recording of their device"
    )
    quarantine.add_argument("--json", action="store_true")
    quarantine.add_argument("--device", type=_device_id, help="only this device's")
    quarantine.set_defaults(handler=_quarantine)
    chain = collector_commands.add_parser(
        "chain",
        help="each device's sequence of recordings: stored, deleted, left out on purpose "
        "(opted-out) or missing",
    )
    chain.add_argument("--json", action="store_true")
    chain.add_argument("--device", type=_device_id, help="only this device's")
    chain.set_defaults(handler=_chain)
    export = collector_commands.add_parser("export", help="decrypt one recording to WAV")
    export.add_argument("id", metavar="ID", help="the recording's ID, or DEVICE/ID")
    export.add_argument("--reason", required=True, help="why (kept in the audit log)")
    export.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.wav")
    export.add_argument(
        "--original",
        action="store_true",
        help="the original a redaction kept for a legal hold, not the version shown",
    )
    export.set_defaults(handler=_export)
    listen = collector_commands.add_parser(
        "listen", help="hear a call in progress (WAV on stdout: | aplay)"
    )
    listen.add_argument("device", metavar="DEVICE")
    listen.add_argument("line", metavar="LINE")
    listen.add_argument("--reason", required=True, help="why (kept in the audit log)")
    listen.set_defaults(handler=_listen)
    delete = collector_commands.add_parser(
        "delete", help="crypto-shred a recording at the collector"
    )
    delete.add_argument("id", metavar="ID")
    delete.add_argument("--reason", required=True)
    delete.set_defaults(handler=_delete)
    redact = collector_commands.add_parser(
        "redact", help="silence a span in a new version; the original's key is destroyed"
    )
    redact.add_argument("id", metavar="ID", help="the recording's ID, or DEVICE/ID")
    redact.add_argument("--from", dest="start", type=_seconds, required=True, metavar="S")
    redact.add_argument("--to", dest="end", type=_seconds, required=True, metavar="S")
    redact.add_argument("--reason", required=True, help="why (kept with the new version)")
    redact.set_defaults(handler=_redact)
    hold = collector_commands.add_parser("hold", help="legal hold at the collector")
    hold.add_argument("id", metavar="ID")
    hold.add_argument("--release", action="store_true", help="lift the hold")
    hold.set_defaults(handler=_hold)
    audit = collector_commands.add_parser("audit", help="every access, and the deletion log")
    audit.add_argument("--json", action="store_true")
    audit.add_argument(
        "--verify",
        action="store_true",
        help="check the audit and deletion hash chains; exit 1 naming the first broken entry",
    )
    audit.set_defaults(handler=_audit)
    for sub_parser in (export, delete, hold, redact):
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
        choices=[
            "status",
            "pause",
            "resume",
            "opt_out",
            "hold",
            "release",
            "delete",
            "consent",
            "update",
        ],
    )
    command.add_argument("--line", help="for pause, resume, opt_out, consent")
    command.add_argument(
        "--url",
        help="for update: where the device fetches the signed bundle (http:// or https://)",
    )
    command.add_argument("--id", help="the recording, for hold, release, delete")
    command.add_argument("--mode", help="the consent mode, for consent")
    command.add_argument(
        "--ttl", type=_ttl, default=300.0, metavar="S", help="valid for S seconds (1 to 86400)"
    )
    command.add_argument(
        "--timeout",
        type=_timeout,
        default=10.0,
        metavar="S",
        help="wait S seconds for the device's answer (0: do not wait); no answer exits 1",
    )
    command.set_defaults(handler=_command)
    rotate = collector_commands.add_parser(
        "rotate-key",
        help="a new recipient key epoch, sent to the devices in a signed command",
    )
    rotate.add_argument(
        "--device",
        action="append",
        default=[],
        type=_device_id,
        metavar="DEVICE",
        help="tell only DEVICE (repeatable; default: every device heard from)",
    )
    rotate.add_argument(
        "--resend",
        action="store_true",
        help="make no new key: send the current epoch's key again (to devices that were off)",
    )
    rotate.add_argument(
        "--list", action="store_true", help="list the current and the retired keys; change nothing"
    )
    rotate.add_argument(
        "--forget",
        metavar="KID",
        help="destroy retired key KID: what only it opens can no longer be read",
    )
    rotate.add_argument(
        "--force",
        action="store_true",
        help="with --forget: even if recordings held here still need the key (they are lost)",
    )
    rotate.add_argument(
        "--ttl", type=_ttl, default=86400.0, metavar="S", help="the command is valid for S seconds"
    )
    rotate.add_argument(
        "--timeout",
        type=_timeout,
        default=10.0,
        metavar="S",
        help="wait S seconds for each device's answer (0: do not wait)",
    )
    rotate.set_defaults(handler=_rotate_key)
    for sub_parser in (
        collector_run,
        collector_list,
        quarantine,
        chain,
        export,
        listen,
        delete,
        redact,
        hold,
        audit,
        command,
        rotate,
        migrate,
    ):
        sub_parser.add_argument("--config", type=Path, default=None)
    enroll = collector_commands.add_parser(
        "enroll",
        help="sign a device's request, or revoke a device; write the broker's TLS and access files",
    )
    enroll.add_argument("csr", type=Path, nargs="?", metavar="DEVICE.csr")
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
        help="host name or address of the broker (repeatable; added to the names on its "
        "certificate; default localhost for a new site)",
    )
    enroll.add_argument(
        "--port",
        type=int,
        default=None,
        help="the broker's TLS port (default: the port its mosquitto.conf has, 8883 for a new "
        "site; a bridge keeps the port it has)",
    )
    enroll.add_argument(
        "--bind",
        metavar="ADDRESS",
        help="the address the broker listens on (default: the one its mosquitto.conf has, "
        "every address for a new site)",
    )
    enroll.add_argument(
        "--replace",
        action="store_true",
        help="the device has a new key: issue its certificate and revoke the older ones",
    )
    enroll.add_argument(
        "--revoke",
        metavar="DEVICE",
        type=_device_id,
        help="revoke every certificate issued to DEVICE (instead of enrolling)",
    )
    enroll.add_argument(
        "--renew",
        metavar="DEVICE",
        type=_device_id,
        help="a new certificate for DEVICE's key before its own expires, sent to the device "
        "in a signed command (instead of enrolling)",
    )
    enroll.add_argument(
        "--bridge",
        metavar="SITE",
        type=_device_id,
        help="a site broker bridged to this one: its certificate and bridge configuration "
        "(in DIR/bridges/SITE), the devices named by --device assigned to it (instead of "
        "enrolling a device)",
    )
    enroll.add_argument(
        "--device",
        action="append",
        default=[],
        type=_device_id,
        metavar="ID",
        help="with --bridge: a device behind that site (repeatable; added to those it has)",
    )
    enroll.add_argument(
        "--remove-device",
        action="append",
        default=[],
        type=_device_id,
        metavar="ID",
        help="with --bridge: take this device off that site; its bridge may no longer publish "
        "for it (repeatable)",
    )
    enroll.add_argument(
        "--revoke-bridge",
        metavar="SITE",
        type=_device_id,
        help="revoke the site broker's bridge: its certificate, its rights at this broker and "
        "its devices' assignment (instead of enrolling)",
    )
    enroll.add_argument(
        "--config",
        type=Path,
        default=None,
        help="the collector's configuration, for --renew to send the certificate",
    )
    enroll.add_argument(
        "--timeout",
        type=_timeout,
        default=10.0,
        metavar="S",
        help="with --renew: wait S seconds for the device's answer (0: do not wait)",
    )
    enroll.set_defaults(handler=_enroll)
    return collector_commands


def _search_filters(parser: argparse.ArgumentParser) -> None:
    """The console's search filters (linerec.collector.search), as flags."""
    filters = parser.add_argument_group("filters (as in the console's search)")
    for flag, metavar, text in (
        ("device", "DEVICE", "this device's recordings"),
        ("line", "LINE", "this line's"),
        ("label", "LABEL", "lines with this label"),
        ("direction", "inbound|outbound|unknown", "the call's direction"),
        ("since", "TIME", "began at or after (ISO 8601; UTC unless a zone is given)"),
        ("until", "TIME", "began before"),
        ("number", "DIGITS", "caller or called number starts with"),
        ("caller", "DIGITS", "caller number starts with"),
        ("called", "DIGITS", "called number starts with"),
        ("min-duration", "S", "at least S seconds long"),
        ("max-duration", "S", "at most S seconds long"),
        ("review", "reviewed|unreviewed", "quality review state"),
        ("held", "yes|no", "on legal hold or not"),
        ("sort", "ORDER", "started_at, -started_at (default), duration, -duration, device"),
        ("limit", "N", "at most N (default: all)"),
        ("offset", "N", "skip the first N"),
    ):
        filters.add_argument(f"--{flag}", metavar=metavar, help=text)


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
    from linerec.collector.exports import redaction_note, verify_export
    from linerec.store.keys import load_public

    problem = verify_export(args.wav, load_public(args.collector))
    if problem:
        print(f"linerec: {args.wav}: NOT verified: {problem}", file=sys.stderr)
        return 1
    note = redaction_note(args.wav)
    if note:
        print(f"{args.wav}: verified: a redacted version made and signed by the collector; {note}")
        return 0
    print(f"{args.wav}: verified: the audio of a recording signed by its appliance, unaltered")
    return 0


def _enroll(args: argparse.Namespace) -> int:
    from linerec.collector.enroll import EnrollError, enroll_device, revoke, unreachable_by_broker

    for flag, given in (("--device", args.device), ("--remove-device", args.remove_device)):
        if given and args.bridge is None:
            print(f"linerec: error: {flag} goes with --bridge SITE", file=sys.stderr)
            return 2
    chosen = (args.csr, args.revoke, args.renew, args.bridge, args.revoke_bridge)
    if [choice is not None for choice in chosen].count(True) != 1:
        print(
            "linerec: error: enroll needs DEVICE.csr, or --revoke DEVICE, or --renew DEVICE, "
            "or --bridge SITE, or --revoke-bridge SITE",
            file=sys.stderr,
        )
        return 2
    both = sorted(set(args.device) & set(args.remove_device))
    if both:
        print(
            f"linerec: error: {', '.join(both)}: named by both --device and --remove-device",
            file=sys.stderr,
        )
        return 2
    if args.bridge is not None:
        return _bridge(args)
    if args.revoke_bridge is not None:
        return _revoke_bridge(args)
    if args.renew is not None:
        return _renew(args)
    restart = f"restart the broker: mosquitto -c {args.site.absolute() / 'mosquitto.conf'}"
    try:
        if args.revoke is not None:
            count = revoke(args.site, args.revoke)
            crl = args.site.absolute() / "crl.pem"
            print(
                f"{args.revoke}: {count} certificate(s) revoked ({crl}); "
                f"it has no access any more; {restart}"
            )
            return 0
        enrolled = enroll_device(
            args.csr,
            args.site,
            broker_names=args.broker_name,  # not given: the broker's own (localhost if new)
            port=args.port,  # not given: the listener's own (8883 if new)
            bind=args.bind,
            replace=args.replace,
        )
    except EnrollError as exc:
        print(f"linerec: error: {exc}", file=sys.stderr)
        return 1
    replaced = f"; revoked {enrolled.revoked} older certificate(s)" if enrolled.revoked else ""
    print(
        f"{enrolled.cert}: the device's certificate ([uplink] cert); CA for [uplink] ca: "
        f"{args.site.absolute() / 'ca.crt'}{replaced}\n"
        f"start or restart the broker: mosquitto -c {args.site.absolute() / 'mosquitto.conf'}"
    )
    problem = unreachable_by_broker(args.site)
    if problem:
        print(f"linerec: warning: {problem}", file=sys.stderr)
    return 0


def _bridge(args: argparse.Namespace) -> int:
    from linerec.collector.enroll import EnrollError, enroll_bridge, remove_from_bridge

    try:
        if args.remove_device and not args.device:  # the site's address and files stay
            bridge = remove_from_bridge(args.bridge, args.remove_device, args.site)
        else:  # one change: checked whole before anything is written
            bridge = enroll_bridge(
                args.bridge,
                args.device,
                args.site,
                remove=args.remove_device,
                broker_names=args.broker_name or None,  # not given: the bridge's own address
                port=args.port,
                bind=args.bind,
            )
    except EnrollError as exc:
        print(f"linerec: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{args.bridge}: devices {', '.join(bridge.devices) or '(none yet)'}; copy "
        f"{bridge.directory} to the site broker (same path) and append {bridge.config} to its "
        f"mosquitto.conf; restart this broker: mosquitto -c "
        f"{args.site.absolute() / 'mosquitto.conf'}"
    )
    return 0


def _revoke_bridge(args: argparse.Namespace) -> int:
    from linerec.collector.enroll import EnrollError, revoke_bridge

    site = args.site.absolute()
    try:
        count, devices = revoke_bridge(args.revoke_bridge, site)
    except EnrollError as exc:
        print(f"linerec: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{args.revoke_bridge}: bridge revoked: {count} certificate(s) on {site / 'crl.pem'}; "
        f"its account left {site / 'access.json'}; devices no longer assigned to it: "
        f"{', '.join(devices) or '(none)'}; {site / 'bridges' / args.revoke_bridge} removed. "
        f"Restart this broker (it reads both files at start-up only): mosquitto -c "
        f"{site / 'mosquitto.conf'}; then remove the bridge section from the site broker's "
        "mosquitto.conf"
    )
    return 0


def _renew(args: argparse.Namespace) -> int:
    from linerec.collector.commands import send_command
    from linerec.collector.enroll import EnrollError, renew

    try:
        cert = renew(args.site.absolute(), args.renew)
    except EnrollError as exc:
        print(f"linerec: error: {exc}", file=sys.stderr)
        return 1
    from cryptography import x509

    until = x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc
    print(f"{cert}: {args.renew}'s new certificate, valid until {until:%Y-%m-%d}")
    settings = _settings(args)
    answer = send_command(
        settings,
        _store(settings),
        args.renew,
        "cert",
        {"pem": cert.read_text()},
        ttl=86400.0,
        timeout=args.timeout,
    )
    print(f"{args.renew}: cert: {answer.outcome}" + (f": {answer.reason}" if answer.reason else ""))
    if answer.outcome in ("done", "sent"):
        print(f"{args.renew} presents it from the next start of linerec.service")
        return 0
    print(
        f"linerec: {args.renew} did not take it; its old certificate stays good until it "
        f"expires: run `linerec collector enroll --renew {args.renew}` again when it is online, "
        f"or put {cert} on it as [uplink] cert",
        file=sys.stderr,
    )
    return 1


def _run(args: argparse.Namespace) -> int:
    from linerec.collector.service import Collector, WriterDied
    from linerec.logs import setup_logging

    settings = _settings(args)
    setup_logging()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    from linerec.daemon.notify import Notifier

    collector = Collector(settings)
    collector.on_status = Notifier().status  # `systemctl status` shows a database outage
    try:
        collector.run(stop)
    except WriterDied as exc:  # non-zero: systemd's Restart= starts it again
        print(f"linerec: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from linerec.collector.database import DatabaseError, connect
    from linerec.collector.schema import migrate

    settings = _settings(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # where a SQLite file is by default
    db = connect(settings.database)
    if args.source is not None:
        from linerec.collector.transfer import copy_sqlite

        try:
            if Path(db.name).resolve() == args.source.resolve():
                raise DatabaseError(f"--from {args.source}: is the configured database itself")
            counts = copy_sqlite(args.source, db)
        finally:
            db.close()
        print(f"{args.source} copied into {db.name}:")
        for table, count in counts.items():
            print(f"  {table}: {count} rows")
        return 0
    try:
        before, after = migrate(db)
    finally:
        db.close()
    if before is None:
        print(f"{db.name}: created at schema version {after}")
    elif before == after:
        print(f"{db.name}: schema version {after}: already current")
    else:
        print(f"{db.name}: migrated from schema version {before} to {after}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    store = _store(_settings(args))
    if not args.reason.strip():
        print("linerec: error: --reason must say why the recording is deleted", file=sys.stderr)
        return 2
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


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 <= seconds <= 10**7:  # also false for NaN
        raise argparse.ArgumentTypeError(f"must be seconds into the recording (got {text!r})")
    return seconds


def _redact(args: argparse.Namespace) -> int:
    from linerec.collector.audit import cli_user
    from linerec.collector.redaction import RedactionError, redact
    from linerec.store.reader import IntegrityError

    settings = _settings(args)
    store = _store(settings)
    try:
        done = redact(
            store, settings.key, args.id, args.start, args.end, args.reason,
            who=cli_user(), device=args.device,
        )  # fmt: skip
    except RedactionError as exc:
        print(f"linerec: error: --{exc}", file=sys.stderr)
        return 2
    except (KeyError, IntegrityError, ValueError) as exc:
        print(f"linerec: error: {_message(exc)}", file=sys.stderr)
        return 1
    original = (
        "the original is kept for its legal hold (shredded when the hold is lifted)"
        if done.original_kept
        else "the original's key is destroyed"
    )
    print(
        f"{done.device}/{done.id}: {done.start:g}-{done.end:g} s silenced in version "
        f"{done.version}, signed by this collector; {original}"
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
    if args.verify:
        from linerec.collector.audit import AuditLog

        problems = AuditLog(store.db).verify()
        store.audit("audit verify", None, args.reason or "; ".join(problems))
        for problem in problems:
            print(f"linerec: {problem}", file=sys.stderr)
        if problems:
            return 1
        print("audit log and deletion log: every entry follows on from the one before")
        return 0
    store.audit("audit", None, args.reason)
    records = [{"log": "access", **r} for r in store.audit_log()]
    records += [{"log": "deletion", **r} for r in store.deletions()]
    for record in records:
        print(json.dumps(record) if args.json else " ".join(f"{k}={v}" for k, v in record.items()))
    return 0


def _list(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from linerec.collector.search import FIELDS, PAGE_FIELDS, QueryError, parse_query

    settings = _settings(args)
    store = _store(settings)
    filters = {name: getattr(args, name) for name in FIELDS if name not in PAGE_FIELDS}
    try:
        query = parse_query(filters)
    except QueryError as exc:
        store.audit("list refused", None, str(exc))
        print(f"linerec: error: --{exc.field.replace('_', '-')}: {exc}", file=sys.stderr)
        return 2
    if args.limit is None:
        query = replace(query, limit=-1)  # SQLite: no limit
    if args.sort is None:
        query = replace(query, sort="seq")
    store.audit("list", None, args.reason)
    if args.label or args.direction:
        store.catalog_new(settings.key)
    rows, _ = store.search(query)
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            numbers = " ".join(
                f"{k.split('_')[0]}={row[k]}" for k in ("caller_number", "called_number") if row[k]
            )
            when = f"{row['started_at'] or '':29} {row['duration'] or 0:8.1f} s"
            line = f"{row['id']:48} {row['device']:16} {row['line'] or '':8} {when}  {numbers}"
            print(line.rstrip())
    _list_in_progress(store, args.json)
    return 0


def _list_in_progress(store: CollectorStore, as_json: bool) -> None:
    """Calls being streamed: held up to their last streamed chunk, not sealed yet."""
    from linerec.collector.listen import line_of

    for live in store.uploads.in_progress():
        row = {
            "id": live["id"],
            "device": live["device"],
            "line": line_of(str(live["id"])),
            "state": "in progress",
            "bytes": live["received"],
        }
        if as_json:
            print(json.dumps(row))
        else:
            print(f"{row['id']:48} {row['device']:16} {row['line']:8} in progress")


def _ttl(text: str) -> float:
    from linerec.uplink.commands import valid_ttl

    try:
        ttl = float(text)
    except ValueError:
        ttl = float("nan")
    problem = valid_ttl(ttl)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem} (got {text!r})")
    return ttl


def _timeout(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 <= seconds <= 3600:  # also false for NaN
        raise argparse.ArgumentTypeError(f"must be seconds from 0 to 3600 (got {text!r})")
    return seconds


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


def _chain(args: argparse.Namespace) -> int:
    store = _store(_settings(args))
    store.audit("chain", None, "")
    for row in store.chain(args.device):
        if args.json:
            print(json.dumps(row))
        elif row["state"] == "missing":
            print(f"{row['device']}  {row['seq']}..{row['last']}  missing (not arrived)")
        else:
            follows = {True: "", False: "  DOES NOT FOLLOW ON", None: ""}[row["follows_on"]]
            print(f"{row['device']}  {row['seq']}  {row['state']:10}  {row['id'] or ''}{follows}")
    return 0


def _command(args: argparse.Namespace) -> int:
    from linerec.collector.commands import send_command
    from linerec.uplink.commands import ACTIONS

    settings = _settings(args)
    arguments = {name: getattr(args, name) for name in ACTIONS[args.action]}
    missing = [f"--{name}" for name, value in arguments.items() if not value]
    if missing:
        print(f"linerec: error: {args.action} needs {', '.join(missing)}", file=sys.stderr)
        return 2
    answer = send_command(
        settings,
        _store(settings),
        args.device,
        args.action,
        arguments,
        ttl=args.ttl,
        timeout=args.timeout,
    )
    what = f"{args.device}: {args.action}"
    if answer.outcome == "done":
        print(f"{what} done (counter {answer.counter})")
        return 0
    if answer.outcome == "sent":
        print(f"{what} sent (counter {answer.counter}, valid {args.ttl:g} s); not waiting")
        return 0
    if answer.outcome == "refused":
        print(
            f"linerec: {what} refused (counter {answer.counter}): {answer.reason}", file=sys.stderr
        )
    elif answer.outcome == "unanswered":
        print(
            f"linerec: {what} sent (counter {answer.counter}), no answer within "
            f"{args.timeout:g} s: the device is offline or busy; the command stays valid for "
            f"{args.ttl:g} s and its answer will be among the device's events",
            file=sys.stderr,
        )
    else:
        print(f"linerec: {what} not sent: {answer.reason}", file=sys.stderr)
    return 1


def _rotate_key(args: argparse.Namespace) -> int:
    from linerec.collector.commands import send_command
    from linerec.store import keys

    settings = _settings(args)
    path = settings.key.path
    try:
        if args.list:
            key = keys.load_private(path)
            print(f"{key.kid}  epoch {key.epoch}  current")
            for old in key.retired:
                print(f"{old.kid}  epoch {old.epoch}  retired {old.retired_at}")
            return 0
        if args.forget:
            from linerec.collector.epochs import needing

            current = keys.load_private(path)
            others = [kid for kid in current.kids if kid != args.forget]
            held = needing(_store(settings), args.forget, others)
            if held and not args.force:
                print(
                    f"linerec: error: {len(held)} recording(s) held here open only with "
                    f"{args.forget} ({', '.join(held[:3])}{', ...' if len(held) > 3 else ''}); "
                    "wait until retention or `collector delete` has taken them (or --force)",
                    file=sys.stderr,
                )
                return 1
            keys.forget_retired(path, args.forget)
            _store(settings).audit("forget-key", None, json.dumps({"kid": args.forget}))
            print(f"{path}: retired key {args.forget} destroyed")
            return 0
        key = keys.load_private(path) if args.resend else keys.rotate(path)
    except keys.KeyFileError as exc:
        print(f"linerec: error: {exc}", file=sys.stderr)
        return 1
    store = _store(settings)
    if not args.resend:
        store.audit("rotate-key", None, json.dumps({"kid": key.kid, "epoch": key.epoch}))
        print(f"{path}: epoch {key.epoch}, kid {key.kid} (the old key is kept, retired)")
    devices = args.device or store.devices()
    if not devices:
        print("no device has been heard from yet: each gets the key with its configuration")
    public = keys.b64(keys.raw_public(key.encryption.public_key()))
    failed = 0
    for device in devices:
        answer = send_command(
            settings,
            store,
            device,
            "rekey",
            {"epoch": str(key.epoch), "x25519": public},
            ttl=args.ttl,
            timeout=args.timeout,
        )
        print(
            f"{device}: rekey to epoch {key.epoch}: {answer.outcome}"
            + (f": {answer.reason}" if answer.reason else "")
        )
        failed += answer.outcome not in ("done", "sent")
    if failed:
        print(
            f"linerec: {failed} device(s) did not take the new key; they encrypt to the old "
            "one, which is kept: send it again with `linerec collector rotate-key --resend`",
            file=sys.stderr,
        )
    return 1 if failed else 0


class _HungUp(Exception):
    """SIGTERM or SIGHUP while listening: the session ends, and is audited as ended."""


def _hang_up(signum: int, frame: object) -> None:
    raise _HungUp(signum)


def _listen(args: argparse.Namespace) -> int:
    import signal
    import time

    from linerec.collector.listen import NothingToHear, call_in_progress, listen
    from linerec.ids import device_id_problem
    from linerec.store.reader import IntegrityError

    settings = _settings(args)
    store = _store(settings)
    if not args.reason.strip():
        print("linerec: error: --reason must say why the call is listened to", file=sys.stderr)
        return 2
    problem = device_id_problem(args.device)
    if problem:
        print(f"linerec: error: DEVICE: {problem}", file=sys.stderr)
        return 2
    try:
        recording_id = call_in_progress(store, args.device, args.line)
    except NothingToHear as exc:
        print(f"linerec: error: {exc}", file=sys.stderr)
        return 1
    store.audit("listen", recording_id, args.reason)
    began = time.monotonic()
    ended = "stopped"
    # Stopped by a signal (a session closed, `timeout`, the terminal gone), listening still
    # ends in the audit log with how long: the default handlers would end the process first.
    before = {signum: signal.signal(signum, _hang_up) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        heard = listen(store, settings.key, args.device, recording_id, sys.stdout.buffer)
        ended = heard.ended
    except (KeyboardInterrupt, BrokenPipeError, _HungUp):
        pass  # the listener hung up (Ctrl-C, a signal, or aplay closed)
    except IntegrityError as exc:
        ended = f"refused: {exc}"
        print(f"linerec: error: {args.device}/{recording_id}: {exc}", file=sys.stderr)
    finally:
        seconds = time.monotonic() - began
        store.audit("listen ended", recording_id, f"{args.reason} ({seconds:.1f} s, {ended})")
        for signum, handler in before.items():
            signal.signal(signum, handler)
    return 1 if ended.startswith("refused") else 0


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
    if args.original and not store.original_kept(row["device"], row["id"]):
        store.audit("export original refused", row["id"], "no original kept")
        print(
            f"linerec: error: {row['device']}/{row['id']}: no original is kept aside (one is "
            "only while a redacted recording is on legal hold)",
            file=sys.stderr,
        )
        return 1
    store.audit("export original" if args.original else "export", row["id"], args.reason)
    from linerec.codec import RATE
    from linerec.collector.exports import export

    try:
        result = export(
            store, settings.key, row["id"], args.output, args.reason, row["device"],
            original=args.original,
        )  # fmt: skip
    except (IntegrityError, ValueError) as exc:
        print(f"linerec: error: {args.id}: {exc}", file=sys.stderr)
        return 1
    print(
        f"{row['device']}/{row['id']}: {result.inspected.state}, "
        f"{len(result.samples) / RATE:.1f} s -> {args.output} "
        f"(+ .json metadata, .lrec and .verify.json for whoever must check it)"
    )
    return 0
