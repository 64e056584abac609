"""The JSON API, at fixed paths scripts can rely on (documented at /api/openapi.json).

A POST with the session cookie must be JSON: a browser cannot send JSON to another site
without asking first (CORS), and the cookie is SameSite=Strict, so no form elsewhere can
act for a signed-in user.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from linerec.collector.accounts import LoginRefused
from linerec.collector.web.live import LiveListening
from linerec.collector.web.requests import (
    SESSION_COOKIE,
    Asker,
    CsrfRefused,
    audio_response,
    live_response,
    set_session,
    zip_response,
)
from linerec.collector.web.service import ConsoleService

router = APIRouter(prefix="/api")


class Login(BaseModel):
    name: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    code: str = Field(max_length=16, description="the authenticator's 6-digit code (TOTP)")


def service_of(request: Request) -> ConsoleService:
    service: ConsoleService = request.app.state.service
    return service


def json_only(request: Request) -> None:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise CsrfRefused()


@router.post("/login", dependencies=[Depends(json_only)])
def login(body: Login, request: Request) -> Response:
    """Sets the session cookie; 401 with one message whatever was wrong."""
    try:
        token, actor = service_of(request).login(body.name, body.password, body.code)
    except LoginRefused as exc:
        return JSONResponse({"detail": str(exc)}, status_code=401)
    response = JSONResponse({"name": actor.name, "role": actor.role, "csrf": actor.csrf})
    set_session(response, request, token)
    return response


@router.post("/logout", dependencies=[Depends(json_only)])
def logout(request: Request) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        service_of(request).logout(token)
    response = JSONResponse({"detail": "logged out"})
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/recordings")
def recordings(
    request: Request,
    actor: Asker,
    number: str | None = None,
    device: str | None = None,
    line: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> dict[str, Any]:
    """Search. Besides the named filters: label, direction, caller, called (prefixes),
    min_duration, max_duration, review, held, sort, limit, offset, page; after and before
    take the `next` and `previous` cursors of an answer (the pages beside it)."""
    params = dict(request.query_params)
    page, query = service_of(request).search(actor, params)
    return {
        "recordings": page.rows,
        "total": page.total,
        "limit": query.limit,
        "offset": query.offset,
        "next": page.next,
        "previous": page.previous,
    }


@router.get("/recordings/{recording_id}")
def recording(recording_id: str, request: Request, actor: Asker, device: str | None = None) -> Any:
    """Its metadata (`device` names it if several devices have this id)."""
    return service_of(request).recording(actor, recording_id, device)


@router.get(
    "/recordings/{recording_id}/audio",
    response_class=Response,
    responses={200: {"content": {"audio/wav": {}}}, 206: {"content": {"audio/wav": {}}}},
)
def audio(
    recording_id: str,
    request: Request,
    actor: Asker,
    reason: str = "",
    ticket: str = "",
    device: str | None = None,
) -> Response:
    """The audio as WAV (8 kHz, 16-bit); HTTP range requests are answered (206)."""
    listening = service_of(request).audio(
        actor, recording_id, ticket=ticket, reason=reason, device=device
    )
    return audio_response(request, listening.wav)


@router.get(
    "/recordings/{recording_id}/export",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
)
def export(
    recording_id: str,
    request: Request,
    actor: Asker,
    reason: str = "",
    device: str | None = None,
    original: bool = False,
) -> Response:
    """A customer copy (supervisor): a ZIP of ID.wav, ID.json, ID.lrec and ID.verify.json,
    which `linerec collector verify-export ID.wav --collector collector.pub` checks.
    `original=true`: of the original a redaction kept aside for a legal hold (the
    appliance's recording, as it sealed it; 400 if none is kept)."""
    name, data = service_of(request).export(actor, recording_id, reason, device, original=original)
    return zip_response(name, data)


class Hold(BaseModel):
    held: bool = Field(description="true: place a legal hold; false: lift it")
    reason: str = Field(max_length=500)


@router.post("/recordings/{recording_id}/hold", dependencies=[Depends(json_only)])
def hold(
    recording_id: str, body: Hold, request: Request, actor: Asker, device: str | None = None
) -> dict[str, Any]:
    """Place or lift a legal hold (supervisor); a held recording is never deleted."""
    return service_of(request).hold(actor, recording_id, body.held, body.reason, device)


class Redact(BaseModel):
    from_: float = Field(alias="from", ge=0, description="start of the span, seconds")
    to: float = Field(gt=0, description="end of the span, seconds")
    reason: str = Field(max_length=500)


@router.post("/recordings/{recording_id}/redact", dependencies=[Depends(json_only)])
def redact(
    recording_id: str, body: Redact, request: Request, actor: Asker, device: str | None = None
) -> dict[str, Any]:
    """Silence `from`..`to` seconds in a new version of the recording, sealed and signed by
    the collector (supervisor). The original's key is destroyed unless the recording is on
    legal hold (then the original is kept for the hold only). 400 for an empty reason or a
    span outside the recording."""
    return service_of(request).redact(actor, recording_id, body.from_, body.to, body.reason, device)


class Delete(BaseModel):
    reason: str = Field(max_length=500)


@router.post("/recordings/{recording_id}/delete", dependencies=[Depends(json_only)])
def delete(
    recording_id: str, body: Delete, request: Request, actor: Asker, device: str | None = None
) -> dict[str, Any]:
    """Crypto-shred the recording, as `collector delete` (admin): its key and file go, the
    deletion log grows. 409 while it is on legal hold; 400 for an empty reason."""
    return service_of(request).delete(actor, recording_id, body.reason, device)


@router.get("/retention")
def retention(request: Request, actor: Asker) -> dict[str, Any]:
    """The retention policy, `[collector] retention_days` (0: kept until deleted) (admin)."""
    return service_of(request).retention(actor)


@router.post("/retention/sweep", dependencies=[Depends(json_only)])
def sweep(request: Request, actor: Asker) -> dict[str, Any]:
    """Delete now what is past the retention, unless on legal hold, as the collector's
    hourly sweep does (admin); the ids deleted."""
    return {"deleted": service_of(request).sweep_retention(actor)}


@router.get("/users")
def users(request: Request, actor: Asker) -> dict[str, Any]:
    """The console's accounts: role, disabled, locked, grants (admin). Accounts are made on
    the server (`linerec collector user add`)."""
    return {"users": service_of(request).users(actor)}


class UserState(BaseModel):
    disabled: bool = Field(description="true: disable (its sessions end); false: enable")


@router.post("/users/{name}", dependencies=[Depends(json_only)])
def user(name: str, body: UserState, request: Request, actor: Asker) -> dict[str, Any]:
    """Disable or enable an account (admin); not one's own."""
    return service_of(request).set_disabled(actor, name, body.disabled)


class GrantChange(BaseModel):
    kind: str = Field(max_length=16, description="line or label")
    value: str = Field(max_length=200, description="DEVICE/LINE, DEVICE/*, or a label")
    granted: bool = Field(default=True, description="false: revoke it")


@router.post("/users/{name}/grants", dependencies=[Depends(json_only)])
def grants(name: str, body: GrantChange, request: Request, actor: Asker) -> dict[str, Any]:
    """Grant or revoke a line or label (admin); the user's grants after it."""
    granted = service_of(request).set_grant(actor, name, body.kind, body.value, body.granted)
    return {"name": name, "grants": granted}


@router.get("/review/sample")
def review_sample(
    request: Request,
    actor: Asker,
    per: str = "line",
    n: int = 1,
    since: str | None = None,
    until: str | None = None,
    seed: str | None = None,
) -> dict[str, Any]:
    """A random sample of N calls per line (or label) over a period (supervisor). The draw
    is reproducible from `seed` (chosen by the collector if not given, and returned)."""
    rows, asked = service_of(request).sample(actor, dict(request.query_params))
    return {"recordings": rows, **asked}


class Review(BaseModel):
    scores: dict[str, str | int] = Field(description="an answer for every criterion")
    comment: str = Field(default="", max_length=2000)


@router.post("/recordings/{recording_id}/review", dependencies=[Depends(json_only)])
def review(
    recording_id: str, body: Review, request: Request, actor: Asker, device: str | None = None
) -> dict[str, Any]:
    """Keep a review of the recording against the config's scorecard (supervisor)."""
    return service_of(request).review(actor, recording_id, dict(body.scores), body.comment, device)


@router.post("/reviews/{number}", dependencies=[Depends(json_only)])
def edit_review(number: int, body: Review, request: Request, actor: Asker) -> dict[str, Any]:
    """Correct review `number` (supervisor): every criterion answered again, and a comment.
    The review keeps who made it; it shows the newest edit and who made that (`edited_by`,
    `edited_at`); each edit is kept and audited with what the review said before."""
    return service_of(request).edit_review(actor, number, dict(body.scores), body.comment)


@router.get("/reviews.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def reviews_csv(request: Request, actor: Asker) -> Response:
    """Every review, one line each, a column per criterion (supervisor)."""
    return Response(
        service_of(request).reviews_csv(actor),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="reviews.csv"'},
    )


@router.get("/fleet")
def fleet(request: Request, actor: Asker) -> dict[str, Any]:
    """Each appliance: online/offline since when, lines and hook state, card fill, clock,
    last recording, gaps in its event and recording chains, faults (admin)."""
    return {"devices": service_of(request).fleet(actor)}


@router.get("/audit")
def audit(request: Request, actor: Asker) -> dict[str, Any]:
    """The newest audit entries, and whether the audit and deletion chains verify."""
    entries, problems = service_of(request).audit_log(actor)
    return {"entries": entries, "verified": not problems, "problems": problems}


@router.get("/live")
def live_calls(request: Request, actor: Asker) -> dict[str, Any]:
    """The calls in progress (supervisor): device, line, id, started_at, what is held."""
    live: LiveListening = request.app.state.live
    return {"calls": live.calls(actor)}


@router.get(
    "/live/{device}/{recording_id}/audio",
    response_class=Response,
    responses={200: {"content": {"audio/wav": {}}}},
)
def live_audio(
    device: str, recording_id: str, request: Request, actor: Asker, reason: str = ""
) -> Response:
    """A call in progress as WAV (8 kHz, 16-bit, length unknown) from now until it ends
    (supervisor; `reason` is kept in the audit with how long it was listened to)."""
    live: LiveListening = request.app.state.live
    said = live.reason_of(actor, device, recording_id, reason=reason)
    return live_response(live.audio(actor, device, recording_id, said))
