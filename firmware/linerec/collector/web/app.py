"""The console's ASGI app: security headers, who is asking, and errors answered in one place.

Pages (HTML, `pages`) and the JSON API (`api`) share one login, one permission check and one
audit. A request outside the asker's role is answered 403 and audited here; a page without a
session goes to the login, an API call without one is 401.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from linerec import __version__
from linerec.collector.accounts import Actor
from linerec.collector.web.live import LiveListening
from linerec.collector.web.permissions import Forbidden, NotFound, allowed
from linerec.collector.web.requests import (
    SESSION_COOKIE,
    CsrfRefused,
    Unauthenticated,
    actor_of,
    is_api,
)
from linerec.collector.web.service import BadRequest, Conflict, ConsoleService, Unreadable

HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)


def build_app(service: ConsoleService, *, tls: bool = False) -> FastAPI:
    from linerec.collector.web import api, pages

    app = FastAPI(
        title="linerec collector console",
        version=__version__,
        description=(
            "Search, metadata and audio of the recordings at a linerec collector. Log in with "
            "POST /api/login (the session cookie) or send `Authorization: Bearer TOKEN` "
            "(`linerec collector user token`). 401 without either, 403 outside the role."
        ),
        openapi_url="/api/openapi.json",
        docs_url=None,  # the interactive pages load scripts from a CDN: not here
        redoc_url=None,
    )
    app.state.service = service
    app.state.live = LiveListening(service)
    app.state.tls = tls
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["allowed"] = allowed
    templates.env.filters["utc"] = lambda at: datetime.fromtimestamp(at, UTC).strftime(
        "%Y-%m-%d %H:%M:%S"
    )
    app.state.templates = templates
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        if tls:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    @app.exception_handler(Unauthenticated)
    async def unauthenticated(request: Request, exc: Unauthenticated) -> Response:
        if is_api(request):
            return JSONResponse({"detail": "log in first"}, status_code=401)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        actor: Actor | None = getattr(request.state, "actor", None)
        service.record(
            actor.name if actor else "?",
            "forbidden",
            exc.recording,
            f"{exc} ({request.method} {request.url.path})",
        )
        return error(request, 403, f"not allowed: {exc}")

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        actor: Actor | None = getattr(request.state, "actor", None)
        service.record(
            actor.name if actor else "?",
            "csrf refused",
            None,
            f"{request.method} {request.url.path} without its form token",
        )
        return error(request, 403, "this form is stale or did not come from the console")

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return error(request, 404, str(exc))

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> Response:
        return error(request, 400, str(exc))

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> Response:
        return error(request, 409, str(exc))

    @app.exception_handler(Unreadable)
    async def unreadable(request: Request, exc: Unreadable) -> Response:
        actor: Actor | None = getattr(request.state, "actor", None)
        service.record(actor.name if actor else "?", "unreadable", exc.recording, str(exc))
        return error(request, 500, f"the recording cannot be played: {exc}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:  # a path no route has (e.g. "../" smuggled in): audited
            try:
                who = actor_of(request).name
            except Unauthenticated:
                who = "?"
            service.record(who, "not found", None, f"{request.method} {request.url.path[:200]}")
        return error(request, exc.status_code, str(exc.detail))

    return app


def error(request: Request, status: int, message: str) -> Response:
    if is_api(request):
        return JSONResponse({"detail": message}, status_code=status)
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request,
        "error.html",
        {"status": status, "message": message, "actor": getattr(request.state, "actor", None)},
        status_code=status,
    )
