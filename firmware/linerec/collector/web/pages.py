"""The console's pages: login, search, a recording (waveform and player), the audit.

Every form that changes something carries the session's CSRF token (the login form a
double-submit token of its own, as there is no session yet); pages only render what the
service answers.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from linerec.collector.accounts import Actor, LoginRefused
from linerec.collector.listen import line_of
from linerec.collector.search import FIELDS, PAGE_FIELDS
from linerec.collector.web.live import LiveListening
from linerec.collector.web.permissions import require
from linerec.collector.web.requests import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Asker,
    CsrfRefused,
    audio_response,
    live_response,
    set_session,
    zip_response,
)
from linerec.collector.web.service import BadRequest, ConsoleService

router = APIRouter(include_in_schema=False)


def service_of(request: Request) -> ConsoleService:
    service: ConsoleService = request.app.state.service
    return service


def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    context.setdefault("actor", getattr(request.state, "actor", None))
    return templates.TemplateResponse(request, name, context, status_code=status)


def check_csrf(actor: Actor, token: str) -> None:
    if not actor.csrf or not hmac.compare_digest(actor.csrf, token):
        raise CsrfRefused()


@router.get("/login")
def login_page(request: Request, message: str = "") -> Response:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", csrf=token, message="", actor=None)
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=request.app.state.tls
    )
    return response


@router.post("/login")
def login(
    request: Request,
    name: str = Form(""),
    password: str = Form(""),
    code: str = Form(""),
    csrf: str = Form(""),
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf):
        raise CsrfRefused()
    try:
        token, _ = service_of(request).login(name[:64], password[:1024], code[:16])
    except LoginRefused as exc:
        fresh = secrets.token_urlsafe(24)
        response = render(request, "login.html", 401, csrf=fresh, message=str(exc), actor=None)
        response.set_cookie(
            LOGIN_CSRF_COOKIE, fresh, httponly=True, samesite="strict", secure=request.app.state.tls
        )
        return response
    response = RedirectResponse("/recordings", status_code=303)
    set_session(response, request, token)
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, actor: Asker, csrf: str = Form("")) -> Response:
    check_csrf(actor, csrf)
    service_of(request).logout(request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/")
def home() -> Response:
    return RedirectResponse("/recordings", status_code=303)


@router.get("/recordings")
def recordings(request: Request, actor: Asker) -> Response:
    params = dict(request.query_params)
    try:
        found, query = service_of(request).search(actor, params)
    except BadRequest as exc:
        return render(request, "recordings.html", 400, rows=[], total=0, params=params,
                      message=str(exc), pages={})  # fmt: skip
    kept = {k: v for k, v in params.items() if v and k in FIELDS and k not in PAGE_FIELDS}
    kept.pop("offset", None)
    # The links page by cursor (the row a page ended at): as fast at page 1,000 as at page 2.
    # The page number is only shown (it travels beside the cursor).
    if found.previous is None:
        number = 1
    elif query.after is None and query.before is None:
        number = query.offset // query.limit + 1
    else:  # 2 at least: there is a page before this one
        number = max(2, int(params.get("page") or 2))
    pages = {
        "page": number,
        "previous": urlencode({**kept, "before": found.previous, "page": number - 1})
        if found.previous
        else "",
        "next": urlencode({**kept, "after": found.next, "page": number + 1}) if found.next else "",
    }
    return render(request, "recordings.html", rows=found.rows, total=found.total, params=params,
                  message="", pages=pages)  # fmt: skip


@router.get("/recordings/{recording_id}")
def recording(
    recording_id: str,
    request: Request,
    actor: Asker,
    play: str = "",
    device: str | None = None,
    done: str = "",
) -> Response:
    details = service_of(request).recording(actor, recording_id, device)
    return render(request, "recording.html", r=details, ticket=play, message="", done=done[:200])


def _refused(
    request: Request, actor: Actor, recording_id: str, device: str | None, exc: BadRequest
) -> Response:
    """The recording's page again, saying why the form was refused (400)."""
    details = service_of(request).recording(actor, recording_id, device)
    return render(request, "recording.html", 400, r=details, ticket="", message=str(exc))


def _page(recording_id: str, device: str, **query: str) -> str:
    return f"/recordings/{recording_id}?{urlencode({'device': device, **query})}"


