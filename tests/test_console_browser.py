"""The console in a real browser: Debian's chromium driven by Playwright, against the console
served by uvicorn on a loopback port over real recordings delivered through mosquitto.

Each test saves a screenshot of its page under its temporary directory (the README's two
come from here). The browser is launched once for the module.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect

from chromium import AUTOPLAY, WAIT_MS, chromium, log_in, submit_login
from console_site import Clock, FleetFeed, Server, add_user, console, deliver
from linerec.collector.exports import redaction_note, verify_export
from linerec.collector.review import Criterion, Scorecard
from linerec.store.keys import load_public


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium(AUTOPLAY) as launched:
        yield launched


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, pyotp.TOTP]]:
    site = deliver(tmp_path_factory.mktemp("browser") / "site")
    service = console(site, Clock())  # real time, moved on a step for each login's code
    totp = add_user(service, "ann", "supervisor")
    with Server(service) as server:
        yield server, totp


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    yield opened
    context.close()


def wait_for_metadata(page: Page) -> None:
    """Until the player knows the recording's duration. Waited on in the page by its own
    event: `wait_for_function` polls with eval, which the console's CSP rightly refuses."""
    page.evaluate(
        """(ms) => new Promise((done, fail) => {
            const player = document.getElementById('player');
            if (player.readyState >= 1) return done();
            player.addEventListener('loadedmetadata', () => done(), {once: true});
            player.addEventListener('error', () => fail(new Error('the player failed')));
            setTimeout(() => fail(new Error('no metadata in time')), ms);
        })""",
        WAIT_MS,
    )


def test_log_in_find_a_call_by_number_and_time(
    page: Page, served: tuple[Server, pyotp.TOTP], tmp_path: Path
) -> None:
    server, totp = served
    log_in(page, server, totp, "ann")
    assert page.locator("table.results tbody tr").count() == 2
    page.fill("input[name=number]", "55512345")
    page.click("form.search button[type=submit]")
    page.wait_for_url("**/recordings?*number=55512345*")
    rows = page.locator("table.results tbody tr")
    assert rows.count() == 1 and "5551234567" in rows.first.inner_text()
    page.screenshot(path=str(tmp_path / "search.png"), full_page=True)
    page.fill("input[name=number]", "")
    page.fill("input[name=since]", "2999-01-01T00:00:00")
    page.click("form.search button[type=submit]")
    page.wait_for_url("**since=2999*")
    assert page.locator("table.results tbody tr").count() == 0
    assert "0 recordings" in page.inner_text("p.count")
    page.fill("input[name=since]", "2000-01-01T00:00:00")
    page.fill("input[name=until]", "2999-01-01T00:00:00")
    page.click("form.search button[type=submit]")
    page.wait_for_url("**until=2999*")
    assert page.locator("table.results tbody tr").count() == 2


def test_play_a_recording_and_seek(
    page: Page, served: tuple[Server, pyotp.TOTP], tmp_path: Path
) -> None:
    server, totp = served
    log_in(page, server, totp, "ann")
    ranges: list[str] = []
    page.on(
        "request",
        lambda request: (
            ranges.append(request.headers.get("range", "")) if "/audio.wav" in request.url else None
        ),
    )
    page.goto(f"{server.url}/recordings?number=55512345")
    duration = float(page.inner_text("table.results tbody tr td.num").split()[0])
    page.click("table.results tbody tr a")
    page.wait_for_url("**/recordings/box1-*")
    assert page.locator("audio").count() == 0  # a reason first
    page.fill("input[name=reason]", "dispute 7")
    page.click("form.play button[type=submit]")
    page.wait_for_selector("audio#player")
    wait_for_metadata(page)
    played = page.evaluate("document.getElementById('player').duration")
    assert abs(played - duration) < 0.15
    page.evaluate(
        """() => new Promise((done) => {
            const player = document.getElementById('player');
            player.addEventListener('seeked', () => done(), {once: true});
            player.currentTime = player.duration - 2;
        })"""
    )
    assert page.evaluate("document.getElementById('player').currentTime") > played - 3
    assert any(r.startswith("bytes=") for r in ranges), ranges  # the player asked for a range
    assert page.locator("img#waveform").evaluate("img => img.naturalWidth") == 800
    assert "notice played" in page.inner_text("dl.facts")
    page.screenshot(path=str(tmp_path / "recording.png"), full_page=True)
    entries = server.service.audit.entries()
    assert [e["action"] for e in entries if e["reason"] == "dispute 7"] == ["play"]


def test_a_wrong_code_in_the_browser_says_only_that_it_failed(
    page: Page, served: tuple[Server, pyotp.TOTP], tmp_path: Path
) -> None:
    server, _ = served
    submit_login(page, server, "ann", "000000")
    assert page.inner_text("p.error") == "wrong name, password or code"
    page.screenshot(path=str(tmp_path / "login.png"))
    page.goto(f"{server.url}/recordings")
    assert page.url == f"{server.url}/login"


