"""What a box's root filesystem holds of its site, carried into the slot an update wrote.

Provisioning writes the site's configuration, keys, network and SSH set-up into /etc of the
slot it runs on; an update's new slot is the image's pristine tree. RAUC's post-install
handler (/usr/lib/linerec/rauc-post-install, image/files) mounts the new slot and runs
`linerec update carry-over` on it, so the box boots the new release as the same box. The list
is factory reset's (what makes a box this site's), plus what identifies the box to itself.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from linerec.provision.reset import SSH_HOST_KEYS, WIPED

# Beyond what factory reset wipes: the box's own identity, which a reset renews instead.
IDENTITY = ("etc/machine-id", "etc/hostname", "etc/timezone", "etc/localtime")


def carry_over(source: Path, target: Path) -> list[str]:
    """Copy the site's files from the root at `source` into the root at `target` (metadata
    and symlinks kept, synced); returns what was copied, one line each."""
    names = [*WIPED, *IDENTITY]
    ssh = source / SSH_HOST_KEYS
    if ssh.is_dir():
        names += [str(key.relative_to(source)) for key in sorted(ssh.glob("ssh_host_*"))]
    done: list[str] = []
    for name in names:
        origin = source / name
        if not origin.exists() and not origin.is_symlink():
            continue
        destination = target / name
        _ensure_parents(destination.parent, source, target)
        if destination.is_dir() and not destination.is_symlink():
            shutil.rmtree(destination)
        elif destination.exists() or destination.is_symlink():
            destination.unlink()
        if origin.is_dir() and not origin.is_symlink():
            shutil.copytree(origin, destination, symlinks=True)
        else:
            shutil.copy2(origin, destination, follow_symlinks=False)
        _own_like(origin, destination)
        done.append(f"carried /{name}")
    os.sync()
    return done


def _own_like(origin: Path, destination: Path) -> None:
    """Owner and group as at the origin, all the way down: the recorder's keys are its own
    (mode 0600), and a copy made by root would lock it out of them in the new slot."""
    if os.geteuid() != 0:
        return  # only root can give files away; a test as a user keeps its own
    pairs = [(origin, destination)]
    if origin.is_dir() and not origin.is_symlink():
        for directory, dirs, files in os.walk(origin):
            for child in (*dirs, *files):
                path = Path(directory) / child
                pairs.append((path, destination / path.relative_to(origin)))
    for source, copy in pairs:
        owner = source.lstat()
        os.lchown(copy, owner.st_uid, owner.st_gid)


def _ensure_parents(directory: Path, source: Path, target: Path) -> None:
    """Make `directory` (under `target`) with the modes and owners of the same directory
    under `source`."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for made in reversed(missing):
        model = source / made.relative_to(target)
        made.mkdir()
        if model.is_dir():
            shutil.copystat(model, made)
            if os.geteuid() == 0:
                owner = model.stat()
                os.chown(made, owner.st_uid, owner.st_gid)