@router.post("/recordings/{recording_id}/play")
def play(
    recording_id: str,
    request: Request,
    actor: Asker,
    reason: str = Form(""),
    csrf: str = Form(""),
    device: str | None = None,
) -> Response:
    check_csrf(actor, csrf)
    service = service_of(request)
    try:
        ticket = service.start_play(actor, recording_id, reason, device)
    except BadRequest as exc:
        return _refused(request, actor, recording_id, device, exc)
    details = service.recording(actor, recording_id, device)
    return RedirectResponse(_page(recording_id, details["device"], play=ticket), status_code=303)


@router.post("/recordings/{recording_id}/redact")
def redact(
    recording_id: str,
    request: Request,
    actor: Asker,
    start: str = Form("", alias="from"),
    end: str = Form("", alias="to"),
    reason: str = Form(""),
    csrf: str = Form(""),
    device: str | None = None,
) -> Response:
    check_csrf(actor, csrf)
    service = service_of(request)
    try:
        try:
            span = float(start), float(end)
        except ValueError as exc:
            raise BadRequest(f"from, to: seconds, e.g. 12.5 (got {start!r}, {end!r})") from exc
        done = service.redact(actor, recording_id, span[0], span[1], reason, device)
    except BadRequest as exc:
        return _refused(request, actor, recording_id, device, exc)
    said = f"{done['from']:g}-{done['to']:g} s silenced in version {done['version']}"
    return RedirectResponse(_page(recording_id, done["device"], done=said), status_code=303)


@router.post("/recordings/{recording_id}/export")
def export(
    recording_id: str,
    request: Request,
    actor: Asker,
    reason: str = Form(""),
    csrf: str = Form(""),
    original: str = Form(""),
    device: str | None = None,
) -> Response:
    check_csrf(actor, csrf)
    service = service_of(request)
    try:
        name, data = service.export(actor, recording_id, reason, device, original=original == "yes")
    except BadRequest as exc:
        return _refused(request, actor, recording_id, device, exc)
    return zip_response(name, data)


@router.post("/recordings/{recording_id}/hold")
def hold(
    recording_id: str,
    request: Request,
    actor: Asker,
    held: str = Form(""),
    reason: str = Form(""),
    csrf: str = Form(""),
    device: str | None = None,
) -> Response:
    check_csrf(actor, csrf)
    service = service_of(request)
    try:
        done = service.hold(actor, recording_id, held == "yes", reason, device)
    except BadRequest as exc:
        return _refused(request, actor, recording_id, device, exc)
    said = "on legal hold" if done["held"] else "legal hold lifted"
    return RedirectResponse(_page(recording_id, done["device"], done=said), status_code=303)


@router.post("/recordings/{recording_id}/delete")
def delete(
    recording_id: str,
    request: Request,
    actor: Asker,
    reason: str = Form(""),
    csrf: str = Form(""),
    device: str | None = None,
) -> Response:
    check_csrf(actor, csrf)
    service = service_of(request)
    try:
        service.delete(actor, recording_id, reason, device)
    except BadRequest as exc:
        return _refused(request, actor, recording_id, device, exc)
    return RedirectResponse("/recordings", status_code=303)


@router.get("/retention")
def retention(request: Request, actor: Asker, done: str = "") -> Response:
    policy = service_of(request).retention(actor)
    return render(request, "retention.html", days=policy["days"], done=done[:200])


@router.post("/retention/sweep")
def sweep(request: Request, actor: Asker, csrf: str = Form("")) -> Response:
    check_csrf(actor, csrf)
    gone = service_of(request).sweep_retention(actor)
    said = f"{len(gone)} recording{'' if len(gone) == 1 else 's'} past the retention deleted"
    return RedirectResponse(f"/retention?{urlencode({'done': said})}", status_code=303)


@router.get("/users")
def users(request: Request, actor: Asker, done: str = "") -> Response:
    return render(request, "users.html", users=service_of(request).users(actor), message="",
                  done=done[:200])  # fmt: skip


def _users_refused(request: Request, actor: Actor, exc: BadRequest) -> Response:
    users = service_of(request).users(actor)
    return render(request, "users.html", 400, users=users, message=str(exc), done="")


