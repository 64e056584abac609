"""What the console does, for the pages and the JSON API alike: each operation checks the
asker's role and grants, reaches recordings through the collector store, and leaves its
audit entry. Routes call these and render the answers; they never touch the database.

The store's SQLite connection is shared by the server's worker threads, so every operation
holds one lock while it uses it. Audio is played from the recording's chunks as they are
decrypted (web/audio.py), never whole; what a few recordings being played need to find their
chunks again (the unwrapped key, where the chunks are) is kept in memory only, and so is the
audio of the few recordings whose pages were drawn (their waveform and verification).
"""

from __future__ import annotations

import io
import json
import secrets
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from linerec.codec import RATE
from linerec.collector.accounts import AccountError, Accounts, Actor
from linerec.collector.audit import AuditLog
from linerec.collector.exports import NoOriginal, export_files
from linerec.collector.redaction import RedactionError, redact, redaction_of
from linerec.collector.review import (
    MAX_COMMENT,
    MAX_SAMPLE,
    Scorecard,
    draw,
    edit_review,
    new_seed,
    reviews,
    reviews_csv,
    save_review,
)
from linerec.collector.search import Page, QueryError, RecordingQuery, parse_query
from linerec.collector.store import CollectorStore
from linerec.collector.web.audio import WavStream
from linerec.collector.web.permissions import (
    Forbidden,
    NotFound,
    allowed,
    in_scope,
    require,
    scope,
)
from linerec.collector.web.waveform import waveform_svg
from linerec.store.chunks import ChunkedAudio, open_audio
from linerec.store.keys import CollectorPrivate
from linerec.store.reader import Decrypted, IntegrityError, decrypt
from linerec.store.ring import NOTICE_MARK

PLAY_TICKET_SECONDS = 3600.0  # how long a play, once audited with its reason, may seek
CACHE_RECORDINGS = 4  # decrypted whole, for their pages
CACHE_PLAYING = 16  # opened for playing: a key and a few offsets each


class BadRequest(ValueError):
    """A request whose input is not acceptable (answered 400, audited)."""


class Conflict(ValueError):
    """A request the recording's state does not allow, e.g. deleting one on legal hold
    (answered 409, audited)."""


class Unreadable(RuntimeError):
    """A recording that cannot be played: it does not verify or is altered at rest (answered
    500 with what failed, audited)."""

    def __init__(self, recording: str, why: str) -> None:
        self.recording = recording
        super().__init__(why)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ticket:
    """A play the user gave a reason for: its range requests are one audited play."""

    name: str
    recording: tuple[str, str]  # (device, id)
    expires: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Listening:
    recording: dict[str, Any]
    wav: WavStream


