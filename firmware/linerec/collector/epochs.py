"""Which recordings the collector holds still need a retired recipient key.

A recording in the vault is the appliance's sealed file, encrypted again: it opens only with a
key it was wrapped to. Destroying a retired epoch key (`linerec collector rotate-key --forget`)
therefore waits until retention or a deletion has taken every recording wrapped to it alone.
Only the header (the first record, in the vault's first block) is read.
"""

from __future__ import annotations

import json
from pathlib import Path

from linerec.collector.store import CollectorStore
from linerec.store.format import MAGIC, RecordType


def needing(store: CollectorStore, kid: str, others: list[str]) -> list[str]:
    """`device/id` of each stored recording wrapped to `kid` and to none of `others`."""
    found = []
    for row in store.recordings():
        try:
            first = next(iter(store.open_recording(row["id"], Path(row["path"]), row["device"])))
        except (ValueError, OSError, StopIteration):
            continue  # deleted meanwhile, or unreadable: nothing a key could open
        kids = _recipient_kids(first)
        if kid in kids and not kids & set(others):
            found.append(f"{row['device']}/{row['id']}")
    return found


def _recipient_kids(data: bytes) -> set[str]:
    if data[:2] != MAGIC or data[2] != RecordType.HEADER:
        return set()
    length = int.from_bytes(data[4:8], "little")
    try:
        header = json.loads(data[8 : 8 + length])
        return {str(r.get("kid")) for r in header.get("recipients", [])}
    except (ValueError, AttributeError, TypeError):
        return set()