@router.post("/users/{name}/grants")
def grant(
    name: str,
    request: Request,
    actor: Asker,
    kind: str = Form(""),
    value: str = Form(""),
    granted: str = Form("yes"),
    csrf: str = Form(""),
) -> Response:
    check_csrf(actor, csrf)
    try:
        service_of(request).set_grant(actor, name, kind[:16], value[:200], granted == "yes")
    except BadRequest as exc:
        return _users_refused(request, actor, exc)
    said = f"{name}: {'granted' if granted == 'yes' else 'revoked'} {kind} {value}"
    return RedirectResponse(f"/users?{urlencode({'done': said})}", status_code=303)


@router.post("/users/{name}/disable")
def disable(
    name: str,
    request: Request,
    actor: Asker,
    disabled: str = Form("yes"),
    csrf: str = Form(""),
) -> Response:
    check_csrf(actor, csrf)
    try:
        service_of(request).set_disabled(actor, name, disabled == "yes")
    except BadRequest as exc:
        return _users_refused(request, actor, exc)
    said = f"{name}: {'disabled' if disabled == 'yes' else 'enabled'}"
    return RedirectResponse(f"/users?{urlencode({'done': said})}", status_code=303)


@router.get("/recordings/{recording_id}/waveform.svg")
def waveform(
    recording_id: str, request: Request, actor: Asker, device: str | None = None
) -> Response:
    svg = service_of(request).waveform(actor, recording_id, device)
    return Response(svg, media_type="image/svg+xml")


@router.get("/recordings/{recording_id}/audio.wav")
def audio(
    recording_id: str,
    request: Request,
    actor: Asker,
    ticket: str = "",
    device: str | None = None,
) -> Response:
    if not ticket:
        raise BadRequest("play the recording from its page (a reason is asked for first)")
    listening = service_of(request).audio(actor, recording_id, ticket=ticket, device=device)
    return audio_response(request, listening.wav)


@router.get("/review")
def review_sample(request: Request, actor: Asker) -> Response:
    params = dict(request.query_params)
    service = service_of(request)
    if not params:  # the form first
        require(actor, "review")
        return render(request, "review.html", rows=[], asked={}, params={}, message="")
    try:
        rows, asked = service.sample(actor, params)
    except BadRequest as exc:
        return render(request, "review.html", 400, rows=[], asked={}, params=params,
                      message=str(exc))  # fmt: skip
    return render(request, "review.html", rows=rows, asked=asked, params=params, message="")


@router.get("/recordings/{recording_id}/review")
def review_call(
    recording_id: str,
    request: Request,
    actor: Asker,
    device: str | None = None,
    seed: str = "",
    done: str = "",
) -> Response:
    """The call's player beside the scorecard; opening it is an audited play."""
    service = service_of(request)
    require(actor, "review", recording_id)
    details = service.recording(actor, recording_id, device)
    why = f"quality review (sample {seed[:64]})" if seed else "quality review"
    ticket = service.start_play(actor, recording_id, why, details["device"])
    return render(
        request, "review_call.html", r=details, ticket=ticket, seed=seed[:64], message="",
        done=done[:200], card=service.scorecard, reviews=service.reviews_of(actor, details),
    )  # fmt: skip


@router.post("/recordings/{recording_id}/review")
async def review_submit(
    recording_id: str, request: Request, actor: Asker, device: str | None = None
) -> Response:
    form = await request.form()
    check_csrf(actor, str(form.get("csrf", "")))
    service = service_of(request)
    names = {c.name for c in service.scorecard.criteria}
    answers = {k[2:]: str(v) for k, v in form.items() if k.startswith("c_") and k[2:] in names}
    try:
        kept = await run_in_threadpool(
            service.review, actor, recording_id, answers, str(form.get("comment", "")), device
        )
    except BadRequest as exc:
        details = service.recording(actor, recording_id, device)
        return render(
            request, "review_call.html", 400, r=details, ticket="", seed="", message=str(exc),
            done="", card=service.scorecard, reviews=service.reviews_of(actor, details),
        )  # fmt: skip
    return RedirectResponse(
        f"/recordings/{recording_id}/review?"
        + urlencode(
            {
                "device": kept["device"],
                "seed": str(form.get("seed", ""))[:64],
                "done": "review kept",
            }
        ),
        status_code=303,
    )


