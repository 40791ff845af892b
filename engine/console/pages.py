"""What every console page shares: the `Console` (store, project, signer, clock, templates),
the `PageContext` a handler receives, and `render`, which adds the security headers.

Every page is served under a strict Content-Security-Policy: nothing but the console's own
stylesheet and images loads, no script runs anywhere (`script-src 'none'`; rendered emails in
`<iframe sandbox srcdoc>` inherit the policy and the sandbox gives them an opaque origin, so
they cannot read the console's cookies either), and no other site may frame the console.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from engine.compile import CompiledPlaybook, compile_playbook
from engine.config import Settings
from engine.console import auth
from engine.console.users import User, authenticate
from engine.delivery_config import DeliverySettings, SettingsError, load_delivery
from engine.problems import Problem
from engine.render import EmailRenderer
from engine.validate import validate_paths

TEMPLATES = Path(__file__).parent / "templates"
POLICY = (
    "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; frame-src 'self'"
)
"""The console's Content-Security-Policy. Inline styles are allowed because emails are styled
inline (their frames inherit this policy); scripts are not, anywhere."""
SECURITY_HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class ProjectView:
    """The project as the console shows it: playbooks that compiled, every problem `validate`
    finds, the renderer and the delivery settings (or why they cannot be read)."""

    playbooks: dict[str, CompiledPlaybook]
    problems: list[Problem]
    renderer: EmailRenderer
    delivery: DeliverySettings | None
    settings_error: str | None = None


@dataclass
class Console:
    """Everything the console's pages need, built once per app."""

    engine: Engine
    settings: Settings
    signer: auth.Signer
    clock: Callable[[], datetime]
    secure: bool = False
    env: Environment = field(init=False)
    _project: tuple[tuple[Any, ...], ProjectView] | None = field(init=False, default=None)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(default=True), auto_reload=False
        )

    def project(self) -> ProjectView:
        """The project's files, validated and compiled again only when a file changed."""
        stamp = self._fingerprint()
        with self._lock:
            if self._project is None or self._project[0] != stamp:
                self._project = (stamp, self._load())
            return self._project[1]

    def _fingerprint(self) -> tuple[Any, ...]:
        s = self.settings
        files = [*s.playbooks_dir.rglob("*.y*ml"), *s.templates_dir.rglob("*.html"), s.project_dir / "touchflow.yaml"]
        return tuple(sorted((str(p), p.stat().st_mtime_ns) for p in files if p.is_file()))

    def _load(self) -> ProjectView:
        s = self.settings
        renderer = EmailRenderer(s.templates_dir)
        try:
            delivery: DeliverySettings | None = load_delivery(s.project_dir)
        except SettingsError as exc:
            report = validate_paths([s.playbooks_dir], s.templates_dir, s.project_dir)
            return ProjectView({}, report.problems, renderer, None, str(exc))
        assert delivery is not None
        report = validate_paths([s.playbooks_dir], s.templates_dir, s.project_dir, delivery.traits)
        compiled: dict[str, CompiledPlaybook] = {}
        for loaded in report.playbooks:
            compiled[loaded.spec.id] = compile_playbook(loaded, delivery.traits)
        return ProjectView(compiled, report.problems, renderer, delivery)

    def session(self, token: str | None) -> auth.Session | None:
        """The live session of a cookie's token, or None."""
        if not token:
            return None
        with self.engine.connect() as conn:
            return auth.find_session(conn, token, self.clock())

    def sign_in(self, email: str, password: str, client: str, old_token: str | None) -> str | int | None:
        """A new session token; seconds to wait when throttled; None for wrong credentials."""
        now = self.clock()
        keys = auth.throttle_keys(email, client)
        with self.engine.begin() as conn:
            wait = auth.retry_after(conn, keys, now)
            if wait > 0:
                return wait
            user: User | None = authenticate(conn, email, password)
            if user is None:
                auth.record_failure(conn, keys, now)
                return None
            auth.clear_failures(conn, keys[0][1])
            return auth.start_session(conn, user, now, old_token)

    def sign_out(self, token: str | None) -> None:
        """End the session of this token."""
        with self.engine.begin() as conn:
            auth.end_session(conn, token)

    def set_session_cookie(self, response: Response, token: str) -> None:
        """The signed, HttpOnly, SameSite=Strict session cookie."""
        response.set_cookie(
            auth.SESSION_COOKIE,
            self.signer.sign(token),
            max_age=int(auth.SESSION_LIFETIME.total_seconds()),
            httponly=True,
            samesite="strict",
            secure=self.secure,
            path="/",
        )

    def login_form(self, request: Request, next_url: str, error: str | None, status: int) -> Response:
        """The sign-in page with a fresh double-submit CSRF token (cookie and hidden field)."""
        token = secrets.token_urlsafe(32)
        response = render(self, request, "login.html", {"next": next_url, "error": error, "csrf": token}, status=status)
        response.set_cookie(
            auth.CSRF_COOKIE, self.signer.sign(token), httponly=True, samesite="strict", secure=self.secure, path="/"
        )
        return response


@dataclass(frozen=True)
class PageContext:
    """What a page handler receives: the console, the request, the session and a POST's form."""

    console: Console
    request: Request
    session: auth.Session
    form: dict[str, str]

    def render(self, template: str, values: dict[str, Any], status: int = 200) -> Response:
        """The page `template` with `values`, as this session sees it."""
        return render(self.console, self.request, template, values, session=self.session, status=status)


def render(
    console: Console,
    request: Request,
    template: str,
    values: dict[str, Any],
    *,
    session: auth.Session | None = None,
    status: int = 200,
) -> Response:
    """Render a console template (autoescaped) with the security headers."""
    from engine.console.permissions import allowed

    page = console.env.get_template(template).render(
        **values,
        user=session.user if session else None,
        csrf_token=session.csrf if session else values.get("csrf", ""),
        can=(lambda permission: session is not None and allowed(session.user.role, permission)),
        path=request.url.path,
    )
    return HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)
