"""The console's web application: Starlette, its security around every request, and
rendering.

What every request goes through, outermost first:

- :class:`SecurityHeaders`: ``Content-Security-Policy`` (``default-src 'self'``: no
  script, style or image from anywhere else, no inline script), ``X-Frame-Options:
  DENY``, ``Referrer-Policy: no-referrer``, ``nosniff``, and ``no-store`` on pages;
- Starlette's ``SessionMiddleware``: the session lives in a cookie signed with the key of
  :mod:`.secret` (``HttpOnly``, ``SameSite=Strict``, ``Secure`` when configured), which
  expires :attr:`ConsoleConfig.session_seconds` after sign-in;
- the views (:mod:`.views`): each page calls :func:`signed_in` (no session: redirect to
  ``/login``), each POST :func:`checked_form` (the form's ``csrf`` field must equal the
  session's token, compared with :func:`hmac.compare_digest`).

A session holds the user's name, a stamp of their account (a new password or role ends
it) and the CSRF token. Being a signed cookie, a copy taken before sign-out stays valid
until it expires; `vdx console reset-password` ends every session of an account at once.
The views are thin: they call the query functions the CLI uses
(:mod:`vdx.hub.audit`, :mod:`vdx.hub.reports`, :mod:`vdx.registry.nodes`) in Starlette's
thread pool and render Jinja2 templates (autoescaped) from ``templates/``.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vdx.broker.provision import ManagementApi
from vdx.console import i18n, users
from vdx.errors import VdxError
from vdx.registry.admin import Admin, HubConfig

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "vdx_console"
LANG_COOKIE = "lang"
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


@dataclass(frozen=True)
class ConsoleConfig:
    hub: HubConfig
    secret_key: str
    secure_cookies: bool = False  # set behind HTTPS: the cookie then never travels in clear
    session_seconds: int = 8 * 3600
    broker_timeout: float = 2.0  # the overview's broker check waits no longer
    health_seconds: float = 30.0  # how long a health check is reused


class Console:
    """What the views share: the hub's :class:`Admin` (one engine, one management API
    client) and the cached health check."""

    def __init__(self, config: ConsoleConfig, *, engine: Engine | None = None,
                 api: ManagementApi | None = None) -> None:
        self.config = config
        self.admin = Admin(config.hub, engine=engine,
                           api=api or ManagementApi(config.hub.broker,
                                                    timeout=config.broker_timeout))
        self._health: tuple[float, tuple] | None = None
        self._health_lock = threading.Lock()
        # Sign-ins: one at a time per account (striped by name, so unknown names cost no
        # memory), whatever the database's row locks do (SQLite has none), and at most a
        # few Argon2 hashes (64 MiB each) at once. One ledger verification at a time.
        self._sign_in_locks = tuple(threading.Lock() for _ in range(64))
        self._hashing = threading.BoundedSemaphore(4)
        self.verifying = threading.Lock()

    @contextmanager
    def signing_in(self, name: str) -> Iterator[None]:
        stripe = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % 64
        with self._sign_in_locks[stripe], self._hashing:
            yield

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction (database failures: ``transport.unavailable``)."""
        with self.admin.transaction() as session:
            yield session

    def admin_as(self, user: users.ConsoleUser) -> Admin:
        """The hub's :class:`Admin` acting as ``console:NAME`` in the admin log."""
        return Admin(replace(self.config.hub, actor=actor_of(user)),
                     engine=self.admin.engine, api=self.admin.api)

    def health(self) -> tuple:
        """:func:`vdx.registry.doctor.essentials`, reused for ``health_seconds``."""
        from vdx.registry import doctor

        with self._health_lock:
            if self._health and time.monotonic() - self._health[0] < self.config.health_seconds:
                return self._health[1]
            findings = doctor.essentials(self.admin)
            self._health = (time.monotonic(), findings)
            return findings


def actor_of(user: users.ConsoleUser) -> str:
    return f"console:{user.name}"


# ------------------------------------------------------------------ security


