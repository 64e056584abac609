"""What the console's routes share: who asks (session cookie or script token), the session
cookie itself, refusals, and the audio and ZIP responses."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from linerec.collector.accounts import Actor
from linerec.collector.web.service import ConsoleService

SESSION_COOKIE = "linerec_session"
LOGIN_CSRF_COOKIE = "linerec_login_csrf"


class Unauthenticated(Exception):
    """No live session and no valid token (401 for the API, the login page otherwise)."""


class CsrfRefused(Exception):
    """A form that changes something came without its session's CSRF token."""


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def actor_of(request: Request) -> Actor:
    """Who asks: a script's bearer token, or the session cookie (resolved once per request)."""
    known: Actor | None = getattr(request.state, "actor", None)
    if known is not None:
        return known
    service: ConsoleService = request.app.state.service
    authorization = request.headers.get("authorization", "")
    actor = None
    if authorization.lower().startswith("bearer "):
        actor = service.token(authorization[7:].strip())
    elif request.cookies.get(SESSION_COOKIE):
        actor = service.session(request.cookies[SESSION_COOKIE])
    if actor is None:
        raise Unauthenticated()
    request.state.actor = actor
    return actor


Asker = Annotated[Actor, Depends(actor_of)]


def set_session(response: Response, request: Request, token: str) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, Secure over TLS, ended with the browser."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=bool(request.app.state.tls),
        path="/",
    )


def audio_response(request: Request, wav: bytes) -> Response:
    """The WAV, or the one byte range asked for (so a player can seek)."""
    from linerec.collector.web.audio import RangeNotSatisfiable, byte_range

    headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store"}
    try:
        span = byte_range(request.headers.get("range"), len(wav))
    except RangeNotSatisfiable:
        return Response(
            status_code=416, headers={**headers, "Content-Range": f"bytes */{len(wav)}"}
        )
    if span is None:
        return Response(wav, media_type="audio/wav", headers=headers)
    first, last = span
    return Response(
        wav[first : last + 1],
        status_code=206,
        media_type="audio/wav",
        headers={**headers, "Content-Range": f"bytes {first}-{last}/{len(wav)}"},
    )


def zip_response(name: str, data: bytes) -> Response:
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
