"""Keys: the collector's key pair (made by `linerec keygen`) and the appliance's identity.

`collector.pub` holds two public keys: X25519, which recordings are encrypted to, and Ed25519,
with which the collector signs acks and commands. `collector.key` holds the two private keys
and never goes near an appliance. `identity.key` is the appliance's own Ed25519 key, made on
first start; it signs recordings (tamper evidence) and decrypts nothing.

All three are small TOML files with base64 values, so a person can tell them apart.

Recipient keys change by epoch (`linerec collector rotate-key`): the collector makes a new
X25519 key, numbered one above the last, and keeps the old private keys in `collector.key`
under `[[retired]]` (with the time they stopped being used), so whatever was encrypted to
them stays readable; the collector finds the key a recording or event needs by its `kid`.
The Ed25519 signing key does not change with the epoch: it is what the appliances trust to
tell them of a new one. An appliance keeps the epoch key it was sent in its store directory
(`collector-epoch.pub`), and it replaces the configured key of the same collector.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import stat
import tomllib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from linerec.atomic import create_atomic, remove_temps, write_atomic
from linerec.errors import LinerecError
from linerec.files import KIB, UnreadableFile, read_text
from linerec.store.digest import sha256
from linerec.store.private import sync_dir, write_private

MAX_KEY_FILE_BYTES = 64 * KIB  # a key file is a few hundred bytes
MAX_EPOCH = 2**53  # JSON and TOML both keep integers this large exact
EPOCH_FILE = "collector-epoch.pub"  # on the appliance, in the store directory
RENEWED_CERT = "device-cert.pem"  # there too: a certificate renewed by command (uplink/tls.py)
PUBLIC_MODE = 0o644  # collector.pub: handed to every appliance

log = logging.getLogger(__name__)


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


# The raw forms directly: cryptography's serialization module (PEM, SSH, PKCS) and the keys
# it loads (RSA, EC, DSA) would cost the recorder over a megabyte and it uses none of them.
def raw_public(key: X25519PublicKey | Ed25519PublicKey) -> bytes:
    return key.public_bytes_raw()


def raw_private(key: X25519PrivateKey | Ed25519PrivateKey) -> bytes:
    return key.private_bytes_raw()


def key_id(public: X25519PublicKey) -> str:
    """A short name for a recipient key: the first 8 bytes of its SHA-256, in hex."""
    return sha256(raw_public(public)).hexdigest()[:16]


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectorPublic:
    encryption: X25519PublicKey
    signing: Ed25519PublicKey
    path: Path
    epoch: int = 1

    @property
    def kid(self) -> str:
        return key_id(self.encryption)


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectorPrivate:
    encryption: X25519PrivateKey
    signing: Ed25519PrivateKey
    path: Path
    epoch: int = 1
    retired: tuple[RetiredKey, ...] = ()

    @property
    def kid(self) -> str:
        return key_id(self.encryption.public_key())

    def decryption_key(self, kid: str) -> X25519PrivateKey | None:
        """The private key of recipient `kid`: this epoch's or a retired one; None if neither.
        A kid not known here is looked up once more in the key file, which `rotate-key` may
        have changed since this was loaded (a collector that runs for months)."""
        found = self._own(kid)
        if found is None and kid not in self.kids:
            try:
                found = load_private(self.path)._own(kid)
            except KeyFileError:
                return None
        return found

    def _own(self, kid: str) -> X25519PrivateKey | None:
        if kid == self.kid:
            return self.encryption
        return next((r.encryption for r in self.retired if r.kid == kid), None)

    @property
    def kids(self) -> list[str]:
        return [self.kid, *(r.kid for r in self.retired)]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetiredKey:
    """An earlier epoch's private key, kept for what was encrypted to it."""

    encryption: X25519PrivateKey
    epoch: int
    retired_at: str  # ISO 8601: when the next epoch began

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


def _field(data: dict[str, object], name: str, path: Path, where: str = "") -> bytes:
    value = data.get(name)
    label = f"{where}.{name}" if where else name
    if not isinstance(value, str):
        raise KeyFileError(f"{path}: {label}: missing")
    return unb64(value, label, path)


def _epoch(data: dict[str, object], path: Path, where: str = "epoch") -> int:
    value = data.get("epoch", 1)  # files made before epochs are epoch 1
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_EPOCH:
        raise KeyFileError(f"{path}: {where}: must be an integer from 1 to {MAX_EPOCH}")
    return value


