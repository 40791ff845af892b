"""A console over a demo-like store: the repo's playbooks and templates, demo customers, and one
user per role. `client` signs in through the real /login form."""

from __future__ import annotations

import faulthandler
import re
import sys
import tempfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.testclient import TestClient

from demo.data import generate
from engine.config import Settings
from engine.console import create_console
from engine.console.users import ROLES, add_user
from engine.store.db import connect
from tests.factories import project

NOW = datetime(2026, 11, 2, 9, 0)
PASSWORD = "correct horse battery staple"
SECRET = b"console-test-secret-0123456789abcdef"


def email_of(role: str) -> str:
    """The address of the test user holding `role`."""
    return f"{role}@touchflow.example"


@dataclass
class ConsoleEnv:
    """The app, its store and project, and the clock the app reads (tests may move it)."""

    app: Starlette
    engine: Engine
    settings: Settings
    now: list[datetime]


@pytest.fixture
def console_env(tmp_path: Path, db_url: str) -> Iterator[ConsoleEnv]:
    proj = project(tmp_path, db_url)
    engine = connect(db_url)
    generate(engine, accounts=30, seed=3, now=NOW)
    with engine.begin() as conn:
        for role in ROLES:
            add_user(conn, email_of(role), role, PASSWORD, NOW)
    now = [NOW]
    app = create_console(engine, proj.settings, clock=lambda: now[0], secret=SECRET)
    yield ConsoleEnv(app, engine, proj.settings, now)
    engine.dispose()


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


def sign_in(client: TestClient, role: str, password: str = PASSWORD) -> object:
    """Sign `role`'s user in through the form; returns the response of the POST."""
    page = client.get("/login")
    return client.post(
        "/login",
        data={"email": email_of(role), "password": password, "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )


@pytest.fixture
def client(console_env: ConsoleEnv) -> Iterator[TestClient]:
    with TestClient(console_env.app, base_url="http://testserver") as c:
        yield c


@pytest.hookimpl(wrapper=True, trylast=True)  # inside the capture: the dump is shown with the test
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """A browser step that timed out dumps every thread's stack to stderr (shown for the failed
    test): the console runs in threads of this process, so a server stuck on a lock shows where."""
    try:
        return (yield)
    except Exception as exc:
        if type(exc).__name__ == "TimeoutError" and type(exc).__module__.startswith("playwright"):
            with tempfile.TemporaryFile("w+") as dump:  # a real file: faulthandler writes to its fd
                faulthandler.dump_traceback(file=dump, all_threads=True)
                dump.seek(0)
                sys.stderr.write(f"Every thread when the browser step timed out:\n{dump.read()}")
        raise
