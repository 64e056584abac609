"""Quality review: a seeded random sample of calls, a scorecard from the config, reviews.

The admin writes the scorecard in the collector's configuration file:

    [[review.criteria]]
    name = "script"                      # letters, digits, '_' (a CSV column)
    question = "Did the agent read the script?"
    answer = "yes/no"                    # or "1-5"

A supervisor asks for N calls per line (or per label) over a period. The draw is
`random.Random(f"{seed}/{group}").sample(sorted ids of the group, N)`: anyone with the seed,
the period and the list of calls can draw it again and see that it was not picked by hand.
The seed is chosen by the collector (`secrets`) unless the supervisor gives one, and is kept in
the audit with the request. Reviews are kept beside the recording (one row each, by device and
id, numbered), and exported as CSV.

A supervisor may correct a review later: each edit is kept as a row of its own (who, when,
the answers and comment it gave), the review shows the newest, and says who edited it last;
what it said before stays in the edits and in the audit.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linerec.collector.database import Database
from linerec.errors import ConfigError

ANSWERS = ("yes/no", "1-5")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}\Z")
MAX_COMMENT = 2000
MAX_SAMPLE = 100  # calls per group


@dataclass(frozen=True, slots=True, kw_only=True)
class Criterion:
    name: str
    question: str
    answer: str  # "yes/no" | "1-5"

    def parse(self, text: str) -> str | int:
        """An answer from a form or JSON; ValueError naming the criterion otherwise."""
        text = str(text).strip().lower()
        if self.answer == "yes/no":
            if text not in ("yes", "no"):
                raise ValueError(f"{self.name}: answer yes or no (got {text[:20]!r})")
            return text
        if text not in ("1", "2", "3", "4", "5"):
            raise ValueError(f"{self.name}: answer 1 to 5 (got {text[:20]!r})")
        return int(text)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scorecard:
    criteria: tuple[Criterion, ...] = ()

    def score(self, answers: dict[str, Any]) -> dict[str, str | int]:
        """Every criterion answered, nothing else; ValueError naming the first that is not."""
        unknown = sorted(set(answers) - {c.name for c in self.criteria})
        if unknown:
            raise ValueError(f"{unknown[0]}: not a criterion of the scorecard")
        scores: dict[str, str | int] = {}
        for criterion in self.criteria:
            if criterion.name not in answers or answers[criterion.name] in (None, ""):
                raise ValueError(f"{criterion.name}: not answered ({criterion.question})")
            scores[criterion.name] = criterion.parse(answers[criterion.name])
        return scores


def load_scorecard(path: Path | str) -> Scorecard:
    """The `[review]` table of the collector's configuration (an empty scorecard if none)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, "", f"cannot read: {exc}") from exc
    table = data.get("review", {})
    if not isinstance(table, dict):
        raise ConfigError(path, "review", "must be a table ([review])")
    for key in table:
        if key != "criteria":
            raise ConfigError(path, f"review.{key}", "unknown key (known keys here: criteria)")
    entries = table.get("criteria", [])
    if not isinstance(entries, list):
        raise ConfigError(path, "review.criteria", "must be an array of tables")
    criteria: list[Criterion] = []
    for index, entry in enumerate(entries):
        where = f"review.criteria[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(path, where, "must be a table ([[review.criteria]])")
        for key in entry:
            if key not in ("name", "question", "answer"):
                raise ConfigError(path, f"{where}.{key}", "unknown key (name, question, answer)")
        name, question, answer = entry.get("name"), entry.get("question"), entry.get("answer")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(
                path, f"{where}.name", f"letters, digits and '_', 1-32 (got {name!r})"
            )
        if name in {c.name for c in criteria}:
            raise ConfigError(path, f"{where}.name", f"{name!r} is already a criterion")
        if not isinstance(question, str) or not question.strip():
            raise ConfigError(path, f"{where}.question", f"must be a text (got {question!r})")
        if answer not in ANSWERS:
            raise ConfigError(
                path, f"{where}.answer", f"one of {', '.join(ANSWERS)} (got {answer!r})"
            )
        criteria.append(Criterion(name=name, question=question.strip(), answer=str(answer)))
    return Scorecard(criteria=tuple(criteria))


def new_seed() -> str:
    return secrets.token_hex(8)


