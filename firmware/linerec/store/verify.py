"""`linerec store verify`: every recording intact, and the chain of them unbroken.

Each header names the hash of the previous recording's header and carries a sequence number,
so a recording deleted, altered or inserted shows: a gap that `ring.log` does not explain, a
`prev` that does not match, or a recording signed by another device.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from linerec.store.format import SUFFIX
from linerec.store.reader import OPEN, IntegrityError, inspect


def verify_ring(directory: Path) -> tuple[int, list[str]]:
    """Check every recording in `directory`; returns (how many, problems in order found)."""
    problems: list[str] = []
    logged = _logged_deletions(directory, problems)
    chain: list[tuple[int, str, str, str, Path]] = []  # seq, header hash, prev, device key, path
    paths = sorted(directory.glob(f"*{SUFFIX}"))
    for path in paths:
        try:
            inspected = inspect(path.read_bytes())
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
    for (seq, digest, _, _, _), (next_seq, _, prev, _, path) in itertools.pairwise(chain):
        missing = [s for s in range(seq + 1, next_seq) if s not in logged]
        if next_seq == seq:
            problems.append(f"{path.name}: sequence number {seq} appears twice")
        elif missing:
            problems.append(
                f"{path.name}: recordings {missing[0]}..{next_seq - 1} before it are missing "
                "and ring.log does not say they were deleted"
            )
        elif next_seq == seq + 1 and prev != digest:
            problems.append(
                f"{path.name}: does not follow on from seq {seq} (its prev hash differs)"
            )
        elif next_seq > seq + 1 and prev != logged.get(next_seq - 1, ""):
            problems.append(f"{path.name}: does not follow on from the deleted seq {next_seq - 1}")
    return len(paths), problems


def _logged_deletions(directory: Path, problems: list[str]) -> dict[int, str]:
    """seq -> header hash of every recording ring.log says was deleted."""
    log = directory / "ring.log"
    deleted: dict[int, str] = {}
    if not log.exists():
        return deleted
    for number, line in enumerate(log.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            entry = json.loads(line)
            deleted[int(entry["seq"])] = str(entry["header_hash"])
        except (ValueError, KeyError, TypeError):
            problems.append(f"ring.log:{number}: not a deletion record")
    return deleted
