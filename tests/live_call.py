"""A call in progress for the console's tests: a real recording written by the appliance's ring
(encrypted to a delivered site's collector key), put into the collector store piece by piece
as its stream would bring it, then sealed as the hang-up's upload brings the rest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from calls import record_call
from linerec.codec import Samples
from linerec.collector.uploads import STREAMING, Piece
from linerec.collector.web.service import ConsoleService
from linerec.store.format import BLOCK
from linerec.store.keys import load_private, load_public
from linerec.store.reader import decrypt
from linerec.store.ring import RingStore


@dataclass
class Call:
    """A call on box2's line1: its recording as the card holds it once sealed."""

    id: str
    whole: bytes
    samples: Samples
    blocks: int

    def piece(self, first: int, last: int, *, sealed: bool = False) -> Piece:
        """Blocks first..last-1 as the stream brings them; sealed, from `first` to the end as
        the hang-up's upload brings it."""
        return Piece(
            device="box2",
            recording_id=self.id,
            offset=first * BLOCK,
            size=len(self.whole) if sealed else 0,
            sha256=hashlib.sha256(self.whole).hexdigest() if sealed else STREAMING,
            data=self.whole[first * BLOCK : len(self.whole) if sealed else last * BLOCK],
        )


def box2_call(card: Path, site: Path, seconds: float) -> Call:
    keys = site.parent / "keys"
    ring = RingStore(
        card,
        recipients=[load_public(keys / "collector.pub")],
        identity=Ed25519PrivateKey.generate(),
        device_id="box2",
    )
    sealed = record_call(ring, seconds, "box2")
    whole = sealed.path.read_bytes()
    samples = decrypt(whole, load_private(keys / "collector.key")).samples
    return Call(sealed.id, whole, samples, len(whole) // BLOCK)


def arrive(service: ConsoleService, piece: Piece, now: float) -> Path | None:
    with service.lock:
        return service.store.uploads.add(piece, now)


def hang_up(service: ConsoleService, call: Call, first: int, now: float) -> None:
    """The sealed upload brings the rest; the collector keeps and indexes the whole."""
    part = arrive(service, call.piece(first, call.blocks, sealed=True), now)
    assert part is not None
    with service.lock:
        final = service.store.keep("box2", call.id, part)
        service.store.index("box2", call.id, final, hashlib.sha256(call.whole).hexdigest(), {}, now)