def load_public(path: Path | str) -> CollectorPublic:
    path = Path(path)
    data = _read_toml(path, "linerec-collector-public")
    return CollectorPublic(
        encryption=X25519PublicKey.from_public_bytes(_field(data, "x25519", path)),
        signing=Ed25519PublicKey.from_public_bytes(_field(data, "ed25519", path)),
        path=path,
        epoch=_epoch(data, path),
    )


def load_private(path: Path | str) -> CollectorPrivate:
    path = Path(path)
    data = _read_toml(path, "linerec-collector-private")
    retired = data.get("retired", [])
    if not isinstance(retired, list) or not all(isinstance(r, dict) for r in retired):
        raise KeyFileError(f"{path}: retired: must be an array of tables ([[retired]])")
    old = []
    for index, entry in enumerate(retired):
        where = f"retired[{index}]"
        stamp = entry.get("retired_at")
        if not isinstance(stamp, str):
            raise KeyFileError(f"{path}: {where}.retired_at: missing")
        old.append(
            RetiredKey(
                encryption=X25519PrivateKey.from_private_bytes(
                    _field(entry, "x25519", path, where)
                ),
                epoch=_epoch(entry, path, f"{where}.epoch"),
                retired_at=stamp,
            )
        )
    return CollectorPrivate(
        encryption=X25519PrivateKey.from_private_bytes(_field(data, "x25519", path)),
        signing=Ed25519PrivateKey.from_private_bytes(_field(data, "ed25519", path)),
        path=path,
        epoch=_epoch(data, path),
        retired=tuple(old),
    )


def _create(path: Path, text: str, mode: int = 0o600) -> None:
    """A new key file (0600 from the start: never readable by others, not even briefly),
    whole or not at all (linerec.atomic); FileExistsError if one is there. A failed write
    (a full disk) is said naming the file."""
    try:
        create_atomic(path, text.encode(), mode=mode, sync_dir=True)
    except FileExistsError:
        raise
    except OSError as exc:
        raise KeyFileError(f"{path}: not written ({exc.strerror or exc})") from exc


def keygen(directory: Path) -> tuple[Path, Path]:
    """Write `collector.key` (0600) and `collector.pub` into `directory`; refuse to overwrite.
    A private key alone (a cut between the two writes) gets its public key written."""
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / "collector.key", directory / "collector.pub"
    if private_path.exists() and not public_path.exists():
        return private_path, _complete_pair(private_path, public_path)
    if public_path.exists() and not private_path.exists():
        raise KeyFileError(f"{private_path}: missing beside {public_path}; not making another")
    for path in (private_path, public_path):
        if path.exists():
            raise KeyFileError(f"{path}: already exists; not overwriting a key")
    key = CollectorPrivate(
        encryption=X25519PrivateKey.generate(),
        signing=Ed25519PrivateKey.generate(),
        path=private_path,
    )
    try:
        _create(private_path, private_text(key))
        _create(public_path, public_text(public_of(key)), PUBLIC_MODE)
    except FileExistsError as exc:  # made meanwhile by another keygen
        raise KeyFileError(f"{exc.filename}: already exists; not overwriting a key") from exc
    return private_path, public_path


def _complete_pair(private_path: Path, public_path: Path) -> Path:
    """The public key of the private key there, written beside it (never over one)."""
    try:
        _create(public_path, public_text(public_of(load_private(private_path))), PUBLIC_MODE)
    except FileExistsError as exc:  # made meanwhile by another keygen
        raise KeyFileError(f"{exc.filename}: already exists; not overwriting a key") from exc
    return public_path


def public_of(key: CollectorPrivate, path: Path | None = None) -> CollectorPublic:
    return CollectorPublic(
        encryption=key.encryption.public_key(),
        signing=key.signing.public_key(),
        path=path or key.path.with_suffix(".pub"),
        epoch=key.epoch,
    )


def private_text(key: CollectorPrivate) -> str:
    text = (
        "# linerec collector PRIVATE key: decrypts recordings. Keep it on the collector only.\n"
        f'kind = "linerec-collector-private"\nkid = "{key.kid}"\nepoch = {key.epoch}\n'
        f'x25519 = "{b64(raw_private(key.encryption))}"\n'
        f'ed25519 = "{b64(raw_private(key.signing))}"\n'
    )
    for old in key.retired:
        text += (
            f"\n# epoch {old.epoch}: no longer encrypted to; kept for what was\n[[retired]]\n"
            f'kid = "{old.kid}"\nepoch = {old.epoch}\nretired_at = "{old.retired_at}"\n'
            f'x25519 = "{b64(raw_private(old.encryption))}"\n'
        )
    return text