class SecurityHeaders:
    """Adds the security headers (module doc) to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = CSP
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "no-referrer"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                if not static:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)


class LoginRequired(Exception):
    """No valid session: the handler redirects to the sign-in page."""


class Refused(Exception):
    """An HTTP error page: ``status`` and the catalogue key of its message."""

    def __init__(self, status: int, key: str, **values: object) -> None:
        super().__init__(key)
        self.status, self.key, self.values = status, key, values


def console_of(request: Request) -> Console:
    return request.app.state.console


async def signed_in(request: Request) -> users.ConsoleUser:
    """The signed-in user, read afresh from the database; :class:`LoginRequired` without
    a session, or when the account was removed or its password or role changed."""
    name, stamp = request.session.get("user"), request.session.get("stamp")
    if not name or not stamp:
        raise LoginRequired
    console = console_of(request)

    def load() -> users.ConsoleUser | None:
        with console.session() as session:
            return users.get_user(session, name)

    user = await run_in_threadpool(load)
    if user is None or not hmac.compare_digest(user.stamp.encode(), str(stamp).encode()):
        request.session.clear()
        raise LoginRequired
    request.state.user = user
    return user


def csrf_token(request: Request) -> str:
    """The session's CSRF token (created with the session)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


async def checked_form(request: Request) -> FormData:
    """The POSTed form, once its ``csrf`` field matches the session's token."""
    form = await request.form()
    sent = form.get("csrf")
    expected = request.session.get("csrf")
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(
            sent.encode(), str(expected).encode()):
        raise Refused(403, "csrf_failed")
    return form


def safe_next(target: str | None) -> str:
    """A path on this site to go back to (never another site's address)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


# ------------------------------------------------------------------ rendering


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    return env


def language(request: Request) -> str:
    return i18n.lang_of(request.cookies.get(LANG_COOKIE))


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    lang = language(request)
    user = getattr(request.state, "user", None)
    path = quote(request.url.path, safe="/,")
    here = path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":  # an answer to a form (/ledger/verify): back to its page
        here = path.rsplit("/", 1)[0] or "/"
    other = "en" if lang == "vi" else "vi"
    page = request.app.state.templates.get_template(template).render(
        t=i18n.translator(lang), lang=lang, user=user, csrf=csrf_token(request),
        number=lambda v: i18n.number(v, lang), when=lambda v: i18n.when(v, lang),
        day=lambda v: i18n.day(v, lang), error_text=lambda c: i18n.error_text(c, lang),
        error_text_vi=lambda c: i18n.error_text(c, "vi"),
        error_text_en=lambda c: i18n.error_text(c, "en"),
        event_text=lambda e: i18n.event_text(e, lang),
        status_meaning=lambda c: i18n.status_meaning(c, lang),
        switch_url=f"/lang/{other}?next={quote(here, safe='')}",
        csv_url=_with_query(request, format="csv"), path=request.url.path,
        quote=lambda v: quote(str(v), safe=""), **context)
    return HTMLResponse(page, status_code=status)


def _with_query(request: Request, **extra: str) -> str:
    params = dict(request.query_params) | extra
    query = "&".join(f"{quote(k)}={quote(str(v), safe='')}" for k, v in params.items())
    return quote(request.url.path, safe="/,") + "?" + query


def csv_response(name: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    """A CSV download; cells a spreadsheet would run as formulas are quoted with ``'``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows([_cell(v) for v in row] for row in rows)
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str) and value[:1] in ("=", "+", "@", "\t", "\r") or (
            isinstance(value, str) and value[:1] == "-" and len(value) > 1):
        return "'" + value
    return value


# ------------------------------------------------------------------ the app


async def _login_required(request: Request, exc: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = request.url.path
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    return render(request, "error.html", exc.status, message_key=exc.key,
                  values=exc.values)


async def _unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, VdxError)
    return render(request, "error.html", 503, message_key="failed",
                  values={"what": f"{exc.code}: {exc.message}"})


async def _not_found(request: Request, exc: Exception) -> Response:
    return render(request, "error.html", 404, message_key="not_found", values={})


def create_app(config: ConsoleConfig, *, engine: Engine | None = None,
               api: ManagementApi | None = None) -> Starlette:
    """The console for ``config`` (``engine``, ``api``: shared ones, in tests)."""
    from starlette.staticfiles import StaticFiles

    from vdx.console import views

    middleware = [
        Middleware(SecurityHeaders),
        Middleware(SessionMiddleware, secret_key=config.secret_key,
                   session_cookie=SESSION_COOKIE, max_age=config.session_seconds,
                   same_site="strict", https_only=config.secure_cookies),
    ]
    handlers: dict[Any, Callable] = {LoginRequired: _login_required, Refused: _refused,
                                     VdxError: _unavailable, 404: _not_found}
    app = Starlette(routes=[*views.routes(),
                            _static_mount(StaticFiles(directory=HERE / "static"))],
                    middleware=middleware, exception_handlers=handlers)
    app.state.console = Console(config, engine=engine, api=api)
    app.state.templates = _environment()
    return app


def _static_mount(files: ASGIApp):
    from starlette.routing import Mount

    return Mount("/static", app=files, name="static")