class ConsoleService:
    def __init__(
        self,
        store: CollectorStore,
        key: CollectorPrivate,
        *,
        idle_seconds: float = 900.0,
        clock: Callable[[], float] = time.time,
        scorecard: Scorecard | None = None,
        retention_days: float = 0.0,
    ) -> None:
        self.store = store
        self.retention_days = retention_days  # [collector] retention_days: 0 keeps all
        self.scorecard = scorecard or Scorecard()
        self.key = key
        self.idle_seconds = idle_seconds
        self.clock = clock
        self.lock = threading.RLock()
        self.accounts = Accounts(store.db, clock=clock)
        self.audit = AuditLog(store.db, clock)
        self._tickets: dict[str, Ticket] = {}
        self._catalogued_upto = -1
        # by (device, id, path): a new version (a redaction) has a new path
        self._decrypted: OrderedDict[tuple[str, str, str], Decrypted] = OrderedDict()
        self._playing: OrderedDict[tuple[str, str, str], ChunkedAudio] = OrderedDict()

    def forget_audio(self) -> None:
        """Drop what is kept in memory of recordings played or shown."""
        with self.lock:
            self._decrypted.clear()
            self._playing.clear()

    # -- who is asking ----------------------------------------------------------------------

    def login(self, name: str, password: str, code: str) -> tuple[str, Actor]:
        with self.lock:
            return self.accounts.login(name, password, code)

    def session(self, token: str) -> Actor | None:
        with self.lock:
            return self.accounts.session(token, self.idle_seconds)

    def token(self, token: str) -> Actor | None:
        with self.lock:
            return self.accounts.token(token)

    def logout(self, token: str) -> None:
        with self.lock:
            self.accounts.logout(token)

    def record(
        self, actor: Actor | str, action: str, recording: str | None = None, reason: str = ""
    ) -> None:
        who = actor if isinstance(actor, str) else actor.name
        with self.lock:
            self.audit.record(who=who, action=action, recording=recording, reason=reason)

    # -- finding ----------------------------------------------------------------------------

    def search(self, actor: Actor, params: Mapping[str, str | None]) -> tuple[Page, RecordingQuery]:
        """One page of what `actor` may see that the search finds, its rows as shown."""
        require(actor, "search")
        try:
            query = parse_query(params, scope=scope(actor))
        except QueryError as exc:
            self.record(actor, "search refused", reason=str(exc))
            raise BadRequest(str(exc)) from exc
        with self.lock:
            self._catalog_new()
            page = self.store.search_page(query)
            shown = {k: v for k, v in params.items() if v}
            self.audit.record(
                who=actor.name,
                action="search",
                reason=" ".join(f"{k}={v}" for k, v in sorted(shown.items())),
            )
        return replace(page, rows=[_public(row) for row in page.rows]), query

    def _catalog_new(self) -> None:
        # Only when a recording was indexed since the last look (an index row's rowid grows
        # with each): the look itself would read every row at each search.
        newest = self.store.newest_rowid()
        if newest != self._catalogued_upto:
            self.store.catalog_new(self.key)
            self._catalogued_upto = newest

    def _row(
        self, actor: Actor, recording_id: str, action: str, device: str | None = None
    ) -> dict[str, Any]:
        """The recording (device, id), if this actor may `action` it; Forbidden, NotFound or
        BadRequest (an id several devices have, without the device) otherwise."""
        require(actor, action, recording_id)
        with self.lock:
            self._catalog_new()
            rows, _ = self.store.search(RecordingQuery(id=recording_id, device=device, limit=2))
        if not rows:
            self.record(actor, f"{action} refused", recording_id[:128], "no such recording")
            raise NotFound(f"no recording {recording_id!r} at this collector")
        if len(rows) > 1:
            self.record(actor, f"{action} refused", recording_id[:128], "device not named")
            raise BadRequest(
                f"{recording_id!r} is the id of recordings from several devices: "
                "name the device (?device=DEVICE)"
            )
        if not in_scope(actor, rows[0]):
            raise Forbidden(action, "not a line or label granted to this user", recording_id)
        return rows[0]

    # -- one recording ----------------------------------------------------------------------

    def _decrypted_audio(self, row: dict[str, Any]) -> Decrypted:
        """The recording decrypted and verified whole (its page: waveform, verification)."""
        which = (row["device"], row["id"], row["path"])
        with self.lock:
            cached = self._decrypted.get(which)
            if cached is not None:
                self._decrypted.move_to_end(which)
                return cached
            sealed = self.store.read_recording(row["id"], Path(row["path"]), row["device"])
        result = decrypt(sealed, self.key)
        with self.lock:
            self._decrypted[which] = result
            while len(self._decrypted) > CACHE_RECORDINGS:
                self._decrypted.popitem(last=False)
        return result

    def _playable(self, row: dict[str, Any]) -> ChunkedAudio:
        """The recording opened for playing from any sample (linerec.store.chunks): its
        header and signed end checked, its key unwrapped, its chunks found."""
        which = (row["device"], row["id"], row["path"])
        with self.lock:
            cached = self._playing.get(which)
            if cached is not None:
                self._playing.move_to_end(which)
                return cached
            try:
                source = self.store.vault_file(row["id"], Path(row["path"]), row["device"])
            except (OSError, ValueError) as exc:
                raise Unreadable(row["id"], str(exc)) from exc
        try:
            audio = open_audio(source, self.key)
        except (OSError, ValueError) as exc:
            raise Unreadable(row["id"], str(exc)) from exc
        with self.lock:
            self._playing[which] = audio
            while len(self._playing) > CACHE_PLAYING:
                self._playing.popitem(last=False)
        return audio

    def recording(
        self, actor: Actor, recording_id: str, device: str | None = None
    ) -> dict[str, Any]:
        """Everything the recording page shows (audited as a view)."""
        row = self._row(actor, recording_id, "view", device)
        self.record(actor, "view", recording_id)
        details = _public(row)
        try:
            result = self._decrypted_audio(row)
        except (IntegrityError, ValueError, OSError) as exc:
            return {**details, "verification": f"does not verify: {exc}", "metadata": {}}
        metadata = result.metadata
        inspected = result.inspected
        events = self._call_events(row)
        redaction = redaction_of(inspected.header)
        if redaction is None:
            device = inspected.header.get("device")
            verification = f"signed by {device} and intact ({inspected.state})"
        else:
            original = redaction["original"]
            verification = (
                f"a redacted version signed by this collector, intact ({inspected.state}); "
                f"the original (header {original['header_sha256'][:16]}) was signed by "
                f"{original['device']}"
            )
        with self.lock:
            original_kept = self.store.original_kept(row["device"], row["id"])
        details.update(
            metadata=metadata,
            verification=verification,
            redactions=redaction["spans"] if redaction else [],
            original_kept=original_kept,
            seq=inspected.header.get("seq"),
            prev=inspected.header.get("prev") or "",
            header_hash=inspected.header_hash.hex(),
            consent=metadata.get("consent"),
            clock_synchronized=metadata.get("clock_synchronized"),
            notice_played=any(m.get("label") == NOTICE_MARK for m in metadata.get("markers", [])),
            pauses=pause_marks(metadata, row.get("started_at"), events),
            events=shown_events(events, metadata),
            opt_out=opt_out_offer(metadata),
            gaps=metadata.get("gaps", []),
            ended_by=metadata.get("ended_by"),
            label=metadata.get("label") or row.get("label"),
            direction=metadata.get("direction") or row.get("direction"),
            spans=[
                {"from": s, "seconds": length, "what": what}
                for s, length, what in _spans(metadata, row.get("started_at"), events)
            ],
        )
        return details

    def waveform(self, actor: Actor, recording_id: str, device: str | None = None) -> str:
        row = self._row(actor, recording_id, "view", device)
        result = self._decrypted_audio(row)
        return waveform_svg(
            result.samples,
            rate=RATE,
            spans=tuple(_spans(result.metadata, row.get("started_at"), self._call_events(row))),
        )

    def start_play(
        self, actor: Actor, recording_id: str, reason: str, device: str | None = None
    ) -> str:
        """Audit a play with the reason typed; returns the ticket its audio requests carry."""
        row = self._row(actor, recording_id, "play", device)
        reason = _reason(reason)
        if not reason:
            self.record(actor, "play refused", recording_id, "no reason given")
            raise BadRequest("say why you play this recording (the reason is kept in the audit)")
        self.record(actor, "play", recording_id, reason)
        ticket = secrets.token_urlsafe(24)
        with self.lock:
            now = self.clock()
            self._tickets = {k: t for k, t in self._tickets.items() if t.expires > now}
            self._tickets[ticket] = Ticket(
                name=actor.name,
                recording=(row["device"], row["id"]),
                expires=now + PLAY_TICKET_SECONDS,
            )
        return ticket

    def audio(
        self,
        actor: Actor,
        recording_id: str,
        *,
        ticket: str = "",
        reason: str = "",
        device: str | None = None,
    ) -> Listening:
        """The recording as WAV: under a play ticket (the page's player), or with a reason
        (a script: each request is audited as a download)."""
        row = self._row(actor, recording_id, "play", device)
        with self.lock:
            held = self._tickets.get(ticket) if ticket else None
        if held is not None:
            if held.name != actor.name or held.recording != (row["device"], row["id"]):
                raise Forbidden("play", "the play ticket is another user's or recording's")
            if held.expires < self.clock():
                raise BadRequest("this play has expired: give the reason again")
        else:
            reason = _reason(reason)
            if not reason:
                self.record(actor, "download refused", recording_id, "no reason given")
                raise BadRequest("reason: say why you fetch this recording's audio")
            self.record(actor, "download", recording_id, reason)
        return Listening(recording=_public(row), wav=WavStream(self._playable(row)))

    def redact(
        self,
        actor: Actor,
        recording_id: str,
        start: float,
        end: float,
        reason: str,
        device: str | None = None,
    ) -> dict[str, Any]:
        """Silence a span in a new version (linerec.collector.redaction); audited."""
        row = self._row(actor, recording_id, "redact", device)
        with self.lock:
            try:
                done = redact(
                    self.store, self.key, row["id"], start, end, reason,
                    who=actor.name, device=row["device"], now=self.clock(),
                )  # fmt: skip
            except RedactionError as exc:
                self.audit.record(
                    who=actor.name, action="redact refused", recording=row["id"], reason=str(exc)
                )
                raise BadRequest(str(exc)) from exc
        return {
            "id": done.id,
            "device": done.device,
            "version": done.version,
            "from": done.start,
            "to": done.end,
            "original_kept": done.original_kept,
        }

    def export(
        self,
        actor: Actor,
        recording_id: str,
        reason: str,
        device: str | None = None,
        *,
        original: bool = False,
    ) -> tuple[str, bytes]:
        """A customer copy as one ZIP made in memory (the files `collector export` writes):
        its name and bytes. Needs a reason (kept in the audit). `original`: of the original
        a redaction kept aside for a legal hold, which verifies as the appliance's own."""
        row = self._row(actor, recording_id, "export", device)
        action = "export original" if original else "export"
        reason = _reason(reason)
        if not reason:
            self.record(actor, f"{action} refused", row["id"], "no reason given")
            raise BadRequest("say why you export this recording (the reason is kept in the audit)")
        with self.lock:
            try:
                _, files = export_files(
                    self.store, self.key, row["id"], reason, row["device"], original=original
                )
            except NoOriginal as exc:
                self.audit.record(
                    who=actor.name, action=f"{action} refused", recording=row["id"],
                    reason="no original kept",
                )  # fmt: skip
                raise BadRequest(str(exc)) from exc
            self.audit.record(who=actor.name, action=action, recording=row["id"], reason=reason)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for suffix, data in files.items():
                archive.writestr(f"{row['id']}{suffix}", data)
        return f"{row['id']}{'.original' if original else ''}.zip", buffer.getvalue()

    def hold(
        self,
        actor: Actor,
        recording_id: str,
        held: bool,
        reason: str,
        device: str | None = None,
    ) -> dict[str, Any]:
        """Place (or lift) a legal hold; both need a reason, kept in the audit. Lifting it
        shreds an original a redaction kept for the hold."""
        row = self._row(actor, recording_id, "hold", device)
        action = "hold" if held else "release"
        reason = _reason(reason)
        if not reason:
            self.record(actor, f"{action} refused", row["id"], "no reason given")
            raise BadRequest(f"say why ({action}: the reason is kept in the audit)")
        with self.lock:
            self.store.hold(row["id"], held, row["device"])
            self.audit.record(who=actor.name, action=action, recording=row["id"], reason=reason)
        return {"id": row["id"], "device": row["device"], "held": held}

    def delete(
        self, actor: Actor, recording_id: str, reason: str, device: str | None = None
    ) -> dict[str, Any]:
        """Crypto-shred a recording, as `collector delete` does (admin): its key, then its
        file, and what is kept of it in memory here; refused while it is on legal hold."""
        row = self._row(actor, recording_id, "delete", device)
        reason = _reason(reason)
        if not reason:
            self.record(actor, "delete refused", row["id"], "no reason given")
            raise BadRequest("say why this recording is deleted (the reason is kept)")
        with self.lock:
            if self.store.is_held(row["device"], row["id"]):
                self.audit.record(
                    who=actor.name, action="delete refused", recording=row["id"],
                    reason="on legal hold",
                )  # fmt: skip
                raise Conflict(f"{row['device']}/{row['id']} is on legal hold: lift it first")
            entry = self.store.delete(row["id"], reason, row["device"], who=actor.name)
            for cache in (self._decrypted, self._playing):
                for which in [k for k in cache if k[:2] == (row["device"], row["id"])]:
                    del cache[which]
        return {"id": entry["id"], "device": entry["device"], "deletion": entry["hash"]}

    def retention(self, actor: Actor) -> dict[str, Any]:
        """The retention policy (`[collector] retention_days`; 0: kept until deleted)."""
        require(actor, "retention")
        return {"days": self.retention_days}

    def sweep_retention(self, actor: Actor) -> list[str]:
        """Delete now what is past the retention, unless held, as the collector's hourly
        sweep does; the deletions and the sweep are audited as this admin."""
        require(actor, "retention")
        if not self.retention_days:
            return []
        with self.lock:
            gone = self.store.enforce_retention(self.retention_days, self.clock(), who=actor.name)
            self.audit.record(
                who=actor.name, action="retention sweep",
                reason=f"{self.retention_days:g} days: {len(gone)} deleted",
            )  # fmt: skip
            self._decrypted.clear()
            self._playing.clear()
        return gone

    # -- users and grants (admin) -----------------------------------------------------------

    def users(self, actor: Actor) -> list[dict[str, Any]]:
        require(actor, "users")
        with self.lock:
            return self.accounts.users()

    def _user(self, actor: Actor, name: str) -> None:
        require(actor, "users")
        with self.lock:
            known = any(user["name"] == name for user in self.accounts.users())
        if not known:
            self.record(actor, "users refused", reason=f"no user {name[:64]!r}")
            raise NotFound(f"no user {name[:64]!r} (accounts are made with `collector user add`)")

    def set_grant(self, actor: Actor, name: str, kind: str, value: str, granted: bool) -> list[str]:
        """Grant (or revoke) a listener a line (DEVICE/LINE, DEVICE/*) or a label; the
        user's grants after it."""
        self._user(actor, name)
        action = "grant" if granted else "revoke"
        with self.lock:
            try:
                if granted:
                    self.accounts.grant(name, kind, value)
                else:
                    self.accounts.revoke(name, kind, value)
            except AccountError as exc:
                self.audit.record(who=actor.name, action="users refused", reason=str(exc))
                raise BadRequest(str(exc)) from exc
            self.audit.record(who=actor.name, action=action, reason=f"{name} {kind}:{value}")
            return [f"{g.kind}:{g.value}" for g in self.accounts.grants(name)]

    def set_disabled(self, actor: Actor, name: str, disabled: bool) -> dict[str, Any]:
        """Disable an account (its sessions end at once) or enable it again (its lockout
        lifted)."""
        self._user(actor, name)
        if disabled and name == actor.name:
            self.record(actor, "users refused", reason="an admin disabling their own account")
            raise BadRequest(
                "you cannot disable your own account (another admin can, or "
                "`linerec collector user disable`)"
            )
        with self.lock:
            if disabled:
                self.accounts.disable(name)
            else:
                self.accounts.enable(name)
            action = "user disable" if disabled else "user enable"
            self.audit.record(who=actor.name, action=action, reason=name)
        return {"name": name, "disabled": disabled}

    # -- quality review ---------------------------------------------------------------------

    def sample(
        self, actor: Actor, params: Mapping[str, str | None]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """A seeded random sample: N calls per line or label over a period (collector/review)."""
        require(actor, "review")
        per = params.get("per") or "line"
        seed = (params.get("seed") or "").strip() or new_seed()
        try:
            if per not in ("line", "label"):
                raise QueryError("per", per, "line or label")
            n = int(params.get("n") or 1)
            if not 1 <= n <= MAX_SAMPLE:
                raise QueryError("n", params.get("n"), f"a whole number 1-{MAX_SAMPLE}")
            if len(seed) > 64 or not seed.isprintable():
                raise QueryError("seed", seed[:80], "at most 64 printable characters")
            period = {k: params.get(k) for k in ("since", "until", "device", "label")}
            query = replace(parse_query(period, scope=scope(actor)), limit=-1, sort="seq")
        except (QueryError, ValueError) as exc:
            self.record(actor, "review sample refused", reason=str(exc))
            raise BadRequest(str(exc)) from exc
        with self.lock:
            self._catalog_new()
            rows, _ = self.store.search(query)
        chosen = draw(rows, per=per, n=n, seed=seed)
        asked = {"per": per, "n": n, "seed": seed, "since": query.since, "until": query.until}
        self.record(
            actor,
            "review sample",
            reason=" ".join(f"{k}={v}" for k, v in asked.items() if v is not None)
            + f": {len(chosen)} of {len(rows)}",
        )
        return [_public(row) for row in chosen], {**asked, "of": len(rows)}

    def review(
        self,
        actor: Actor,
        recording_id: str,
        answers: dict[str, Any],
        comment: str,
        device: str | None = None,
    ) -> dict[str, Any]:
        """Keep a review of the recording: every criterion answered, a free comment."""
        row = self._row(actor, recording_id, "review", device)
        comment = comment.strip()[:MAX_COMMENT]
        try:
            scores = self.scorecard.score(answers)
        except ValueError as exc:
            self.record(actor, "review refused", row["id"], str(exc))
            raise BadRequest(str(exc)) from exc
        with self.lock:
            number = save_review(
                self.store.db, row["device"], row["id"], actor.name, self.clock(), scores, comment
            )
            self.audit.record(
                who=actor.name, action="review", recording=row["id"], reason=json.dumps(scores)
            )
        return {
            "review": number, "device": row["device"], "id": row["id"], "scores": scores,
            "comment": comment,
        }  # fmt: skip

    def review_numbered(self, actor: Actor, number: int) -> dict[str, Any]:
        """One review, as its newest edit has it (NotFound if there is no such review)."""
        require(actor, "review")
        with self.lock:
            found = reviews(self.store.db, number=number)
        if not found:
            self.record(actor, "review edit refused", reason=f"no review {number}")
            raise NotFound(f"no review {number} at this collector")
        self._row(actor, found[0]["id"], "review", found[0]["device"])  # its grants
        return found[0]

    def edit_review(
        self, actor: Actor, number: int, answers: dict[str, Any], comment: str
    ) -> dict[str, Any]:
        """Correct a review: every criterion answered again, a comment. The edit is kept
        beside the review (what it said before stays) and audited, with the answers it had
        and has now."""
        was = self.review_numbered(actor, number)
        comment = comment.strip()[:MAX_COMMENT]
        try:
            scores = self.scorecard.score(answers)
        except ValueError as exc:
            self.record(actor, "review edit refused", was["id"], f"review {number}: {exc}")
            raise BadRequest(str(exc)) from exc
        change = {
            "was": {"scores": was["scores"], "comment": was["comment"]},
            "now": {"scores": scores, "comment": comment},
        }
        with self.lock:
            edit_review(self.store.db, number, actor.name, self.clock(), scores, comment)
            self.audit.record(
                who=actor.name, action="review edited", recording=was["id"],
                reason=f"review {number}: {json.dumps(change)}",
            )  # fmt: skip
            (now,) = reviews(self.store.db, number=number)
        return now

    def reviews_of(self, actor: Actor, row: dict[str, Any]) -> list[dict[str, Any]]:
        if not allowed(actor, "review"):
            return []
        with self.lock:
            return reviews(self.store.db, row["device"], row["id"])

    def reviews_csv(self, actor: Actor) -> str:
        require(actor, "review")
        with self.lock:
            rows = reviews(self.store.db)
            self.audit.record(who=actor.name, action="review export", reason=f"{len(rows)} rows")
        return reviews_csv(rows, self.scorecard)

    # -- the fleet --------------------------------------------------------------------------

    def fleet(self, actor: Actor, *, audited: bool = False) -> list[dict[str, Any]]:
        """Each appliance's retained status and health, last recording and gaps (admin).
        The page's view is audited; its refreshes are not (one entry a second says nothing)."""
        require(actor, "fleet")
        with self.lock:
            if audited:
                self.audit.record(who=actor.name, action="fleet")
            devices = self.store.fleet()
        now = self.clock()
        for device in devices:
            device["now"] = now
        return devices

    def _call_events(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        with self.lock:
            return self.store.call_events(row["device"], row["id"])

    # -- the audit --------------------------------------------------------------------------

    def audit_log(self, actor: Actor, limit: int = 500) -> tuple[list[dict[str, Any]], list[str]]:
        require(actor, "audit")
        with self.lock:
            self.audit.record(who=actor.name, action="audit")
            return self.audit.entries(limit=limit), self.audit.verify()


def _reason(text: str) -> str:
    return " ".join(text.split())[:500]


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A recording as the console shows it (not where its file is)."""
    return {k: v for k, v in row.items() if k != "path"}


def opt_out_offer(metadata: dict[str, Any]) -> str:
    """Whether the call's parties could opt out, as the policy kept with it says."""
    policy = metadata.get("policy") or {}
    key = policy.get("opt_out_key") if isinstance(policy, dict) else None
    if not key:
        return "not offered (no opt-out key on this line)"
    if metadata.get("consent") not in ("notice", "notice+beep") or (
        metadata.get("direction") != "inbound"
    ):
        return "not offered (no notice to the far end on this call)"
    window = policy.get("opt_out_window_s")
    return (
        f"offered: key {key} for {window:g} s after the notice; not used "
        "(a call opted out of is not kept)"
    )


def audio_start(events: list[dict[str, Any]], metadata: dict[str, Any]) -> float | None:
    """The appliance's monotonic time of the recording's first sample: the recording_started
    event's, less the notice recorded before it (the notice marker's place in the audio)."""
    started = next((e.get("t") for e in events if e.get("event") == "recording_started"), None)
    if not isinstance(started, int | float):
        return None
    notice = next(
        (m.get("at") for m in metadata.get("markers", []) or [] if m.get("label") == NOTICE_MARK),
        0.0,
    )
    return float(started) - float(notice or 0.0)


def shown_events(events: list[dict[str, Any]], metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """The call's events as the page lists them: each with the seconds since the recording
    began (negative: before it, e.g. the rings), and its details (not the appliance's path)."""
    zero = audio_start(events, metadata)
    shown = []
    for body in events:
        t = body.get("t")
        offset = None
        if zero is not None and isinstance(t, int | float):
            offset = round(float(t) - zero, 1) + 0.0  # + 0.0: never "-0.0 s"
        details = {
            k: v for k, v in body.items()
            if k not in ("seq", "device", "line", "event", "t", "at", "path", "id")
        }  # fmt: skip
        shown.append(
            {"event": body.get("event"), "at": body.get("at"), "offset": offset,
             "details": ", ".join(f"{k} {v}" for k, v in sorted(details.items()))}
        )  # fmt: skip
    return shown


def pause_marks(
    metadata: dict[str, Any], started_at: str | None, events: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Where each pause (PCI) is in the recording. A paused call's audio is not kept, so a
    pause is a point in the recording (`at` s into it) where the call went on unrecorded for
    `seconds`; the pauses before it are not in the recording either. Placed by the call's
    recording_paused events (the appliance's monotonic clock) when they are here, else by the
    wall-clock times in the metadata."""
    events = events or []
    zero = audio_start(events, metadata)
    paused = [e.get("t") for e in events if e.get("event") == "recording_paused"]
    start = _when(metadata.get("started_at") or started_at)
    marks, skipped = [], 0.0
    for index, pause in enumerate(metadata.get("pauses", []) or []):
        seconds = float(pause.get("seconds", 0) or 0)
        began = _when(pause.get("from"))
        t = paused[index] if index < len(paused) else None
        if zero is not None and isinstance(t, int | float):
            at: float | None = max(0.0, float(t) - zero - skipped)
        elif start is not None and began is not None:
            at = max(0.0, began - start - skipped)
        else:
            at = None
        by = str(pause.get("by", "?"))
        marks.append({"at": at, "seconds": seconds, "by": by, "from": pause.get("from")})
        skipped += seconds
    return marks


def _spans(
    metadata: dict[str, Any], started_at: str | None, events: list[dict[str, Any]]
) -> list[tuple[float, float, str]]:
    """Pauses (PCI: points, as their audio is not kept), gaps and redactions as
    (start s, length s, what) from the recording's start."""
    spans: list[tuple[float, float, str]] = []
    for mark in pause_marks(metadata, started_at, events):
        if mark["at"] is not None:
            spans.append((mark["at"], 0.0, f"paused {mark['seconds']:g} s ({mark['by']})"))
    for gap in metadata.get("gaps", []) or []:
        spans.append(
            (float(gap.get("at", 0)), float(gap.get("seconds", 0)), str(gap.get("reason")))
        )
    for cut in metadata.get("redactions", []) or []:
        spans.append(
            (float(cut["from"]), float(cut["to"]) - float(cut["from"]), f"redacted by {cut['by']}")
        )
    return spans


def _when(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None