def public_text(public: CollectorPublic) -> str:
    return (
        "# linerec collector public key: give it to appliances ([store] recipients).\n"
        f'kind = "linerec-collector-public"\nkid = "{public.kid}"\nepoch = {public.epoch}\n'
        f'x25519 = "{b64(raw_public(public.encryption))}"\n'
        f'ed25519 = "{b64(raw_public(public.signing))}"\n'
    )


def rotate(private_path: Path, now: datetime | None = None) -> CollectorPrivate:
    """A new epoch: a new X25519 key in `private_path` (the old one kept under [[retired]])
    and in the `.pub` beside it. Each file is replaced whole and synced, the key first: a
    power cut leaves either epoch, never a public key whose private key was lost. What a
    rotation cut off mid-write left beside them is removed first (`_remove_cut_writes`)."""
    old = load_private(private_path)
    _remove_cut_writes(private_path, old)
    stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    retired = RetiredKey(encryption=old.encryption, epoch=old.epoch, retired_at=stamp)
    new = replace(
        old,
        encryption=X25519PrivateKey.generate(),
        epoch=old.epoch + 1,
        retired=(retired, *old.retired),
    )
    write_private(private_path, private_text(new).encode())
    public = public_of(new)
    # the copy handed to appliances: readable, as keygen leaves it
    write_atomic(public.path, public_text(public).encode(), mode=PUBLIC_MODE)
    sync_dir(private_path.parent)
    return new


def _remove_cut_writes(private_path: Path, key: CollectorPrivate) -> None:
    """The temporary files of the key files' replacements a kill or a power cut left
    (linerec.atomic), and the `.tmp` an older linerec wrote the public key through (a regular
    file only: a link there is not ours), each named in the log."""
    names = {private_path.name, public_of(key).path.name}
    for temp in remove_temps(private_path.parent, lambda target: target in names):
        log.warning("%s: removed, left by a key rotation cut off mid-write", temp)
    older = public_of(key).path.with_name(public_of(key).path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISREG(older.lstat().st_mode):
            older.unlink()
            log.warning("%s: removed, left by a key rotation cut off mid-write", older)


def forget_retired(private_path: Path, kid: str) -> CollectorPrivate:
    """Drop retired key `kid` (crypto-shredding what only it opens)."""
    key = load_private(private_path)
    if kid == key.kid:
        raise KeyFileError(f"{private_path}: {kid} is the current epoch's key; rotate first")
    if key.decryption_key(kid) is None:
        raise KeyFileError(
            f"{private_path}: no retired key {kid} (retired: "
            f"{', '.join(r.kid for r in key.retired) or 'none'})"
        )
    kept = replace(key, retired=tuple(r for r in key.retired if r.kid != kid))
    write_private(private_path, private_text(kept).encode())
    sync_dir(private_path.parent)
    return kept


def save_epoch(directory: Path, public: CollectorPublic) -> Path:
    """Keep an epoch key an appliance was sent, durably, in its store directory."""
    path = directory / EPOCH_FILE
    write_private(path, public_text(public).encode())
    sync_dir(directory)
    return path


def with_epoch(recipients: list[CollectorPublic], directory: Path) -> list[CollectorPublic]:
    """`recipients`, each collector's key replaced by the newer epoch kept in `directory`."""
    path = directory / EPOCH_FILE
    if not path.exists():
        return recipients
    epoch = load_public(path)
    signer = raw_public(epoch.signing)
    return [
        epoch if raw_public(r.signing) == signer and epoch.epoch > r.epoch else r
        for r in recipients
    ]


def load_or_create_identity(path: Path) -> Ed25519PrivateKey:
    """The appliance's signing key, made on first start (mode 0600)."""
    if path.exists():
        data = _read_toml(path, "linerec-device-identity")
        return Ed25519PrivateKey.from_private_bytes(_field(data, "ed25519", path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    try:
        _create(
            path,
            "# linerec appliance identity: signs recordings; decrypts nothing.\n"
            f'kind = "linerec-device-identity"\ned25519 = "{b64(raw_private(key))}"\n',
        )
    except FileExistsError:  # made meanwhile by another process (an `uplink flush`): its
        return load_or_create_identity(path)
    return key
