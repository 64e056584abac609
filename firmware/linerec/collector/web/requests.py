"""What the console's routes share: who asks (session cookie or script token), the session
cookie itself, refusals, and the audio and ZIP responses."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response, StreamingResponse

from linerec.collector.accounts import Actor
from linerec.collector.web.audio import RangeNotSatisfiable, WavStream, byte_range
from linerec.collector.web.service import ConsoleService, Unreadable

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


def audio_response(request: Request, wav: WavStream) -> Response:
    """The WAV, or the one byte range asked for (so a player can seek), streamed as it is
    decrypted. Its first piece is made before the answer starts, so a recording that cannot
    be read there is an error answer, not a cut-off one."""
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store"}
    size = wav.size
    try:
        span = byte_range(request.headers.get("range"), size)
    except RangeNotSatisfiable:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    status = 200 if span is None else 206
    first, last = span or (0, size - 1)
    if span is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    headers["Content-Length"] = str(last - first + 1)
    pieces = wav.pieces(first, last)
    try:
        head = next(pieces, b"")
    except ValueError as exc:  # IntegrityError, or a vault block altered at rest
        raise Unreadable(str(request.path_params.get("recording_id", "")), str(exc)) from exc
    return StreamingResponse(
        itertools.chain([head], pieces), status_code=status, media_type="audio/wav",
        headers=headers,
    )  # fmt: skip


def live_response(audio: AsyncIterator[bytes]) -> Response:
    """A call in progress as WAV of unknown length: no ranges (there is no end to seek
    from), each write sent as it is made."""
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(audio, media_type="audio/wav", headers=headers)


def zip_response(name: str, data: bytes) -> Response:
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
