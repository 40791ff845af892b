"""Every route of the console × every role (and anonymous) → the status the server answers.

The table is data: a page added to the console must be added here (the last test fails until it
is), with what each role gets.
"""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from engine.console import ALL_PAGES
from engine.console.users import ROLES
from tests.console.conftest import ConsoleEnv, csrf_of, sign_in

OK, LOGIN, FORBIDDEN = 200, 303, 403
WHO = ("anonymous", *ROLES)

# (method, path pattern, concrete path, form) → status for anonymous, viewer, marketer, manager, admin
ROUTES: dict[tuple[str, str], tuple[str, dict[str, str], tuple[int, ...]]] = {
    ("GET", "/playbooks"): ("/playbooks", {}, (LOGIN, OK, OK, OK, OK)),
    ("GET", "/playbooks/{playbook_id}"): ("/playbooks/anniversary", {}, (LOGIN, OK, OK, OK, OK)),
    ("POST", "/playbooks/{playbook_id}/simulate"): (
        "/playbooks/welcome/simulate",
        {},
        (LOGIN, OK, OK, OK, OK),
    ),
    ("GET", "/playbooks/{playbook_id}/review"): (
        "/playbooks/anniversary/review",
        {},
        (LOGIN, FORBIDDEN, OK, FORBIDDEN, OK),
    ),
    ("POST", "/playbooks/{playbook_id}/review/send"): (
        "/playbooks/anniversary/review/send",
        {"step": "thanks", "arm": "celebrate", "locale": "en", "contact": "1"},
        (LOGIN, FORBIDDEN, OK, FORBIDDEN, OK),
    ),
    ("GET", "/audit"): ("/audit?decision=sent&since=7d", {}, (LOGIN, FORBIDDEN, FORBIDDEN, OK, OK)),
    ("GET", "/audit/csv"): ("/audit/csv?decision=sent", {}, (LOGIN, FORBIDDEN, FORBIDDEN, OK, OK)),
    ("GET", "/timeline"): ("/timeline", {}, (LOGIN, FORBIDDEN, FORBIDDEN, OK, OK)),
    ("GET", "/messages/{send_key}"): ("/messages/" + "0" * 64, {}, (LOGIN, FORBIDDEN, FORBIDDEN, 404, 404)),
    ("GET", "/approvals"): ("/approvals", {}, (LOGIN, OK, OK, OK, OK)),
    ("POST", "/approvals/approve"): (
        "/approvals/approve",
        {"playbook": "anniversary", "step": "thanks", "arm": "celebrate", "comment": "ok"},
        (LOGIN, FORBIDDEN, 303, FORBIDDEN, 303),  # approved: redirected to the list
    ),
    ("GET", "/experiments"): ("/experiments", {}, (LOGIN, FORBIDDEN, FORBIDDEN, OK, OK)),
    ("GET", "/health"): ("/health?days=7", {}, (LOGIN, FORBIDDEN, FORBIDDEN, OK, OK)),
    ("GET", "/funnel"): ("/funnel?by=tier", {}, (LOGIN, FORBIDDEN, FORBIDDEN, OK, OK)),
    ("GET", "/portfolio"): ("/portfolio", {}, (LOGIN, FORBIDDEN, FORBIDDEN, OK, OK)),
}

CASES = [(method, pattern, who) for (method, pattern) in ROUTES for who in WHO]


@pytest.mark.parametrize(("method", "pattern", "who"), CASES, ids=[f"{m} {p} as {w}" for m, p, w in CASES])
def test_every_route_answers_each_role_as_the_table_says(
    console_env: ConsoleEnv, client: TestClient, method: str, pattern: str, who: str
) -> None:
    path, form, statuses = ROUTES[(method, pattern)]
    expected = statuses[WHO.index(who)]
    csrf = ""
    if who != "anonymous":
        assert sign_in(client, who).status_code == 303  # type: ignore[attr-defined]
        csrf = csrf_of(client.get("/playbooks").text)
    if method == "GET":
        response = client.get(path, follow_redirects=False)
    else:
        response = client.post(path, data={**form, "csrf": csrf}, follow_redirects=False)
    assert response.status_code == expected, response.text[:500]
    if expected == LOGIN and who == "anonymous":
        assert response.headers["location"].startswith("/login?next=")


def test_the_table_names_every_page_of_the_console() -> None:
    pages = {(method, page.path) for page in ALL_PAGES for method in page.methods}
    assert pages == set(ROUTES), "add the new page to ROUTES with the status each role gets"


def test_the_webhook_app_answers_beneath_the_console(console_env: ConsoleEnv) -> None:
    """`touchflow serve` is one ASGI app: console paths first, the rest to the webhook app."""
    from engine.console import create_console
    from engine.webhooks.app import create_app

    app = create_console(console_env.engine, console_env.settings, fallback=create_app(console_env.engine, None))
    with TestClient(app) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/login").status_code == 200
        assert c.get("/playbooks", follow_redirects=False).status_code == 303
