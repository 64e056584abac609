"""Keys: the collector's key pair (made by `linerec keygen`) and the appliance's identity.

`collector.pub` holds two public keys: X25519, which recordings are encrypted to, and Ed25519,
with which the collector signs acks and commands. `collector.key` holds the two private keys
and never goes near an appliance. `identity.key` is the appliance's own Ed25519 key, made on
first start; it signs recordings (tamper evidence) and decrypts nothing.

All three are small TOML files with base64 values, so a person can tell them apart.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from linerec.errors import LinerecError
from linerec.files import KIB, UnreadableFile, read_text

MAX_KEY_FILE_BYTES = 64 * KIB  # a key file is a few hundred bytes


class KeyFileError(LinerecError, ValueError):
    """A key file is missing, unreadable, or not the kind of key expected."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, what: str, path: Path) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: {what}: not base64") from exc
    if len(data) != 32:
        raise KeyFileError(f"{path}: {what}: expected a 32-byte key (got {len(data)} bytes)")
    return data


def raw_public(key: X25519PublicKey | Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def raw_private(key: X25519PrivateKey | Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def key_id(public: X25519PublicKey) -> str:
    """A short name for a recipient key: the first 8 bytes of its SHA-256, in hex."""
    return hashlib.sha256(raw_public(public)).hexdigest()[:16]


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectorPublic:
    encryption: X25519PublicKey
    signing: Ed25519PublicKey
    path: Path

    @property
    def kid(self) -> str:
        return key_id(self.encryption)


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectorPrivate:
    encryption: X25519PrivateKey
    signing: Ed25519PrivateKey
    path: Path

    @property
    def kid(self) -> str:
        return key_id(self.encryption.public_key())


def _read_toml(path: Path, kind: str) -> dict[str, object]:
    try:
        data = tomllib.loads(read_text(path, limit=MAX_KEY_FILE_BYTES))
    except UnreadableFile as exc:
        if str(exc) == "no such file":
            raise KeyFileError(f"{path}: no such {kind} file") from exc
        raise KeyFileError(f"{path}: not a readable {kind} file: {exc}") from exc
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise KeyFileError(f"{path}: not a readable {kind} file: {exc!r:.200}") from exc
    if data.get("kind") != kind:
        raise KeyFileError(f"{path}: is not a {kind} file (kind = {data.get('kind')!r})")
    return data


def _field(data: dict[str, object], name: str, path: Path) -> bytes:
    value = data.get(name)
    if not isinstance(value, str):
        raise KeyFileError(f"{path}: {name}: missing")
    return unb64(value, name, path)


def load_public(path: Path | str) -> CollectorPublic:
    path = Path(path)
    data = _read_toml(path, "linerec-collector-public")
    return CollectorPublic(
        encryption=X25519PublicKey.from_public_bytes(_field(data, "x25519", path)),
        signing=Ed25519PublicKey.from_public_bytes(_field(data, "ed25519", path)),
        path=path,
    )


def load_private(path: Path | str) -> CollectorPrivate:
    path = Path(path)
    data = _read_toml(path, "linerec-collector-private")
    return CollectorPrivate(
        encryption=X25519PrivateKey.from_private_bytes(_field(data, "x25519", path)),
        signing=Ed25519PrivateKey.from_private_bytes(_field(data, "ed25519", path)),
        path=path,
    )


def _write_secret(path: Path, text: str) -> None:
    """Create with mode 0600 from the start: never readable by others, not even briefly."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)  # whatever the umask
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


def keygen(directory: Path) -> tuple[Path, Path]:
    """Write `collector.key` (0600) and `collector.pub` into `directory`; refuse to overwrite."""
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / "collector.key", directory / "collector.pub"
    for path in (private_path, public_path):
        if path.exists():
            raise KeyFileError(f"{path}: already exists; not overwriting a key")
    encryption, signing = X25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    kid = key_id(encryption.public_key())
    _write_secret(
        private_path,
        "# linerec collector PRIVATE key: decrypts recordings. Keep it on the collector only.\n"
        f'kind = "linerec-collector-private"\nkid = "{kid}"\n'
        f'x25519 = "{b64(raw_private(encryption))}"\ned25519 = "{b64(raw_private(signing))}"\n',
    )
    public_path.write_text(
        "# linerec collector public key: give it to appliances ([store] recipients).\n"
        f'kind = "linerec-collector-public"\nkid = "{kid}"\n'
        f'x25519 = "{b64(raw_public(encryption.public_key()))}"\n'
        f'ed25519 = "{b64(raw_public(signing.public_key()))}"\n',
        encoding="utf-8",
    )
    return private_path, public_path


def load_or_create_identity(path: Path) -> Ed25519PrivateKey:
    """The appliance's signing key, made on first start (mode 0600)."""
    if path.exists():
        data = _read_toml(path, "linerec-device-identity")
        return Ed25519PrivateKey.from_private_bytes(_field(data, "ed25519", path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    _write_secret(
        path,
        "# linerec appliance identity: signs recordings; decrypts nothing.\n"
        f'kind = "linerec-device-identity"\ned25519 = "{b64(raw_private(key))}"\n',
    )
    return key