def draw(rows: list[dict[str, Any]], *, per: str, n: int, seed: str) -> list[dict[str, Any]]:
    """N recordings of each line (`per="line"`, grouped as DEVICE/LINE) or label, drawn with
    the seed; the same rows and seed always give the same sample."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        line = f"{row['device']}/{row['line']}"
        group = line if per == "line" else str(row.get("label") or "")
        groups.setdefault(group, []).append(row)
    sample: list[dict[str, Any]] = []
    for group in sorted(groups):
        members = sorted(groups[group], key=lambda r: (str(r["device"]), str(r["id"])))
        chosen = random.Random(f"{seed}/{group}").sample(members, min(n, len(members)))
        sample.extend({**row, "group": group} for row in chosen)
    return sample


def save_review(
    db: Database,
    device: str,
    recording_id: str,
    reviewer: str,
    at: float,
    scores: dict[str, str | int],
    comment: str,
) -> int:
    """Keep a review, and mark its recording reviewed (for search) in the same transaction;
    returns its number."""
    with db.transaction():
        cursor = db.execute(
            "INSERT INTO console_reviews (device, id, reviewer, at, scores, comment) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING rowid",
            (device, recording_id, reviewer, at, json.dumps(scores), comment),  # scorecard order
        )
        number = int(cursor.fetchone()[0])
        db.execute(
            "UPDATE recordings SET reviewed = 1 WHERE device = ? AND id = ?",
            (device, recording_id),
        )
    return number


def edit_review(
    db: Database,
    number: int,
    editor: str,
    at: float,
    scores: dict[str, str | int],
    comment: str,
) -> None:
    """Keep an edit of review `number` (the review shows the newest edit)."""
    db.execute(
        "INSERT INTO console_review_edits (review, who, at, scores, comment) "
        "VALUES (?, ?, ?, ?, ?)",
        (number, editor, at, json.dumps(scores), comment),
    )


def reviews(
    db: Database,
    device: str | None = None,
    recording_id: str | None = None,
    number: int | None = None,
) -> list[dict[str, Any]]:
    """Reviews, oldest first, with the recording's line and start (all, one recording's, or
    the one numbered): each as its newest edit has it, with who edited it last and when."""
    where = ["1 = 1"]
    parameters: list[str | int] = []
    for column, value in (("v.device", device), ("v.id", recording_id), ("v.rowid", number)):
        if value is not None:
            where.append(f"{column} = ?")
            parameters.append(value)
    cursor = db.execute(
        "SELECT v.rowid AS review, v.device, v.id, r.line, r.started_at, v.reviewer, v.at, "
        "coalesce(e.scores, v.scores) AS scores, coalesce(e.comment, v.comment) AS comment, "
        "e.who AS edited_by, e.at AS edited_at "
        "FROM console_reviews v LEFT JOIN recordings r ON r.device = v.device AND r.id = v.id "
        "LEFT JOIN console_review_edits e ON e.rowid = "
        "(SELECT max(rowid) FROM console_review_edits WHERE review = v.rowid) "
        f"WHERE {' AND '.join(where)} ORDER BY v.rowid",
        parameters,
    )
    names = [c[0] for c in cursor.description]
    out = []
    for row in cursor:
        record = dict(zip(names, row, strict=True))
        record["scores"] = json.loads(record["scores"])
        out.append(record)
    return out


def reviews_csv(rows: list[dict[str, Any]], scorecard: Scorecard) -> str:
    """One line per review; a column per criterion of the scorecard (and of older ones)."""
    names = [c.name for c in scorecard.criteria]
    for row in rows:
        names += [name for name in row["scores"] if name not in names]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["device", "id", "line", "started_at", "reviewer", "at", *names, "comment",
                     "edited_by", "edited_at"])  # fmt: skip
    for row in rows:
        edited_at = row.get("edited_at")
        writer.writerow(
            [row["device"], row["id"], row["line"], row["started_at"], row["reviewer"],
             f"{row['at']:.0f}", *(row["scores"].get(name, "") for name in names),
             _cell(row["comment"]), row.get("edited_by") or "",
             "" if edited_at is None else f"{edited_at:.0f}"]
        )  # fmt: skip
    return buffer.getvalue()


def _cell(text: str) -> str:
    """A comment that a spreadsheet would run as a formula is kept as text."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
