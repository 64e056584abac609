"""The recording page's account of the call: pauses placed where they are in the recording
(a paused call's audio is not kept), the opt-out offered and not used, the call's events."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from console_site import PASSWORD, Clock, add_user, console, deliver
from linerec.collector.web.app import build_app
from linerec.collector.web.service import opt_out_offer, pause_marks
from linerec.daemon.simulate import example_call


def paused_call(where: Path) -> Path:
    """The example inbound call, with the line's button pressed to pause after the caller
    spoke, and again 3 s later to resume."""
    text = example_call("inbound.toml").read_text()
    text = text.replace(
        'say = "caller"        # 7.1 s of recorded speech\n',
        'say = "caller"\n\n[[call.step]]\npress = true\n\n[[call.step]]\nwait = 3.0\n\n'
        "[[call.step]]\npress = true\n",
    )
    assert "press = true" in text
    call = where / "paused.toml"
    call.write_text(text)
    return call


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("paused")
    return deliver(root / "site", [paused_call(root)])


def test_a_pause_is_a_point_in_the_recording_and_the_events_are_listed(site: Path) -> None:
    clock = Clock()
    service = console(site, clock)
    totp = add_user(service, "ann", "supervisor")
    (row,) = service.store.recordings()
    with TestClient(build_app(service), base_url="http://127.0.0.1") as client:
        client.post("/api/login", json={"name": "ann", "password": PASSWORD,
                                        "code": totp.at(clock.now)})  # fmt: skip
        meta = client.get(f"/api/recordings/{row['id']}").json()
        (pause,) = meta["pauses"]
        assert pause["by"] == "button" and 2.9 < pause["seconds"] < 3.3
        # The notice (5.6 s) and the caller (7.1 s) are recorded; the pause is after them.
        assert 12.5 < pause["at"] < 13.5, pause
        assert pause["at"] < row["duration"] - 5  # the office's 5.3 s follow in the recording
        names = [e["event"] for e in meta["events"]]
        assert names.index("recording_paused") < names.index("recording_resumed")
        assert names[-1] == "recording_sealed" and "answered" in names
        paused = next(e for e in meta["events"] if e["event"] == "recording_paused")
        assert paused["details"] == "by button" and 12.5 < paused["offset"] < 13.5
        ringing = next(e for e in meta["events"] if e["event"] == "ringing")
        assert ringing["offset"] < -5  # before the recording began
        page = client.get(f"/recordings/{row['id']}").text
        assert "into the recording, 3" in page and "s not recorded (by button" in page
        assert "not offered (no opt-out key on this line)" in page
        assert 'class="event-recording_paused"' in page
        svg = client.get(f"/recordings/{row['id']}/waveform.svg").text
        assert "paused 3" in svg


def test_the_opt_out_offer_is_read_from_the_policy_kept_with_the_call() -> None:
    offered = {"consent": "notice", "direction": "inbound",
               "policy": {"opt_out_key": "9", "opt_out_window_s": 5}}  # fmt: skip
    assert opt_out_offer(offered) == (
        "offered: key 9 for 5 s after the notice; not used (a call opted out of is not kept)"
    )
    assert opt_out_offer({**offered, "direction": "outbound"}).startswith("not offered")
    assert opt_out_offer({**offered, "policy": {"opt_out_key": ""}}).startswith("not offered")


def test_pauses_after_the_first_leave_out_the_time_not_recorded() -> None:
    metadata = {
        "started_at": "2026-11-30T10:00:00.000+00:00",
        "pauses": [
            {"from": "2026-11-30T10:00:10.000+00:00", "seconds": 5.0, "by": "key"},
            {"from": "2026-11-30T10:00:30.000+00:00", "seconds": 2.0, "by": "command"},
        ],
    }
    marks = pause_marks(metadata, None)
    assert [(m["at"], m["seconds"], m["by"]) for m in marks] == [
        (10.0, 5.0, "key"),
        (25.0, 2.0, "command"),  # 30 s after the start, 5 s of which were not recorded
    ]
