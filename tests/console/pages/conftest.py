"""A console over a small store the tests drive tick by tick: one playbook (`hello`, one email
step to each account's admin), its customers made with the factories, one user per role, and the
console served by uvicorn for Chromium (Playwright, the system's /usr/bin/chromium)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy import Engine
from starlette.applications import Starlette

from engine.console import create_console
from engine.console.users import ROLES, add_user
from engine.project import Project
from tests.approvals.helpers import HELLO, required
from tests.console.conftest import PASSWORD, SECRET, email_of
from tests.console.served import served
from tests.console.test_browser import ARGS, CHROMIUM
from tests.journeys.helpers import NOW, load


@dataclass
class PagesEnv:
    """The console's app over `engine`, the project it reads, and the clock it reads."""

    app: Starlette
    engine: Engine
    project: Project
    now: list[datetime]


@pytest.fixture
def make_env(tmp_path: Path, db_url: str, db: Engine) -> Callable[..., PagesEnv]:
    """Builds the console over a project of `playbooks` (default: `hello`), with
    `approvals: required` when asked."""

    def build(*playbooks: str, approvals: bool = False) -> PagesEnv:
        texts = playbooks or (HELLO,)
        proj = required(tmp_path, db_url, *texts) if approvals else load(tmp_path, db_url, *texts)
        with db.begin() as conn:
            for role in ROLES:
                add_user(conn, email_of(role), role, PASSWORD, NOW)
        now = [NOW]
        app = create_console(db, proj.settings, clock=lambda: now[0], secret=SECRET)
        return PagesEnv(app, db, proj, now)

    return build


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium for one test module: one Playwright at a time per process (its sync API runs an
    event loop of its own), so every module's browser is closed before the next one starts."""
    if not CHROMIUM.exists():
        reason = f"no Chromium at {CHROMIUM}: apt-get install chromium (bash .ci/run does)"
        if os.environ.get("TOUCHFLOW_REQUIRE_BROWSER") == "1":
            pytest.fail(f"TOUCHFLOW_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Starlette], str]]:
    """Serves an app on a free loopback port for the test; returns its base URL."""
    with ExitStack() as stack:
        yield lambda app: stack.enter_context(served(app))


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(90_000)  # a test send renders and sends: slow on a loaded CI machine
    yield tab
    context.close()


def sign_in(page: Page, base_url: str, role: str) -> None:
    """Sign `role`'s user in through the form, in the browser."""
    page.goto(f"{base_url}/login")
    page.fill("input[name=email]", email_of(role))
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/playbooks")
