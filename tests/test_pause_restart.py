"""A call paused for a card number (PCI DSS) when the daemon is restarted mid-pause stays paused.

`linerec run` is killed (SIGKILL: a crash, or systemd's watchdog) while the call is paused by
the pause code; systemd starts it again with the line still off hook. calls.json noted the
pause, so the restarted daemon takes the call paused: the card number the caller says and keys
before the resume code is in no recording, what is said after the resume is. No uplink: the
card alone, decrypted with the collector's key.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calls import run_simulated, wait_until
from conftest import clip, find
from linerec.daemon.callnotes import NOTES
from linerec.store.keys import keygen, load_private
from linerec.store.reader import decrypt
from test_opt_out_restart import STILL_OFF_HOOK, on_card

RATE = 8000
LONG = "seconds = 60.0"  # on past anything the test waits for


def noted_pause(root: Path) -> bool:
    notes = root / "ring" / NOTES
    call = json.loads(notes.read_text()).get("line1") if notes.exists() else None
    return bool(call and isinstance(call.get("paused_at"), float))


@pytest.mark.parametrize(
    ("line", "answer", "replay"),
    [
        ('[[line]]\nconsent = "one-party"\n', ["at = 0.5\noff_hook = true"], []),
        # an inbound call under a notice: the restarted daemon plays it again, paused, and
        # the card number is said after it
        (
            '[[line]]\nconsent = "notice"\nopt_out_key = "9"\nopt_out_window_s = 2\n',
            ["at = 0.5\nring = 1", "wait = 0.5", "off_hook = true", "wait = 8.0"],
            ["wait = 8.0"],
        ),
    ],
    ids=["one-party", "notice"],
)
def test_a_card_number_after_a_restart_mid_pause_is_not_recorded(
    tmp_path: Path, line: str, answer: list[str], replay: list[str]
) -> None:
    keygen(tmp_path / "keys")
    steps = [*answer, 'say = "caller"\nseconds = 2.0', 'dtmf = "*1"', f'say = "office"\n{LONG}']
    daemon, said = run_simulated(tmp_path, steps, line)
    try:
        # reported once noted (the daemon notes the pause before it reports it)
        wait_until(lambda: any("recording_paused" in s for s in said), "the pause", timeout=60)
    finally:
        daemon.kill()
        daemon.wait(10)
    paused_before = noted_pause(tmp_path)
    (before,) = on_card(tmp_path)
    # Restarted with the line still off hook: the card number, said and keyed, then the
    # resume code and the rest of the call.
    card = ['say = "office"\nseconds = 4.0', 'dtmf = "4111111111111111"', 'dtmf = "*2"']
    rest = ['say = "caller"\nseconds = 4.0', "on_hook = true", "wait = 60.0"]
    daemon, said = run_simulated(tmp_path, [STILL_OFF_HOOK, *replay, *card, *rest], line)
    try:
        wait_until(
            lambda: any("recording_sealed" in s and "hang-up" in s for s in said),
            "the call's end",
            timeout=90,
        )
    finally:
        daemon.terminate()
        daemon.wait(20)
    log = "".join(said)[-6000:]
    key = load_private(tmp_path / "keys" / "collector.key")
    (after,) = on_card(tmp_path) - {before}
    audio = decrypt((tmp_path / "ring" / f"{after}.lrec").read_bytes(), key).samples
    assert len(audio) > 3 * RATE, log
    assert find(audio, clip("office")[RATE : RATE * 3])[1] < 3, log  # nothing said in the pause
    assert find(audio, clip("caller")[RATE : RATE * 2])[1] > 30, log  # what came after it
    resumed = [s for s in said if "recording_resumed" in s]
    assert resumed and "by=code" in resumed[0], log
    assert "before the restart: taken paused" in log, log
    assert paused_before, log  # noted in calls.json...
    assert not noted_pause(tmp_path), log  # ...until the resume
