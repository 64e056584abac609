"""Checking an update bundle before anything is written: who signed it, is it whole, is it for
this board, is it newer than what runs.

A bundle is refused with one `BundleRefused` whose `kind` says which check failed and whose
message says why, naming the bundle. Nothing on the box changes before all checks have passed.
The bundles are RAUC's `plain` format: the signature covers every byte, so `rauc info` with
the box's keyring finds an altered or cut bundle before the install starts, not half way
through writing the other slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from linerec.errors import LinerecError
from linerec.update import rauc
from linerec.update.system import RaucSystem
from linerec.update.version import older, parse_version

# What RAUC (OpenSSL) says when the signature is whole but by a certificate the keyring does
# not vouch for (another key, an expired certificate); anything else wrong with the signature
# ("verification failure", "signer certificate not found") means bytes were changed.
_UNTRUSTED = "Verify error"


class BundleRefused(LinerecError):
    """`kind`: "missing", "truncated", "altered", "untrusted", "incompatible", "no-version",
    "older", or "tool" (RAUC could not run a program it needs: the box's fault, not the
    bundle's)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    path: Path
    compatible: str
    version: str
    size: int


def check_bundle(path: Path, system: RaucSystem, running_version: str) -> Bundle:
    """The bundle at `path` if this box may install it, else BundleRefused saying why."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BundleRefused("missing", f"{path}: cannot read the bundle ({exc.strerror})") from exc
    manifest = rauc.info(path, system.keyring)
    if isinstance(manifest, rauc.Failure):
        raise _refusal(path, manifest)
    compatible = manifest.get("compatible")
    if compatible != system.compatible:
        raise BundleRefused(
            "incompatible",
            f"{path}: bundle is for {compatible!r}, this box is {system.compatible!r} "
            f"({system.conf} [system] compatible)",
        )
    version = manifest.get("version")
    candidate = parse_version(version) if isinstance(version, str) else None
    if candidate is None:
        raise BundleRefused(
            "no-version",
            f"{path}: the manifest's [update] version {version!r} is not a release version "
            "like 1.4.2: without one the box cannot tell an older bundle",
        )
    running = parse_version(running_version)
    if running is not None and older(candidate, running):
        raise BundleRefused(
            "older",
            f"{path}: version {version} is older than the running {running_version} "
            "(anti-rollback: a box never goes back to a release with known holes)",
        )
    assert isinstance(version, str)
    return Bundle(path=path, compatible=compatible, version=version, size=size)


# How GLib says a program RAUC runs (unsquashfs, from squashfs-tools) is missing.
_NO_TOOL = "Failed to execute child process"


def _refusal(path: Path, failure: rauc.Failure) -> BundleRefused:
    reason = failure.reason()
    if _NO_TOOL in reason:
        return BundleRefused(
            "tool",
            f"{path}: this box cannot read bundles, not the bundle's fault: rauc could not run "
            f"a program it needs ({reason}; the image needs squashfs-tools)",
        )
    if "signature verification failed" in failure.stderr:
        if _UNTRUSTED in reason:
            return BundleRefused(
                "untrusted",
                f"{path}: not signed by this box's update certificate ({reason})",
            )
        return BundleRefused(
            "altered", f"{path}: altered: its bytes do not match its signature ({reason})"
        )
    return BundleRefused("truncated", f"{path}: truncated or not a RAUC bundle at all ({reason})")
