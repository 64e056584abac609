"""calls.json, the daemon's note of each line's call in progress (daemon/callnotes.py): read
back only within the boot that wrote it, and never trusted beyond what it plainly says."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from linerec.daemon.callnotes import NOTES, CallNotes, NotedCall, boot_id

BOOT = "8c1f1f3e-1111-4222-8333-944455556666"


def test_what_one_daemon_notes_the_next_reads_back_in_the_same_boot_only(tmp_path: Path) -> None:
    first = CallNotes(tmp_path, BOOT)
    first.carry_over({})
    first.note("line1", ["box1-00000001-20261130T000000Z-line1"], "inbound")
    first.note("line2", ["box1-00000002-20261130T000000Z-line2"], "outbound")
    first.note("line2", [], "")  # that call ended
    assert CallNotes(tmp_path, BOOT).left == {
        "line1": NotedCall(parts=["box1-00000001-20261130T000000Z-line1"], direction="inbound")
    }
    assert CallNotes(tmp_path, "another boot").left == {}
    first.note("line2", [], "inbound")  # picked up, in its notice: nothing kept yet
    assert CallNotes(tmp_path, BOOT).left["line2"] == NotedCall(parts=[], direction="inbound")
    first.note("line2", [], "")
    assert CallNotes(tmp_path, "").left == {}  # no boot id: nothing links
    restarted = CallNotes(tmp_path, BOOT)
    restarted.carry_over({})  # the line was on hook at the restart: that call is over
    assert json.loads((tmp_path / NOTES).read_text()) == {}
    assert (tmp_path / NOTES).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "content",
    [
        b"{",
        b"[]",
        b"[" * 40000 + b"]" * 40000,
        json.dumps({"line1": {"boot": BOOT, "parts": [1, 2]}}).encode(),
        json.dumps({"line1": {"boot": BOOT, "parts": "box1-00000001"}}).encode(),
        json.dumps({"line1": [BOOT]}).encode(),
        json.dumps({"line1": {"boot": BOOT, "parts": ["a"], "direction": 1}}).encode(),
    ],
    ids=["torn", "a list", "deep", "numbers", "a string", "not a note", "no direction"],
)
def test_a_note_that_is_not_one_links_nothing(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / NOTES).write_bytes(content)
    with caplog.at_level(logging.WARNING):
        assert CallNotes(tmp_path, BOOT).left == {}


def test_a_note_too_large_or_not_a_file_is_named_and_links_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / NOTES).write_bytes(b" " * (65 * 1024))
    with caplog.at_level(logging.WARNING):
        assert CallNotes(tmp_path, BOOT).left == {}
    assert f"{tmp_path / NOTES}: unreadable" in caplog.text
    (tmp_path / NOTES).unlink()
    (tmp_path / NOTES).mkdir()
    assert CallNotes(tmp_path, BOOT).left == {}


def test_the_boot_id_is_the_kernels() -> None:
    assert boot_id() == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert boot_id(Path("/nonexistent")) == ""