def test_redact_a_span_and_hear_silence_there(
    page: Page, served: tuple[Server, pyotp.TOTP], tmp_path: Path
) -> None:
    server, totp = served
    log_in(page, server, totp, "ann")
    page.goto(f"{server.url}/recordings?direction=outbound")
    page.click("table.results tbody tr a")
    page.wait_for_url("**/recordings/box1-*")
    page.fill("form.redact input[name=from]", "1")
    page.fill("form.redact input[name=to]", "2.5")
    page.fill("form.redact input[name=reason]", "card number read out")
    page.click("form.redact button[type=submit]")
    page.wait_for_selector("p.done")
    assert "1-2.5 s silenced in version 1" in page.inner_text("p.done")
    assert "1-2.5 s by ann (card number read out)" in page.inner_text("dd.redactions")
    page.fill("form.play input[name=reason]", "check the redaction")
    page.click("form.play button[type=submit]")
    page.wait_for_selector("audio#player")
    # The browser fetches the streamed WAV and decodes it itself, at the recording's rate.
    levels = page.evaluate(
        """async () => {
            const player = document.getElementById('player');
            const data = await (await fetch(player.src)).arrayBuffer();
            const audio = await new OfflineAudioContext(1, 8000, 8000).decodeAudioData(data);
            const samples = audio.getChannelData(0);
            const peak = (from, to) => {
                let high = 0;
                for (let i = Math.round(from * 8000); i < Math.round(to * 8000); i++)
                    high = Math.max(high, Math.abs(samples[i]));
                return high;
            };
            return {before: peak(0, 1), span: peak(1, 2.5), after: peak(2.5, audio.duration)};
        }"""
    )
    assert levels["span"] == 0, levels
    assert levels["before"] > 0.001 or levels["after"] > 0.001, levels  # sound elsewhere
    page.screenshot(path=str(tmp_path / "redacted.png"), full_page=True)
    actions = [(e["who"], e["action"]) for e in server.service.audit.entries()]
    assert ("ann", "redact") in actions


def test_review_a_sampled_call(
    page: Page, served: tuple[Server, pyotp.TOTP], tmp_path: Path
) -> None:
    server, totp = served
    server.service.scorecard = Scorecard(
        criteria=(
            Criterion(name="script", question="Did the agent read the script?", answer="yes/no"),
            Criterion(name="courtesy", question="How courteous was the agent?", answer="1-5"),
        )
    )
    log_in(page, server, totp, "ann")
    page.click("header nav a[href='/review']")
    page.select_option("form.sample select[name=per]", "line")
    page.fill("form.sample input[name=n]", "1")
    page.fill("form.sample input[name=seed]", "week-48")
    page.click("form.sample button[type=submit]")
    page.wait_for_url("**/review?*seed=week-48*")
    assert "seed week-48" in page.inner_text("p.draw")
    assert page.locator("table.sample tbody tr").count() == 2  # one call from each line
    page.click("table.sample tbody tr:first-child a")
    page.wait_for_url("**/recordings/box1-*/review?*")
    wait_for_metadata(page)
    assert page.evaluate("document.getElementById('player').duration") > 1
    page.check("input[name=c_script][value=yes]")
    page.check("input[name=c_courtesy][value='4']")
    page.fill("form.scorecard textarea[name=comment]", "read the advisory")
    page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
    page.click("form.scorecard button[type=submit]")
    page.wait_for_selector("p.done")
    assert "script: yes, courtesy: 4" in page.inner_text("table.reviews")
    entries = server.service.audit.entries()
    plays = {e["reason"] for e in entries if e["action"] == "play"}
    assert "quality review (sample week-48)" in plays
    (review,) = [e for e in entries if e["action"] == "review"]
    assert review["who"] == "ann" and '"courtesy": 4' in review["reason"]


