"""A recording at rest at the collector: the appliance's sealed file encrypted again under a
key of its own (kept in the database), so destroying the key shreds every copy.

    LRVAULT2 | 8-byte nonce prefix | blocks
    block    = ChaCha20-Poly1305(BLOCK bytes of the file, the last block shorter or empty)
    nonce    = prefix | block index (u32 BE)
    AAD      = "linerec-vault-v2" | device | "/" | id | block index (u64 LE) | final (1 byte)

Blocks let a recording of any size be written and read in bounded memory; the AAD binds each
block to its recording, its place and whether the file ends with it. LRVAULT1 (one AEAD over
the whole file, AAD the id) is still read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from linerec.atomic import atomic_file

MAGIC_V1 = b"LRVAULT1"
MAGIC = b"LRVAULT2"
BLOCK = 1 << 20
TAG = 16
SUFFIX = ".lrec.vault"


def _aad(device: str, recording_id: str, index: int, final: bool) -> bytes:
    return (
        b"linerec-vault-v2"
        + f"{device}/{recording_id}".encode()
        + index.to_bytes(8, "little")
        + bytes([final])
    )


def write_vault(source: Path, target: Path, key: bytes, device: str, recording_id: str) -> None:
    """Encrypt `source` into `target` block by block; synced and renamed into place."""
    aead, prefix = ChaCha20Poly1305(key), os.urandom(8)
    with open(source, "rb") as plain, atomic_file(target, sync_dir=True) as out:
        out.write(MAGIC + prefix)
        block, index = plain.read(BLOCK), 0
        while True:
            following = plain.read(BLOCK)
            final = not following
            nonce = prefix + index.to_bytes(4, "big")
            out.write(aead.encrypt(nonce, block, _aad(device, recording_id, index, final)))
            if final:
                break
            block, index = following, index + 1


def read_vault(path: Path, key: bytes, device: str, recording_id: str) -> Iterator[bytes]:
    """The sealed recording's bytes, block by block (ValueError if altered at rest)."""
    with open(path, "rb") as file:
        magic = file.read(len(MAGIC))
        if magic == MAGIC_V1:
            yield _read_v1(file, key, recording_id, path)
            return
        if magic != MAGIC:
            raise ValueError(f"{path}: not a collector vault file")
        aead, prefix = ChaCha20Poly1305(key), file.read(8)
        block, index = file.read(BLOCK + TAG), 0
        while True:
            following = file.read(BLOCK + TAG)
            final = not following
            try:
                yield aead.decrypt(
                    prefix + index.to_bytes(4, "big"),
                    block,
                    _aad(device, recording_id, index, final),
                )
            except InvalidTag as exc:
                raise ValueError(f"{path}: altered at rest (block {index})") from exc
            if final:
                return
            block, index = following, index + 1


def _read_v1(file: BinaryIO, key: bytes, recording_id: str, path: Path) -> bytes:
    blob = file.read()
    try:
        return ChaCha20Poly1305(key).decrypt(blob[:12], blob[12:], recording_id.encode())
    except InvalidTag as exc:
        raise ValueError(f"{path}: altered at rest") from exc
