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
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from linerec.atomic import atomic_file, temp_target
from linerec.ids import recording_id_problem

MAGIC_V1 = b"LRVAULT1"
MAGIC = b"LRVAULT2"
BLOCK = 1 << 20
TAG = 16
SUFFIX = ".lrec.vault"
_VERSION = re.compile(r"\.v[0-9]+\Z")  # a redacted version's vault: <id>.v<N>.lrec.vault


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


def is_vault_temp(name: str, device: str) -> bool:
    """Whether `name` is exactly the temporary file `write_vault` writes a vault of one of
    `device`'s recordings into (left behind if the process was killed meanwhile)."""
    target = temp_target(name)
    if target is None or not target.endswith(SUFFIX):
        return False
    recording_id = _VERSION.sub("", target.removesuffix(SUFFIX))
    return not recording_id_problem(device, recording_id)


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


class VaultFile:
    """The sealed recording in a vault file, read at any offset: only the blocks a read
    touches are decrypted (the last two are kept, as a player reads on from where it was).
    A block altered at rest is a ValueError naming the recording and the block."""

    def __init__(self, path: Path, key: bytes, device: str, recording_id: str) -> None:
        self.path, self._device, self._id = path, device, recording_id
        self._aead = ChaCha20Poly1305(key)
        self._cache: dict[int, bytes] = {}
        self._lock = threading.Lock()  # a player's requests overlap
        with open(path, "rb") as file:
            magic = file.read(len(MAGIC))
            if magic == MAGIC_V1:  # one AEAD over the whole file: read it whole, once
                self._whole: bytes | None = _read_v1(file, key, recording_id, path)
                self._prefix, self._blocks, self.size = b"", 1, len(self._whole)
                return
            if magic != MAGIC:
                raise ValueError(f"{device}/{recording_id}: not a collector vault file")
            self._whole = None
            self._prefix = file.read(8)
            stored = os.fstat(file.fileno()).st_size - len(MAGIC) - 8
        self._blocks = max(1, -(-stored // (BLOCK + TAG)))
        last = stored - (self._blocks - 1) * (BLOCK + TAG)
        if len(self._prefix) < 8 or last < TAG:
            raise ValueError(f"{device}/{recording_id}: vault file cut short")
        self.size = (self._blocks - 1) * BLOCK + last - TAG

    def read(self, offset: int, length: int) -> bytes:
        if self._whole is not None:
            return self._whole[offset : offset + length]
        end = min(offset + length, self.size)
        parts = []
        while offset < end:
            index, within = divmod(offset, BLOCK)
            block = self._block(index)
            parts.append(block[within : within + end - offset])
            offset += len(parts[-1])
            if not parts[-1]:
                break
        return b"".join(parts)

    def _block(self, index: int) -> bytes:
        with self._lock:
            cached = self._cache.get(index)
            if cached is None:
                cached = self._decrypt(index)
                if len(self._cache) >= 2:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[index] = cached
            return cached

    def _decrypt(self, index: int) -> bytes:
        final = index == self._blocks - 1
        with open(self.path, "rb") as file:
            file.seek(len(MAGIC) + 8 + index * (BLOCK + TAG))
            sealed = file.read(BLOCK + TAG)
        try:
            return self._aead.decrypt(
                self._prefix + index.to_bytes(4, "big"),
                sealed,
                _aad(self._device, self._id, index, final),
            )
        except InvalidTag as exc:
            raise ValueError(f"{self._device}/{self._id}: altered at rest (block {index})") from exc