def test_edit_a_review(page: Page, served: tuple[Server, pyotp.TOTP], tmp_path: Path) -> None:
    """A supervisor corrects a review: the form comes filled in with its answers, the edit
    is kept (the review says who edited it) and audited with what it said before."""
    server, totp = served
    server.service.scorecard = Scorecard(
        criteria=(
            Criterion(name="script", question="Did the agent read the script?", answer="yes/no"),
            Criterion(name="courtesy", question="How courteous was the agent?", answer="1-5"),
        )
    )
    log_in(page, server, totp, "ann")
    page.goto(f"{server.url}/recordings?number=55512345")
    page.click("table.results tbody tr a")
    page.wait_for_url("**/recordings/box1-*")
    page.click("a[href*='/review?device=']")
    page.wait_for_url("**/recordings/box1-*/review?*")
    page.check("input[name=c_script][value=no]")
    page.check("input[name=c_courtesy][value='2']")
    page.fill("form.scorecard textarea[name=comment]", "no advisory")
    page.click("form.scorecard button[type=submit]")
    page.wait_for_selector("p.done")
    row = page.locator("table.reviews tbody tr").last
    number = row.locator("td.num").inner_text()
    row.locator("a.edit").click()
    page.wait_for_url(f"**/reviews/{number}/edit")
    assert page.is_checked("input[name=c_script][value=no]")  # its answers, to correct
    assert page.is_checked("input[name=c_courtesy][value='2']")
    assert page.input_value("form.scorecard textarea[name=comment]") == "no advisory"
    assert f"Editing review {number} by ann" in page.inner_text("p.editing")
    page.check("input[name=c_script][value=yes]")
    page.check("input[name=c_courtesy][value='4']")
    page.fill("form.scorecard textarea[name=comment]", "the advisory was read at 2:10")
    page.screenshot(path=str(tmp_path / "review-edit.png"), full_page=True)
    page.click("form.scorecard button[type=submit]")
    page.wait_for_selector("p.done")
    assert f"review {number} edited" in page.inner_text("p.done")
    edited = page.locator(f"table.reviews tr#review-{number}").inner_text()
    assert "script: yes, courtesy: 4" in edited and "edited by ann" in edited
    assert "the advisory was read at 2:10" in edited
    page.screenshot(path=str(tmp_path / "review-edited.png"), full_page=True)
    (entry,) = [e for e in server.service.audit.entries() if e["action"] == "review edited"]
    assert entry["who"] == "ann" and entry["reason"].startswith(f"review {number}: ")
    assert '"was": {"scores": {"script": "no", "courtesy": 2}' in entry["reason"]


def test_an_admin_grants_a_listener_a_line(
    page: Page, served: tuple[Server, pyotp.TOTP], tmp_path: Path
) -> None:
    server, _ = served
    admin = add_user(server.service, "adm", "admin")
    add_user(server.service, "lis", "listener")
    log_in(page, server, admin, name="adm")
    page.click("header nav a[href='/users']")
    page.wait_for_url("**/users")
    row = page.locator("tr#user-lis")
    assert "none" in row.locator("td.grants").inner_text()
    row.locator("form.grant select[name=kind]").select_option("line")
    row.locator("form.grant input[name=value]").fill("box1/line1")
    row.locator("form.grant button[type=submit]").click()
    page.wait_for_selector("p.done")
    assert "line box1/line1" in page.locator("tr#user-lis td.grants").inner_text()
    page.screenshot(path=str(tmp_path / "users.png"), full_page=True)
    assert [g.value for g in server.service.accounts.grants("lis")] == ["box1/line1"]
    page.goto(f"{server.url}/recordings?number=55512345")
    page.click("table.results tbody tr a")
    page.wait_for_url("**/recordings/box1-*")
    assert page.locator("form.delete button[type=submit]").is_visible()  # an admin's
    page.screenshot(path=str(tmp_path / "recording-admin.png"), full_page=True)
    page.click("header nav a[href='/retention']")
    page.wait_for_url("**/retention")
    assert "kept until they are deleted by hand" in page.inner_text("main")
    page.screenshot(path=str(tmp_path / "retention.png"), full_page=True)
    actions = [(e["who"], e["action"], e["reason"]) for e in server.service.audit.entries()]
    assert ("adm", "grant", "lis line:box1/line1") in actions


def test_the_fleet_page_changes_when_an_appliance_goes_offline(
    page: Page, served: tuple[Server, pyotp.TOTP], tmp_path: Path
) -> None:
    server, _ = served
    admin = add_user(server.service, "ada", "admin")
    site = server.service.store.data_dir.parent / "collector.toml"
    with FleetFeed(site) as feed:
        feed.publish("box1", "status", {"state": "online", "connection": 1, "last_counter": 0})
        feed.publish(
            "box1",
            "health",
            {"ring_fill": 0.25, "clock_synchronized": True, "faults": [],
             "lines": [{"line": "line1", "state": "idle", "off_hook": False}]},
        )  # fmt: skip
        log_in(page, server, admin, name="ada")
        page.click("header nav a[href='/fleet']")
        state = page.locator("table.fleet tbody tr[data-device=box1] td.state")
        assert state.inner_text().startswith("online since")
        assert "25% full" in page.inner_text("table.fleet")
        feed.publish("box1", "status", {"state": "offline", "connection": 1})
        # No reload: the page's own refresh brings the change.
        expect(state).to_have_text(re.compile(r"^offline since "), timeout=WAIT_MS)
        assert state.get_attribute("class") == "state offline"
        feed.publish(
            "box1",
            "health",
            {"ring_fill": 0.25, "clock_synchronized": True, "faults": [],
             "lines": [{"line": "line1", "state": "connected", "off_hook": True}]},
        )  # fmt: skip
        lines = page.locator("table.fleet tbody tr[data-device=box1] td").nth(2)
        expect(lines).to_have_text("line1: connected, off hook", timeout=WAIT_MS)
        # What a box leaves out, in words: its health names no certificate and no release...
        cells = page.locator("table.fleet tbody tr[data-device=box1] td")
        assert [cells.nth(n).inner_text() for n in (5, 6)] == ["not reported"] * 2
        # ...and a box that has sent no health yet (its row comes from the page's refresh)
        feed.publish("box3", "status", {"state": "online", "connection": 1, "last_counter": 0})
        quiet = page.locator("table.fleet tbody tr[data-device=box3] td")
        expect(quiet.nth(4)).to_have_text("not reported yet", timeout=WAIT_MS)
        assert [quiet.nth(n).inner_text() for n in range(2, 7)] == ["not reported yet"] * 5
        page.screenshot(path=str(tmp_path / "fleet.png"), full_page=True)
    navigations = [e for e in server.service.audit.entries() if e["action"] == "fleet"]
    assert len(navigations) == 1  # the page was loaded once


