"""`linerec store verify`: every recording intact, and the chain of them unbroken.

Each header names the hash of the previous recording's header and carries a sequence number,
so a recording deleted, altered or inserted shows: a gap that `ring.log` does not explain, a
`prev` that does not match, or a recording signed by another device.
"""

from __future__ import annotations

import bisect
import itertools
import json
from pathlib import Path

from linerec.files import MIB, UnreadableFile, read_file, read_text
from linerec.store.format import MAX_BYTES, SUFFIX
from linerec.store.reader import OPEN, IntegrityError, inspect

MAX_LOG_BYTES = 64 * MIB  # ring.log: a line per deletion, some 200 bytes each
SHOWN_RANGES = 10


def verify_ring(directory: Path) -> tuple[int, list[str]]:
    """Check every recording in `directory`; returns (how many, problems in order found)."""
    problems: list[str] = []
    logged = _logged_deletions(directory, problems)
    chain: list[tuple[int, str, str, str, Path]] = []  # seq, header hash, prev, device key, path
    paths = sorted(directory.glob(f"*{SUFFIX}"))
    for path in paths:
        try:
            inspected = inspect(read_file(path, limit=MAX_BYTES))
        except UnreadableFile as exc:
            problems.append(f"{path.name}: cannot read: {exc}")
            continue
        except IntegrityError as exc:
            problems.append(f"{path.name}: {exc}")
            continue
        if inspected.state == OPEN:
            problems.append(
                f"{path.name}: open: no trailer or cut marker (run the daemon to recover it)"
            )
        header = inspected.header
        chain.append(
            (
                int(header["seq"]),
                inspected.header_hash.hex(),
                str(header.get("prev", "")),
                str(header["device_key"]),
                path,
            )
        )
    chain.sort()
    devices = {device for _, _, _, device, _ in chain}
    if len(devices) > 1:
        first_device = chain[0][3]
        for _, _, _, device, path in chain:
            if device != first_device:
                problems.append(f"{path.name}: signed by another device than {chain[0][4].name}")
    deleted = sorted(logged)
    for (seq, digest, _, _, _), (next_seq, _, prev, _, path) in itertools.pairwise(chain):
        missing = _unlogged(seq, next_seq, deleted)
        if next_seq == seq:
            problems.append(f"{path.name}: sequence number {seq} appears twice")
        elif missing:
            shown = ", ".join(f"{a}..{b}" for a, b in missing[:SHOWN_RANGES])
            more = (
                f" and {len(missing) - SHOWN_RANGES} more ranges"
                if len(missing) > SHOWN_RANGES
                else ""
            )
            problems.append(
                f"{path.name}: recordings {shown}{more} before it are missing "
                "and ring.log does not say they were deleted"
            )
        elif next_seq == seq + 1 and prev != digest:
            problems.append(
                f"{path.name}: does not follow on from seq {seq} (its prev hash differs)"
            )
        elif next_seq > seq + 1 and prev != logged.get(next_seq - 1, ""):
            problems.append(f"{path.name}: does not follow on from the deleted seq {next_seq - 1}")
    return len(paths), problems


def _unlogged(seq: int, next_seq: int, deleted: list[int]) -> list[tuple[int, int]]:
    """The sequence numbers strictly between `seq` and `next_seq` that `deleted` (sorted) does
    not hold, as (first, last) ranges: a gap of 10^15 costs no more than a gap of one."""
    ranges = []
    start = seq + 1
    for logged in deleted[
        bisect.bisect_right(deleted, seq) : bisect.bisect_left(deleted, next_seq)
    ]:
        if logged > start:
            ranges.append((start, logged - 1))
        start = logged + 1
    if start < next_seq:
        ranges.append((start, next_seq - 1))
    return ranges


def _logged_deletions(directory: Path, problems: list[str]) -> dict[int, str]:
    """seq -> header hash of every recording ring.log says was deleted."""
    log = directory / "ring.log"
    deleted: dict[int, str] = {}
    if not log.exists():
        return deleted
    try:
        text = read_text(log, limit=MAX_LOG_BYTES)
    except UnreadableFile as exc:
        problems.append(f"ring.log: {exc}")
        return deleted
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            entry = json.loads(line)
            deleted[int(entry["seq"])] = str(entry["header_hash"])
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
            problems.append(f"ring.log:{number}: not a deletion record")
    return deleted
