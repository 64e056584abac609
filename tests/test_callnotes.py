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


def test_a_pause_is_noted_from_its_first_moment_until_the_resume(tmp_path: Path) -> None:
    """On the boot clock, injected: the restarted daemon's forgotten-pause limit counts from
    the moment the pause was first noted, the time it was down included."""
    now = [1000.0]
    first = CallNotes(tmp_path, BOOT, clock=lambda: now[0])
    first.carry_over({})
    first.note("line1", ["a"], "inbound")
    first.note("line1", ["a"], "inbound", paused=True)
    now[0] = 1010.0
    first.note("line1", ["a", "b"], "inbound", paused=True)  # still paused since 1000
    now[0] = 1025.0
    restarted = CallNotes(tmp_path, BOOT, clock=lambda: now[0])
    (call,) = restarted.left.values()
    assert call == NotedCall(parts=["a", "b"], direction="inbound", paused_at=1000.0)
    assert restarted.paused_for(call) == 25.0
    restarted.carry_over(restarted.left)
    restarted.note("line1", ["a", "b"], "inbound", paused=True)  # taken again, paused
    assert CallNotes(tmp_path, BOOT).left["line1"].paused_at == 1000.0
    restarted.note("line1", ["a", "b"], "inbound")  # resumed
    assert "paused_at" not in json.loads((tmp_path / NOTES).read_text())["line1"]
    assert CallNotes(tmp_path, BOOT).left["line1"].paused_at is None


@pytest.mark.parametrize("paused_at", ["soon", True, None, float("inf")])
def test_a_pause_noted_without_a_time_is_a_pause_from_now(
    tmp_path: Path, paused_at: object, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"line1": {"boot": BOOT, "parts": ["a"], "direction": "", "paused_at": paused_at}}
    (tmp_path / NOTES).write_text(json.dumps(body, allow_nan=True))
    notes = CallNotes(tmp_path, BOOT, clock=lambda: 7.0)
    (call,) = notes.left.values()
    if paused_at is None:  # null: not paused
        assert notes.paused_for(call) is None
    else:  # paused, since when unknown: still paused, never a card number kept
        assert notes.paused_for(call) == 0.0
        assert "paused_at" in caplog.text


def test_the_note_is_replaced_whole_and_never_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written on the main loop at each pick-up and part: an fsync stalling on a slow card
    would delay the notice, and the note never has to outlive a power cut."""
    synced: list[int] = []
    monkeypatch.setattr("os.fsync", synced.append)
    notes = CallNotes(tmp_path, BOOT)
    notes.carry_over({})
    notes.note("line1", ["a"], "inbound")
    notes.note("line1", ["a"], "inbound", paused=True)
    notes.note("line1", [], "")
    assert synced == []
    assert json.loads((tmp_path / NOTES).read_text()) == {}
    assert [p.name for p in tmp_path.iterdir()] == [NOTES]  # no temporary left