def test_export_a_customer_copy_and_verify_it(
    page: Page, served: tuple[Server, pyotp.TOTP], tmp_path: Path
) -> None:
    server, totp = served
    log_in(page, server, totp, "ann")
    page.goto(f"{server.url}/recordings?number=55512345")
    page.click("table.results tbody tr a")
    page.wait_for_url("**/recordings/box1-*")
    page.fill("form.export input[name=reason]", "customer request 1234")
    with page.expect_download() as download:
        page.click("form.export button[type=submit]")
    archive = tmp_path / download.value.suggested_filename
    download.value.save_as(archive)
    with zipfile.ZipFile(archive) as files:
        files.extractall(tmp_path / "copy")
    (wav,) = (tmp_path / "copy").glob("*.wav")
    public = server.service.store.data_dir.parent / "keys" / "collector.pub"
    assert verify_export(wav, load_public(public)) == ""
    assert redaction_note(wav) == ""  # this one was not redacted
    altered = bytearray(wav.read_bytes())
    altered[len(altered) // 2] ^= 0x01  # one bit of one sample
    wav.write_bytes(bytes(altered))
    assert "altered" in verify_export(wav, load_public(public))
    page.screenshot(path=str(tmp_path / "export.png"), full_page=True)
    actions = [(e["action"], e["reason"]) for e in server.service.audit.entries()]
    assert ("export", "customer request 1234") in actions


def test_export_the_original_kept_for_a_legal_hold(
    page: Page, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """Hold a call, redact it, then export the original the hold keeps: the copy verifies as
    the appliance's own recording, with the redacted span's sound still in it."""
    site = deliver(tmp_path_factory.mktemp("held") / "site")  # its own: it is redacted here
    service = console(site, Clock())
    totp = add_user(service, "ann", "supervisor")
    with Server(service) as server:
        log_in(page, server, totp, "ann")
        page.goto(f"{server.url}/recordings?number=55512345")
        page.click("table.results tbody tr a")
        page.wait_for_url("**/recordings/box1-*")
        assert page.locator("form.export-original").count() == 0  # nothing kept aside yet
        page.fill("form.hold input[name=reason]", "litigation 12")
        page.click("form.hold button[type=submit]")
        page.wait_for_selector("p.done")
        page.fill("form.redact input[name=from]", "1")
        page.fill("form.redact input[name=to]", "2.5")
        page.fill("form.redact input[name=reason]", "card number read out")
        page.click("form.redact button[type=submit]")
        page.wait_for_selector("p.done")
        assert "the original is kept for the legal hold" in page.inner_text("dd.redactions")
        page.fill("form.export-original input[name=reason]", "court order 5")
        page.screenshot(path=str(tmp_path / "original-kept.png"), full_page=True)
        with page.expect_download() as download:
            page.click("form.export-original button[type=submit]")
        archive = tmp_path / download.value.suggested_filename
        assert archive.name.endswith(".original.zip")
        download.value.save_as(archive)
    with zipfile.ZipFile(archive) as files:
        files.extractall(tmp_path / "copy")
    (wav,) = (tmp_path / "copy").glob("*.wav")
    public = load_public(site.parent / "keys" / "collector.pub")
    assert verify_export(wav, public) == ""
    assert redaction_note(wav) == ""  # the appliance's recording, as it sealed it
    import wave

    import numpy as np

    with wave.open(str(wav)) as audio:
        samples = np.frombuffer(audio.readframes(audio.getnframes()), dtype="<i2")
    assert samples[8000:20000].any()  # the span redacted in the version shown, not here
    actions = [(e["action"], e["reason"]) for e in service.audit.entries()]
    assert ("export original", "court order 5") in actions
