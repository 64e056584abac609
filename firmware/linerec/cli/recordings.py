"""Commands for keys and recordings: keygen, decrypt, store verify, store list."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keygen = commands.add_parser("keygen", help="make a collector key pair")
    keygen.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="writes DIR/collector.key (0600) and DIR/collector.pub",
    )
    keygen.set_defaults(handler=_keygen)

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
    decrypt.set_defaults(handler=_decrypt)

    store = commands.add_parser("store", help="look at the recordings on a card (no key needed)")
    store_commands = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    verify = store_commands.add_parser("verify", help="check every recording and the chain")
    verify.add_argument("dir", type=Path, metavar="DIR")
    verify.set_defaults(handler=_store_verify)
    listing = store_commands.add_parser("list", help="list the recordings")
    listing.add_argument("dir", type=Path, metavar="DIR")
    listing.add_argument("--json", action="store_true", help="one JSON object per recording")
    listing.set_defaults(handler=_store_list)


def _keygen(args: argparse.Namespace) -> int:
    from linerec.store.keys import keygen

    private, public = keygen(args.out)
    print(f"{private}: collector private key (mode 0600): keep it on the collector only")
    print(f"{public}: collector public key: put it in each appliance's [store] recipients")
    return 0


def _decrypt(args: argparse.Namespace) -> int:
    from linerec.codec import RATE, Codec
    from linerec.files import UnreadableFile, read_file
    from linerec.store.format import MAX_BYTES
    from linerec.store.keys import load_private
    from linerec.store.reader import COMPLETE, IntegrityError, decrypt
    from linerec.wav import write_wav

    key = load_private(args.key)
    try:
        data = read_file(args.file, limit=MAX_BYTES)
    except UnreadableFile as exc:
        print(f"linerec: error: {args.file}: cannot read: {exc}", file=sys.stderr)
        return 1
    try:
        result = decrypt(data, key)
    except IntegrityError as exc:
        print(f"linerec: error: {args.file}: {exc}", file=sys.stderr)
        return 1
    inspected = result.inspected
    metadata = {
        "header": inspected.header,
        "state": inspected.state,
        "end": inspected.end,
        **({"metadata": result.metadata} if result.metadata else {}),
    }
    try:
        write_wav(args.output, result.samples, rate=RATE, codec=Codec.PCM16)
        args.output.with_suffix(".json").write_text(json.dumps(metadata, indent=2) + "\n")
    except OSError as exc:
        print(f"linerec: error: {args.output}: cannot write: {exc.strerror}", file=sys.stderr)
        return 1
    seconds = len(result.samples) / RATE
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
    from linerec.store.ring import RecordingUnreadable, read_entry

    if not args.dir.is_dir():
        print(f"linerec: error: {args.dir}: no such directory", file=sys.stderr)
        return 2
    entries = []
    unreadable = 0
    for path in sorted(args.dir.glob(f"*{SUFFIX}")):
        try:
            entries.append(read_entry(path))
        except RecordingUnreadable as exc:  # names the file: the others are still listed
            print(f"linerec: {args.dir}: unreadable: {exc}", file=sys.stderr)
            unreadable += 1
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
    return 1 if unreadable else 0
