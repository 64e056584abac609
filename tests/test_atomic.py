"""atomic_file / write_atomic: the old content or the new, never a torn file or a stray one."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from linerec.atomic import atomic_file, write_atomic


def test_the_new_content_replaces_the_old_with_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    path.write_bytes(b"old")
    write_atomic(path, b"new", mode=0o640, sync_dir=True)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["identity.key"]


def test_an_error_midway_leaves_the_old_content_and_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(path) as out:
        out.write(b"half")
        raise RuntimeError("power cut")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_the_temporary_file_is_private_while_written(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    with atomic_file(path, mode=0o644) as out:
        (tmp,) = [p for p in tmp_path.iterdir() if p.name.startswith(".secret.")]
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600
        out.write(b"x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_link_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"not yours")
    path = tmp_path / "config"
    os.symlink(elsewhere, path)
    write_atomic(path, b"mine")
    assert not path.is_symlink() and path.read_bytes() == b"mine"
    assert elsewhere.read_bytes() == b"not yours"
