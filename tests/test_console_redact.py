"""Redaction after the call, and recordings named by (device, id) in the console.

Over real recordings delivered through mosquitto: `collector redact` and the API's redact
make a new version with the span silenced, signed by the collector and linked to the
original; the original is crypto-shredded unless on legal hold; `verify-export` of a
redacted customer copy says so.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from console_fixtures import client, clock, delivered, service, site  # noqa: F401
from console_site import LINEREC, Clock, add_user
from linerec.codec import RATE
from linerec.collector.config import load_collector_config
from linerec.collector.web.service import ConsoleService
from linerec.store.keys import raw_public
from linerec.store.reader import decrypt, inspect

ME = __import__("pwd").getpwuid(__import__("os").getuid()).pw_name


def line1(service: ConsoleService) -> dict[str, object]:
    (row,) = [r for r in service.store.recordings() if r["line"] == "line1"]
    return row


def current(service: ConsoleService, site: Path) -> tuple[bytes, np.ndarray]:
    row = line1(service)
    sealed = service.store.read_recording(str(row["id"]), Path(str(row["path"])), "box1")
    return sealed, decrypt(sealed, load_collector_config(site).key).samples


def run(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LINEREC, "collector", *args, "--config", str(site)], capture_output=True, text=True
    )


def test_collector_redact_silences_the_span_and_shreds_the_original(
    site: Path, service: ConsoleService, tmp_path: Path
) -> None:
    row = line1(service)
    rid = str(row["id"])
    original_path = Path(str(row["path"]))
    original_sealed, before = current(service, site)
    (old_key,) = service.store.db.execute(
        "SELECT key FROM vault_keys WHERE id = ?", (rid,)
    ).fetchone()
    done = run(site, "redact", rid, "--from", "1", "--to", "2.5", "--reason", "card number")
    assert done.returncode == 0, done.stderr
    assert "1-2.5 s silenced in version 1" in done.stdout
    assert "the original's key is destroyed" in done.stdout
    sealed, after = current(service, site)
    assert len(after) == len(before)
    assert not after[RATE : int(2.5 * RATE)].any()  # silence where the span was
    assert np.array_equal(after[:RATE], before[:RATE])
    assert np.array_equal(after[int(2.5 * RATE) :], before[int(2.5 * RATE) :])
    assert before[RATE : int(2.5 * RATE)].any()  # there was sound there
    inspected = inspect(sealed)
    key = load_collector_config(site).key
    assert raw_public(inspected.device_key) == raw_public(key.signing.public_key())
    redaction = inspected.header["redaction"]
    original = inspect(original_sealed)
    assert redaction["original"]["id"] == rid and redaction["original"]["device"] == "box1"
    assert redaction["original"]["header_sha256"] == original.header_hash.hex()
    assert redaction["original"]["end"] == original.end  # the appliance's signed trailer
    ((span),) = redaction["spans"]
    assert (span["from"], span["to"], span["reason"], span["by"]) == (1, 2.5, "card number", ME)
    assert not original_path.exists()  # the original's file is gone ...
    (new_key,) = service.store.db.execute(
        "SELECT key FROM vault_keys WHERE id = ?", (rid,)
    ).fetchone()
    assert new_key != old_key  # ... and its key destroyed
    raw = service.store.db.execute("SELECT count(*) FROM vault_keys WHERE key = ?", (old_key,))
    assert raw.fetchone()[0] == 0
    stored = service.store.stored("box1", rid)
    assert (
        stored is not None
        and stored[1] == __import__("hashlib").sha256(original_sealed).hexdigest()
    )  # a redelivery of the original is acknowledged again, not stored again
    entries = [(e["who"], e["action"], e["recording"]) for e in service.audit.entries()]
    assert (ME, "redact", rid) in entries
    out = tmp_path / "copy.wav"
    exported = run(site, "export", rid, "--reason", "customer asked", "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    pub = str(site.parent / "keys" / "collector.pub")
    verified = subprocess.run(
        [*LINEREC, "collector", "verify-export", str(out), "--collector", pub],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stderr
    assert "REDACTED: silenced 1-2.5 s by " + ME + " (card number)" in verified.stdout
    assert f"from the original box1/{rid}" in verified.stdout
    assert original.header_hash.hex() in verified.stdout


def test_a_second_redaction_adds_its_span_to_the_first(site: Path, service: ConsoleService) -> None:
    rid = str(line1(service)["id"])
    assert run(site, "redact", rid, "--from", "0.5", "--to", "1", "--reason", "a").returncode == 0
    assert run(site, "redact", rid, "--from", "3", "--to", "4", "--reason", "b").returncode == 0
    sealed, after = current(service, site)
    spans = inspect(sealed).header["redaction"]["spans"]
    assert [(s["from"], s["to"], s["reason"]) for s in spans] == [(0.5, 1, "a"), (3, 4, "b")]
    assert not after[RATE // 2 : RATE].any() and not after[3 * RATE : 4 * RATE].any()
    assert [r["version"] for r in service.store.redactions("box1", rid)] == [1, 2]
    files = sorted(p.name for p in (site.parent / "central" / "recordings" / "box1").iterdir())
    assert [f for f in files if f.startswith(rid)] == [f"{rid}.v2.lrec.vault"]


def test_on_legal_hold_the_original_stays_until_the_hold_is_lifted(
    site: Path, service: ConsoleService
) -> None:
    row = line1(service)
    rid, original_path = str(row["id"]), Path(str(row["path"]))
    original_sealed, _ = current(service, site)
    assert run(site, "hold", rid, "--reason", "litigation 12").returncode == 0
    done = run(site, "redact", rid, "--from", "1", "--to", "2", "--reason", "card number")
    assert done.returncode == 0, done.stderr
    assert "kept for its legal hold" in done.stdout
    assert original_path.exists() and service.store.original_kept("box1", rid)
    (kept_key,) = service.store.db.execute(
        "SELECT key FROM kept_originals WHERE id = ?", (rid,)
    ).fetchone()
    from linerec.collector.vault import read_vault

    kept = b"".join(read_vault(original_path, bytes(kept_key), "box1", rid))
    assert kept == original_sealed  # the original, intact, for the hold
    _, shown = current(service, site)
    assert not shown[RATE : 2 * RATE].any()  # what is read and played is the redacted one
    assert run(site, "hold", rid, "--release").returncode == 0
    assert not original_path.exists() and not service.store.original_kept("box1", rid)


def test_redact_refuses_an_empty_reason_a_span_outside_and_an_unknown_id(
    site: Path, service: ConsoleService
) -> None:
    rid = str(line1(service)["id"])
    before = current(service, site)[0]
    blank = run(site, "redact", rid, "--from", "1", "--to", "2", "--reason", "  ")
    assert blank.returncode == 2 and "--reason: say why" in blank.stderr
    past = run(site, "redact", rid, "--from", "9999", "--to", "10000", "--reason", "x")
    assert past.returncode == 2 and "--from: 9999 s is past the end" in past.stderr
    backwards = run(site, "redact", rid, "--from", "3", "--to", "2", "--reason", "x")
    assert backwards.returncode == 2 and "--to: must be after from" in backwards.stderr
    unknown = run(site, "redact", "nope", "--from", "1", "--to", "2", "--reason", "x")
    assert unknown.returncode == 1 and "no recording 'nope'" in unknown.stderr
    assert current(service, site)[0] == before  # nothing changed


def test_the_api_redacts_for_a_supervisor_only(
    client: TestClient, service: ConsoleService, clock: Clock, site: Path
) -> None:
    rid = str(line1(service)["id"])
    lee = add_user(service, "lee", "listener", ("line", "box1/*"))
    ann = add_user(service, "ann", "supervisor")
    body = {"from": 1, "to": 2, "reason": "card number"}
    client.post("/api/login", json={"name": "lee", "password": "correct horse battery",
                                    "code": lee.at(clock.now)})  # fmt: skip
    assert client.post(f"/api/recordings/{rid}/redact", json=body).status_code == 403
    client.cookies.clear()
    login = client.post("/api/login", json={"name": "ann", "password": "correct horse battery",
                                            "code": ann.at(clock.now)})  # fmt: skip
    csrf = login.json()["csrf"]
    form = client.post(f"/recordings/{rid}/redact", data={**body, "csrf": "forged"})
    assert form.status_code == 403  # no CSRF token, nothing redacted
    blank = client.post(f"/api/recordings/{rid}/redact", json={**body, "reason": " "})
    assert blank.status_code == 400 and "reason" in blank.json()["detail"]
    assert service.store.redactions("box1", rid) == []
    done = client.post(f"/api/recordings/{rid}/redact", json=body)
    assert done.status_code == 200, done.text
    assert done.json() == {"id": rid, "device": "box1", "version": 1, "from": 1, "to": 2,
                           "original_kept": False}  # fmt: skip
    meta = client.get(f"/api/recordings/{rid}").json()
    assert [(s["from"], s["to"], s["by"]) for s in meta["redactions"]] == [(1, 2, "ann")]
    assert "redacted version signed by this collector" in meta["verification"]
    found = client.get("/api/recordings", params={"number": "55512345"}).json()["recordings"]
    assert found[0]["redacted"] is True
    page = client.get(f"/recordings/{rid}", params={"device": "box1"})
    assert "1-2 s by ann (card number)" in page.text and "the original is destroyed" in page.text
    via_form = client.post(
        f"/recordings/{rid}/redact?device=box1",
        data={"from": "3", "to": "4", "reason": "address", "csrf": csrf},
        follow_redirects=False,
    )
    assert via_form.status_code == 303 and "version+2" in via_form.headers["location"]
    actions = [(e["who"], e["action"]) for e in service.audit.entries()]
    assert ("lee", "forbidden") in actions and ("ann", "csrf refused") in actions
    assert ("ann", "redact refused") in actions and actions.count(("ann", "redact")) == 2


# -- recordings are named by (device, id) -----------------------------------------------------


def test_two_devices_with_one_id_are_told_apart(
    client: TestClient, service: ConsoleService, clock: Clock, site: Path
) -> None:
    """A second device's recording with the same id (the store keys by both): holds, search,
    the recording page and its audio each name the one asked for."""
    row = line1(service)
    rid = str(row["id"])
    store = service.store
    sealed = store.read_recording(rid, Path(str(row["path"])), "box1")
    part = site.parent / "twin.part"
    part.write_bytes(sealed)
    twin = store.keep("box2", rid, part)
    store.index("box2", rid, twin, "0" * 64, {**row, "line": "line9"}, 0.0)
    store.hold(rid, True, "box2")
    ann = add_user(service, "ann", "supervisor")
    client.post("/api/login", json={"name": "ann", "password": "correct horse battery",
                                    "code": ann.at(clock.now)})  # fmt: skip
    held = client.get("/api/recordings", params={"held": "yes"}).json()["recordings"]
    assert [(r["device"], r["line"]) for r in held] == [("box2", "line9")]
    free = client.get("/api/recordings", params={"held": "no"}).json()["recordings"]
    assert ("box1", "line1") in [(r["device"], r["line"]) for r in free]
    ambiguous = client.get(f"/api/recordings/{rid}")
    assert ambiguous.status_code == 400 and "?device=" in ambiguous.json()["detail"]
    for device, line in (("box1", "line1"), ("box2", "line9")):
        meta = client.get(f"/api/recordings/{rid}", params={"device": device}).json()
        assert (meta["device"], meta["line"], meta["held"]) == (device, line, device == "box2")
        audio = client.get(
            f"/api/recordings/{rid}/audio", params={"device": device, "reason": "twin check"}
        )
        assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
    done = client.post(
        f"/api/recordings/{rid}/redact?device=box1",
        json={"from": 1, "to": 2, "reason": "card number"},
    )
    assert done.status_code == 200 and done.json()["original_kept"] is False  # box1 not held
    assert store.redactions("box2", rid) == []


def test_the_api_exports_a_redacted_customer_copy_that_says_so(
    client: TestClient, service: ConsoleService, clock: Clock, site: Path, tmp_path: Path
) -> None:
    import zipfile

    from linerec.collector.exports import redaction_note, verify_export
    from linerec.store.keys import load_public

    rid = str(line1(service)["id"])
    lee = add_user(service, "lee", "listener", ("line", "box1/*"))
    ann = add_user(service, "ann", "supervisor")
    client.post("/api/login", json={"name": "lee", "password": "correct horse battery",
                                    "code": lee.at(clock.now)})  # fmt: skip
    refused = client.get(f"/api/recordings/{rid}/export", params={"reason": "x"})
    assert refused.status_code == 403
    client.cookies.clear()
    client.post("/api/login", json={"name": "ann", "password": "correct horse battery",
                                    "code": ann.at(clock.now)})  # fmt: skip
    assert client.get(f"/api/recordings/{rid}/export").status_code == 400  # no reason
    body = {"from": 2, "to": 3, "reason": "card number"}
    assert client.post(f"/api/recordings/{rid}/redact", json=body).status_code == 200
    answer = client.get(f"/api/recordings/{rid}/export", params={"reason": "customer asked"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
    archive = tmp_path / "copy.zip"
    archive.write_bytes(answer.content)
    with zipfile.ZipFile(archive) as files:
        assert sorted(files.namelist()) == sorted(
            f"{rid}{s}" for s in (".wav", ".json", ".lrec", ".verify.json")
        )
        files.extractall(tmp_path / "copy")
    wav = tmp_path / "copy" / f"{rid}.wav"
    public = load_public(site.parent / "keys" / "collector.pub")
    assert verify_export(wav, public) == ""
    assert redaction_note(wav).startswith("REDACTED: silenced 2-3 s by ann (card number)")
    assert not list(site.parent.rglob("*.wav"))  # nothing in clear at the collector
    actions = [(e["who"], e["action"], e["reason"]) for e in service.audit.entries()]
    assert ("ann", "export refused", "no reason given") in actions
    assert ("ann", "export", "customer asked") in actions and ("lee", "forbidden") in [
        (w, a) for w, a, _ in actions
    ]


def test_a_supervisor_holds_and_releases_from_the_console(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    rid = str(line1(service)["id"])
    lee = add_user(service, "lee", "listener", ("line", "box1/*"))
    ann = add_user(service, "ann", "supervisor")
    client.post("/api/login", json={"name": "lee", "password": "correct horse battery",
                                    "code": lee.at(clock.now)})  # fmt: skip
    body = {"held": True, "reason": "litigation 12"}
    assert client.post(f"/api/recordings/{rid}/hold", json=body).status_code == 403
    client.cookies.clear()
    csrf = client.post("/api/login", json={"name": "ann", "password": "correct horse battery",
                                           "code": ann.at(clock.now)}).json()["csrf"]  # fmt: skip
    blank = client.post(f"/api/recordings/{rid}/hold", json={"held": True, "reason": " "})
    assert blank.status_code == 400 and not service.store.is_held("box1", rid)
    assert client.post(f"/api/recordings/{rid}/hold", json=body).status_code == 200
    assert service.store.is_held("box1", rid)
    held = client.get("/api/recordings", params={"held": "yes"}).json()["recordings"]
    assert [r["id"] for r in held] == [rid]
    assert client.post(f"/api/recordings/{rid}/redact",
                       json={"from": 1, "to": 2, "reason": "card"}).json()["original_kept"]  # fmt: skip
    stale = client.post(f"/recordings/{rid}/hold", data={"held": "no", "reason": "settled"})
    assert stale.status_code == 403 and service.store.is_held("box1", rid)  # no CSRF token
    released = client.post(
        f"/recordings/{rid}/hold?device=box1",
        data={"held": "no", "reason": "settled", "csrf": csrf},
        follow_redirects=False,
    )
    assert released.status_code == 303 and "hold+lifted" in released.headers["location"]
    assert not service.store.is_held("box1", rid)
    assert not service.store.original_kept("box1", rid)  # shredded with the hold
    actions = [(e["who"], e["action"], e["reason"]) for e in service.audit.entries()]
    assert ("ann", "hold", "litigation 12") in actions
    assert ("ann", "release", "settled") in actions
    assert ("ann", "hold refused", "no reason given") in actions


def test_the_original_kept_for_a_hold_is_exported_as_a_verifiable_copy(
    client: TestClient, service: ConsoleService, clock: Clock, site: Path, tmp_path: Path
) -> None:
    """A redacted recording whose original is kept for a legal hold: a supervisor exports
    the original (the appliance's recording, not silenced) as a customer copy that verifies
    as the appliance's own; it needs a reason, is audited, and is refused when no original is
    kept (not held when redacted, or the hold lifted) and outside the role."""
    import io
    import wave
    import zipfile

    from linerec.collector.exports import redaction_note, verify_export
    from linerec.store.keys import load_public

    rid = str(line1(service)["id"])
    original_sealed, original_samples = current(service, site)
    lee = add_user(service, "lee", "listener", ("line", "box1/*"))
    ann = add_user(service, "ann", "supervisor")
    path = f"/api/recordings/{rid}/export"
    asked = {"reason": "court order 5", "original": "true"}
    client.post("/api/login", json={"name": "ann", "password": "correct horse battery",
                                    "code": ann.at(clock.now)})  # fmt: skip
    assert client.get(path, params=asked).status_code == 400  # not redacted: nothing kept aside
    assert client.post(f"/api/recordings/{rid}/hold",
                       json={"held": True, "reason": "litigation 12"}).status_code == 200  # fmt: skip
    assert client.post(f"/api/recordings/{rid}/redact",
                       json={"from": 1, "to": 2, "reason": "card"}).status_code == 200  # fmt: skip
    assert client.get(path, params={"original": "true"}).status_code == 400  # no reason
    answer = client.get(path, params=asked)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
    assert f'filename="{rid}.original.zip"' in answer.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(answer.content)) as files:
        files.extractall(tmp_path / "original")
    wav = tmp_path / "original" / f"{rid}.wav"
    public = load_public(site.parent / "keys" / "collector.pub")
    assert verify_export(wav, public) == "" and redaction_note(wav) == ""  # the appliance's
    assert (tmp_path / "original" / f"{rid}.lrec").read_bytes() == original_sealed
    with wave.open(str(wav)) as audio:
        samples = np.frombuffer(audio.readframes(audio.getnframes()), dtype="<i2")
    assert np.array_equal(samples, original_samples) and samples[RATE : 2 * RATE].any()
    plain = client.get(path, params={"reason": "customer asked"})  # the version shown
    with zipfile.ZipFile(io.BytesIO(plain.content)) as files:
        files.extractall(tmp_path / "shown")
    assert redaction_note(tmp_path / "shown" / f"{rid}.wav").startswith("REDACTED")
    client.cookies.clear()
    client.post("/api/login", json={"name": "lee", "password": "correct horse battery",
                                    "code": lee.at(clock.now)})  # fmt: skip
    assert client.get(path, params=asked).status_code == 403
    client.cookies.clear()
    clock.now += 30
    csrf = client.post("/api/login", json={"name": "ann", "password": "correct horse battery",
                                           "code": ann.at(clock.now)}).json()["csrf"]  # fmt: skip
    page = client.get(f"/recordings/{rid}")
    assert 'class="export-original"' in page.text  # the page offers it while the hold lasts
    stale = client.post(f"/recordings/{rid}/export?device=box1",
                        data={"reason": "court order 6", "original": "yes"})  # fmt: skip
    assert stale.status_code == 403  # no CSRF token
    form = client.post(f"/recordings/{rid}/export?device=box1",
                       data={"reason": "court order 6", "original": "yes", "csrf": csrf})  # fmt: skip
    assert form.status_code == 200 and form.content[:2] == b"PK"
    assert client.post(f"/api/recordings/{rid}/hold",
                       json={"held": False, "reason": "settled"}).status_code == 200  # fmt: skip
    gone = client.get(path, params=asked)
    assert gone.status_code == 400 and "no original" in gone.json()["detail"]
    assert 'class="export-original"' not in client.get(f"/recordings/{rid}").text
    actions = [(e["who"], e["action"], e["recording"], e["reason"])
               for e in service.audit.entries()]  # fmt: skip
    assert actions.count(("ann", "export original", rid, "court order 5")) == 1
    assert ("ann", "export original", rid, "court order 6") in actions
    assert ("ann", "export", rid, "customer asked") in actions
    assert ("ann", "export original refused", rid, "no reason given") in actions
    assert [a for w, a, *_ in actions if w == "lee"] == ["login", "forbidden"]
    assert not list(site.parent.rglob("*.wav"))  # nothing in clear at the collector


def test_collector_export_original_writes_the_held_original(
    site: Path, service: ConsoleService, tmp_path: Path
) -> None:
    rid = str(line1(service)["id"])
    out = tmp_path / "copy.wav"
    refused = run(site, "export", rid, "--original", "--reason", "court order 5", "-o", str(out))
    assert refused.returncode == 1 and "no original is kept" in refused.stderr
    assert run(site, "hold", rid, "--reason", "litigation 12").returncode == 0
    assert run(site, "redact", rid, "--from", "1", "--to", "2", "--reason", "card").returncode == 0
    done = run(site, "export", rid, "--original", "--reason", "court order 5", "-o", str(out))
    assert done.returncode == 0, done.stderr
    public = str(site.parent / "keys" / "collector.pub")
    verified = subprocess.run(
        [*LINEREC, "collector", "verify-export", str(out), "--collector", public],
        capture_output=True, text=True,
    )  # fmt: skip
    assert verified.returncode == 0 and "signed by its appliance, unaltered" in verified.stdout
    entries = [(e["action"], e["recording"], e["reason"]) for e in service.store.audit_log()]
    assert ("export original", rid, "court order 5") in entries