@router.get("/reviews/{number}/edit")
def review_edit(number: int, request: Request, actor: Asker) -> Response:
    """A review's scorecard filled in with its answers, to correct them, beside the call's
    player (opening it is an audited play, as for a review)."""
    service = service_of(request)
    kept = service.review_numbered(actor, number)
    details = service.recording(actor, kept["id"], kept["device"])
    ticket = service.start_play(actor, kept["id"], f"quality review (editing review {number})",
                                kept["device"])  # fmt: skip
    return render(
        request, "review_call.html", r=details, ticket=ticket, seed="", message="", done="",
        card=service.scorecard, reviews=service.reviews_of(actor, details), editing=kept,
    )  # fmt: skip


@router.post("/reviews/{number}")
async def review_edit_submit(number: int, request: Request, actor: Asker) -> Response:
    form = await request.form()
    check_csrf(actor, str(form.get("csrf", "")))
    service = service_of(request)
    names = {c.name for c in service.scorecard.criteria}
    answers = {k[2:]: str(v) for k, v in form.items() if k.startswith("c_") and k[2:] in names}
    comment = str(form.get("comment", ""))
    try:
        now = await run_in_threadpool(service.edit_review, actor, number, answers, comment)
    except BadRequest as exc:
        kept = await run_in_threadpool(service.review_numbered, actor, number)
        details = await run_in_threadpool(service.recording, actor, kept["id"], kept["device"])
        return render(
            request, "review_call.html", 400, r=details, ticket="", seed="", message=str(exc),
            done="", card=service.scorecard, reviews=service.reviews_of(actor, details),
            editing=kept,
        )  # fmt: skip
    return RedirectResponse(
        f"/recordings/{now['id']}/review?"
        + urlencode({"device": now["device"], "done": f"review {number} edited"}),
        status_code=303,
    )


@router.get("/fleet")
def fleet(request: Request, actor: Asker) -> Response:
    devices = service_of(request).fleet(actor, audited=True)
    return render(request, "fleet.html", devices=devices)


@router.get("/audit")
def audit(request: Request, actor: Asker) -> Response:
    entries, problems = service_of(request).audit_log(actor)
    return render(request, "audit.html", entries=entries[::-1], problems=problems)


def live_of(request: Request) -> LiveListening:
    live: LiveListening = request.app.state.live
    return live


@router.get("/live")
def live_calls(request: Request, actor: Asker) -> Response:
    """The calls in progress, each with a form to listen (a reason first)."""
    return render(request, "live.html", calls=live_of(request).calls(actor), message="")


@router.post("/live/{device}/{recording_id}/listen")
def live_listen(
    device: str,
    recording_id: str,
    request: Request,
    actor: Asker,
    reason: str = Form(""),
    csrf: str = Form(""),
) -> Response:
    check_csrf(actor, csrf)
    live = live_of(request)
    try:
        ticket = live.start(actor, device, recording_id, reason)
    except BadRequest as exc:
        return render(request, "live.html", 400, calls=live.calls(actor), message=str(exc))
    return RedirectResponse(
        f"/live/{quote(device, safe='')}/{quote(recording_id, safe='')}?"
        + urlencode({"ticket": ticket}),
        status_code=303,
    )


@router.get("/live/{device}/{recording_id}")
def live_call(
    device: str, recording_id: str, request: Request, actor: Asker, ticket: str = ""
) -> Response:
    """The player of a call in progress, under the ticket its reason was given for."""
    live = live_of(request)
    live.reason_of(actor, device, recording_id, ticket=ticket)
    call = {"device": device, "id": recording_id, "line": line_of(recording_id)}
    return render(request, "live_call.html", call=call, ticket=ticket)


@router.get("/live/{device}/{recording_id}/audio.wav")
def live_audio(
    device: str, recording_id: str, request: Request, actor: Asker, ticket: str = ""
) -> Response:
    if not ticket:
        raise BadRequest("listen from the Live page (a reason is asked for first)")
    live = live_of(request)
    reason = live.reason_of(actor, device, recording_id, ticket=ticket)
    return live_response(live.audio(actor, device, recording_id, reason))
