"""Quality review: the scorecard from the config, a seeded random sample, reviews kept with
the recording and exported as CSV; over real recordings delivered through mosquitto."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from console_site import PASSWORD, Clock, add_user, console, copy_site, deliver
from linerec.collector.review import Criterion, Scorecard, draw, load_scorecard
from linerec.collector.web.app import build_app
from linerec.collector.web.service import ConsoleService
from linerec.errors import ConfigError

CARD = Scorecard(
    criteria=(
        Criterion(name="script", question="Did the agent read the script?", answer="yes/no"),
        Criterion(name="courtesy", question="How courteous was the agent?", answer="1-5"),
    )
)


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return deliver(tmp_path_factory.mktemp("review") / "site")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(delivered: Path, tmp_path: Path, clock: Clock, engine: str) -> ConsoleService:
    site = copy_site(delivered, tmp_path / "site")
    service = console(site, clock)
    service.scorecard = CARD
    return service


@pytest.fixture
def client(service: ConsoleService) -> Iterator[TestClient]:
    with TestClient(build_app(service), base_url="http://127.0.0.1") as test_client:
        yield test_client


def more_calls(service: ConsoleService, count: int) -> None:
    """`count` more recordings on line1 (copies of its real one, under ids of their own)."""
    store = service.store
    (row,) = [r for r in store.recordings() if r["line"] == "line1"]
    sealed = store.read_recording(row["id"], Path(row["path"]), "box1")
    for n in range(count):
        rid = f"box1-{900 + n:08d}-20261130T0900{n:02d}Z-line1"
        part = store.data_dir / f"{rid}.part"
        part.write_bytes(sealed)
        path = store.keep("box1", rid, part)
        store.index("box1", rid, path, f"{n:064d}", {**row, "seq": 900 + n}, 0.0)


def log_in(client: TestClient, service: ConsoleService, clock: Clock, role: str) -> str:
    totp = add_user(service, role[:3], role, ("line", "box1/*"))
    answer = client.post(
        "/api/login", json={"name": role[:3], "password": PASSWORD, "code": totp.at(clock.now)}
    )
    assert answer.status_code == 200
    csrf: str = answer.json()["csrf"]
    return csrf


def test_the_scorecard_comes_from_the_config_and_errors_name_the_key(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(
        '[[review.criteria]]\nname = "script"\nquestion = "Did the agent read the script?"\n'
        'answer = "yes/no"\n[[review.criteria]]\nname = "courtesy"\n'
        'question = "How courteous?"\nanswer = "1-5"\n'
    )
    card = load_scorecard(config)
    assert [(c.name, c.answer) for c in card.criteria] == [
        ("script", "yes/no"),
        ("courtesy", "1-5"),
    ]
    assert load_scorecard(tmp_path / "collector.toml").criteria == card.criteria
    config.write_text('[[review.criteria]]\nname = "x"\nquestion = "q"\nanswer = "0-10"\n')
    with pytest.raises(ConfigError, match=r"review\.criteria\[0\]\.answer: one of yes/no, 1-5"):
        load_scorecard(config)
    config.write_text("[review]\nscale = 5\n")
    with pytest.raises(ConfigError, match=r"review\.scale: unknown key"):
        load_scorecard(config)
    config.write_text("[collector]\n")
    assert load_scorecard(config) == Scorecard()


def test_the_draw_is_reproducible_from_its_seed_and_random_across_seeds() -> None:
    rows = [{"device": "box1", "line": "line1", "id": f"r{n:02d}", "label": "sales"}
            for n in range(20)]  # fmt: skip
    rows += [{"device": "box1", "line": "line2", "id": f"s{n:02d}", "label": "support"}
             for n in range(5)]  # fmt: skip
    first = draw(rows, per="line", n=3, seed="abc")
    assert first == draw(list(reversed(rows)), per="line", n=3, seed="abc")  # order: no matter
    assert [r["group"] for r in first] == ["box1/line1"] * 3 + ["box1/line2"] * 3
    draws = {tuple(r["id"] for r in draw(rows, per="line", n=3, seed=str(s))) for s in range(20)}
    assert len(draws) > 10  # another seed, another sample
    by_label = draw(rows, per="label", n=10, seed="abc")
    assert sum(r["group"] == "support" for r in by_label) == 5  # all a small group has


def test_a_supervisor_samples_reviews_and_exports(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    more_calls(service, 6)
    log_in(client, service, clock, "supervisor")
    sample = client.get("/api/review/sample", params={"per": "line", "n": "2", "seed": "s1"})
    assert sample.status_code == 200, sample.text
    body = sample.json()
    assert body["seed"] == "s1" and body["of"] == 8
    groups = [r["group"] for r in body["recordings"]]
    assert groups == ["box1/line1", "box1/line1", "box1/line2"]
    again = client.get("/api/review/sample", params={"per": "line", "n": "2", "seed": "s1"})
    assert again.json()["recordings"] == body["recordings"]
    drawn = client.get("/api/review/sample", params={"n": "1"}).json()
    assert len(drawn["seed"]) == 16  # chosen by the collector, and told
    rid = body["recordings"][0]["id"]
    missing = client.post(f"/api/recordings/{rid}/review", json={"scores": {"script": "yes"}})
    assert missing.status_code == 400 and "courtesy: not answered" in missing.json()["detail"]
    wrong = client.post(
        f"/api/recordings/{rid}/review", json={"scores": {"script": "yes", "courtesy": 9}}
    )
    assert wrong.status_code == 400 and "courtesy: answer 1 to 5" in wrong.json()["detail"]
    kept = client.post(
        f"/api/recordings/{rid}/review",
        json={"scores": {"script": "no", "courtesy": "4"}, "comment": '=HYPERLINK("x")'},
    )
    assert kept.status_code == 200, kept.text
    assert kept.json()["scores"] == {"script": "no", "courtesy": 4}
    reviewed = client.get("/api/recordings", params={"review": "reviewed"}).json()
    assert [r["id"] for r in reviewed["recordings"]] == [rid]
    exported = client.get("/api/reviews.csv")
    assert exported.headers["content-type"].startswith("text/csv")
    (row,) = list(csv.DictReader(io.StringIO(exported.text)))
    assert (row["id"], row["reviewer"], row["script"], row["courtesy"]) == (rid, "sup", "no", "4")
    assert row["comment"] == '\'=HYPERLINK("x")'  # not a formula in a spreadsheet
    actions = [(e["action"], e["reason"]) for e in service.audit.entries()]
    assert ("review sample", "per=line n=2 seed=s1: 3 of 8") in actions
    assert ("review refused", "courtesy: not answered (How courteous was the agent?)") in actions
    assert ("review export", "1 rows") in actions


def test_the_review_page_plays_the_call_beside_the_form(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    csrf = log_in(client, service, clock, "supervisor")
    (rid,) = [r["id"] for r in service.store.recordings() if r["line"] == "line1"]
    page = client.get(f"/recordings/{rid}/review", params={"device": "box1", "seed": "s1"})
    assert page.status_code == 200
    assert '<audio id="player"' in page.text and 'name="c_script"' in page.text
    assert "How courteous was the agent?" in page.text
    stale = client.post(f"/recordings/{rid}/review?device=box1",
                        data={"c_script": "yes", "c_courtesy": "5"})  # fmt: skip
    assert stale.status_code == 403  # no CSRF token
    done = client.post(
        f"/recordings/{rid}/review?device=box1",
        data={"c_script": "yes", "c_courtesy": "5", "comment": "good", "csrf": csrf},
        follow_redirects=False,
    )
    assert done.status_code == 303
    shown = client.get(done.headers["location"])
    assert "script: yes, courtesy: 5" in shown.text and "good" in shown.text
    plays = [e["reason"] for e in service.audit.entries() if e["action"] == "play"]
    assert "quality review (sample s1)" in plays


def test_a_listener_cannot_review_or_sample(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    log_in(client, service, clock, "listener")
    (rid,) = [r["id"] for r in service.store.recordings() if r["line"] == "line1"]
    for answer in (
        client.get("/api/review/sample", params={"n": "1"}),
        client.post(f"/api/recordings/{rid}/review", json={"scores": {}}),
        client.get("/api/reviews.csv"),
        client.get("/review"),
        client.get(f"/recordings/{rid}/review"),
    ):
        assert answer.status_code == 403
    forbidden = [e for e in service.audit.entries() if e["action"] == "forbidden"]
    assert len(forbidden) == 5
    assert client.get("/api/recordings", params={"review": "reviewed"}).json()["total"] == 0


def test_a_supervisor_edits_a_review_and_the_edit_is_kept_and_audited(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    csrf = log_in(client, service, clock, "supervisor")
    (rid,) = [r["id"] for r in service.store.recordings() if r["line"] == "line1"]
    kept = client.post(
        f"/api/recordings/{rid}/review",
        json={"scores": {"script": "no", "courtesy": 2}, "comment": "rushed"},
    )
    assert kept.status_code == 200  # fmt: skip
    number = kept.json()["review"]
    clock.now += 60
    edited = client.post(
        f"/api/reviews/{number}",
        json={"scores": {"script": "yes", "courtesy": 4}, "comment": "misheard"},
    )
    assert edited.status_code == 200, edited.text  # fmt: skip
    assert edited.json()["scores"] == {"script": "yes", "courtesy": 4}
    assert edited.json()["edited_by"] == "sup" and edited.json()["reviewer"] == "sup"
    wrong = client.post(f"/api/reviews/{number}", json={"scores": {"script": "maybe"}})
    assert wrong.status_code == 400 and "script: answer yes or no" in wrong.json()["detail"]
    assert client.post("/api/reviews/999", json={"scores": {}}).status_code == 404
    (row,) = list(csv.DictReader(io.StringIO(client.get("/api/reviews.csv").text)))
    assert (row["script"], row["courtesy"], row["comment"]) == ("yes", "4", "misheard")
    assert (row["reviewer"], row["edited_by"]) == ("sup", "sup")
    assert float(row["edited_at"]) == pytest.approx(clock.now, abs=1)
    # The page: the form filled in with the review's answers, and a CSRF token.
    form = client.get(f"/reviews/{number}/edit")
    assert form.status_code == 200 and f'action="/reviews/{number}"' in form.text
    assert 'name="c_script" value="yes" required checked' in form.text
    assert 'name="c_courtesy" value="4" required checked' in form.text and "misheard" in form.text
    stale = client.post(f"/reviews/{number}", data={"c_script": "no", "c_courtesy": "1"})
    assert stale.status_code == 403  # no CSRF token: nothing changed
    done = client.post(
        f"/reviews/{number}",
        data={"c_script": "no", "c_courtesy": "5", "comment": "fine after all", "csrf": csrf},
        follow_redirects=False,
    )
    assert done.status_code == 303 and f"/recordings/{rid}/review?" in done.headers["location"]
    shown = client.get(done.headers["location"]).text
    assert "script: no, courtesy: 5" in shown and "fine after all" in shown
    assert "edited by sup" in shown
    actions = [(e["action"], e["recording"], e["reason"]) for e in service.audit.entries()]
    edits = [reason for action, _, reason in actions if action == "review edited"]
    assert len(edits) == 2 and edits[0].startswith(f"review {number}: ")
    assert '"script": "no"' in edits[0] and '"script": "yes"' in edits[0]  # was, now
    assert ("csrf refused", None, f"POST /reviews/{number} without its form token") in actions
    assert [a for a, *_ in actions].count("review edit refused") == 2  # bad answer, no such


def test_a_listener_cannot_edit_a_review(
    client: TestClient, service: ConsoleService, clock: Clock
) -> None:
    (rid,) = [r["id"] for r in service.store.recordings() if r["line"] == "line1"]
    supervisor = add_user(service, "ann", "supervisor")
    kept = service.review(service.accounts.login("ann", PASSWORD, supervisor.at(clock.now))[1],
                          rid, {"script": "yes", "courtesy": 3}, "ok")  # fmt: skip
    log_in(client, service, clock, "listener")
    number = kept["review"]
    assert client.post(f"/api/reviews/{number}", json={"scores": {}}).status_code == 403
    assert client.get(f"/reviews/{number}/edit").status_code == 403
    (row,) = list(
        csv.DictReader(
            io.StringIO(
                service.reviews_csv(
                    service.accounts.login("ann", PASSWORD, supervisor.at(clock.now + 30))[1]
                )
            )
        )
    )
    assert (row["script"], row["courtesy"], row["edited_by"]) == ("yes", "3", "")  # fmt: skip
