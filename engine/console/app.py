"""The console's ASGI app: the route table, sign-in and out, and the checks every page passes.

Every page is a `Page` in a module's `PAGES` list (data: path, methods, the permission it needs,
a synchronous handler). `create_console` wraps each one the same way: the session is read from
its signed cookie (none: 303 to /login), the role checked against the permission (403), a POST's
CSRF token checked against the session's (403), then the handler runs in a worker thread (it
reads the store) and every response gets the console's security headers. A page added later is
one more `Page`, and the route × role table test covers it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from engine.config import Settings
from engine.console import auth
from engine.console.approvals_pages import PAGES as APPROVAL_PAGES
from engine.console.audit_pages import PAGES as AUDIT_PAGES
from engine.console.experiments_pages import PAGES as EXPERIMENT_PAGES
from engine.console.funnel_pages import PAGES as FUNNEL_PAGES
from engine.console.health_pages import PAGES as HEALTH_PAGES
from engine.console.pages import Console, PageContext, render
from engine.console.permissions import Page, allowed
from engine.console.playbooks import PAGES as PLAYBOOK_PAGES
from engine.console.portfolio_pages import PAGES as PORTFOLIO_PAGES
from engine.console.review import PAGES as REVIEW_PAGES
from engine.console.timeline_pages import PAGES as TIMELINE_PAGES

STATIC = Path(__file__).parent / "static"

ALL_PAGES: list[Page] = [*PLAYBOOK_PAGES, *REVIEW_PAGES]
"""Every signed-in page of the console; pages added later join this list."""
ALL_PAGES += [*AUDIT_PAGES, *TIMELINE_PAGES, *APPROVAL_PAGES, *EXPERIMENT_PAGES]
ALL_PAGES += [*HEALTH_PAGES, *FUNNEL_PAGES, *PORTFOLIO_PAGES]


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def create_console(
    engine: Engine,
    settings: Settings,
    *,
    fallback: ASGIApp | None = None,
    clock: Callable[[], datetime] = _utc_now,
    secret: bytes | None = None,
    secure_cookies: bool = False,
) -> Starlette:
    """The console over `engine`'s store and `settings`' project, with `fallback` (the webhook and
    unsubscribe app) mounted under it so `touchflow serve` stays one ASGI app. `clock` gives naive
    UTC; `secure_cookies` adds the Secure flag (behind HTTPS)."""
    signer = auth.Signer(secret if secret is not None else auth.load_secret(settings.project_dir))
    console = Console(engine=engine, settings=settings, signer=signer, clock=clock, secure=secure_cookies)
    routes: list[BaseRoute] = [
        Route("/login", _login(console), methods=["GET", "POST"]),
        Route("/logout", _logout(console), methods=["POST"]),
        Route("/", _home, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    routes.extend(Route(page.path, _guarded(console, page), methods=list(page.methods)) for page in ALL_PAGES)
    if fallback is not None:
        routes.append(Mount("/", app=fallback))
    return Starlette(routes=routes)


async def _home(_request: Request) -> Response:
    return RedirectResponse("/playbooks", status_code=303)


def _to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def _guarded(console: Console, page: Page) -> Callable[[Request], object]:
    async def endpoint(request: Request) -> Response:
        token = console.signer.unsign(request.cookies.get(auth.SESSION_COOKIE))
        session = await run_in_threadpool(console.session, token)
        if session is None:
            return _to_login(request)
        if not allowed(session.user.role, page.permission):
            return render(
                console,
                request,
                "error.html",
                {"status": 403, "message": "Your role may not open this page."},
                session=session,
                status=403,
            )
        form: dict[str, str] = {}
        if request.method == "POST":
            raw = await request.form()
            form = {k: v for k, v in raw.items() if isinstance(v, str)}
            if not auth.same_token(session.csrf, form.get("csrf")):
                return render(
                    console,
                    request,
                    "error.html",
                    {"status": 403, "message": "The form's CSRF token is missing or wrong."},
                    session=session,
                    status=403,
                )
        # A NUL can be in no stored text (PostgreSQL refuses it in a query: a 500 on any page that
        # looks a value up), so a parameter carrying one is refused here, once for every page.
        carrying = sorted({k for k, v in [*request.query_params.multi_items(), *form.items()] if "\x00" in k + v})
        if carrying:
            message = f"The request's {', '.join(repr(k) for k in carrying)} contains a NUL character."
            values = {"status": 400, "message": message}
            return render(console, request, "error.html", values, session=session, status=400)
        ctx = PageContext(console=console, request=request, session=session, form=form)
        return await run_in_threadpool(page.handler, ctx)

    return endpoint


def _login(console: Console) -> Callable[[Request], object]:
    async def endpoint(request: Request) -> Response:
        next_url = _safe_next(request.query_params.get("next"))
        if request.method == "GET":
            return console.login_form(request, next_url, error=None, status=200)
        raw = await request.form()
        form = {k: v for k, v in raw.items() if isinstance(v, str)}
        expected = console.signer.unsign(request.cookies.get(auth.CSRF_COOKIE))
        if not auth.same_token(expected, form.get("csrf")):
            return console.login_form(request, next_url, error="The form expired: please sign in again.", status=403)
        email, password = form.get("email", ""), form.get("password", "")
        client = request.client.host if request.client else "unknown"
        old = console.signer.unsign(request.cookies.get(auth.SESSION_COOKIE))
        outcome = await run_in_threadpool(console.sign_in, email, password, client, old)
        if isinstance(outcome, int):
            response = console.login_form(
                request, next_url, error=f"Too many failed sign-ins: try again in {outcome} seconds.", status=429
            )
            response.headers["Retry-After"] = str(outcome)
            return response
        if outcome is None:
            return console.login_form(request, next_url, error="Wrong email or password.", status=401)
        response = RedirectResponse(next_url, status_code=303)
        console.set_session_cookie(response, outcome)
        return response

    return endpoint


def _logout(console: Console) -> Callable[[Request], object]:
    async def endpoint(request: Request) -> Response:
        token = console.signer.unsign(request.cookies.get(auth.SESSION_COOKIE))
        session = await run_in_threadpool(console.session, token)
        given = (await request.form()).get("csrf")
        if session is not None and auth.same_token(session.csrf, given if isinstance(given, str) else None):
            await run_in_threadpool(console.sign_out, token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(auth.SESSION_COOKIE, path="/")
        return response

    return endpoint


def _safe_next(value: str | None) -> str:
    """Only a path of this site: never `//evil.example` or `https://…` (no open redirect)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/playbooks"
