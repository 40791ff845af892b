"""The audit in the console, on SQLite and PostgreSQL: every filter of `touchflow audit`, keyset
pages whose next and previous links carry the cursor, and the CSV download of the filtered set —
byte for byte what `touchflow audit --format csv` prints for the same filter, in the browser too."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from html import unescape

import pytest
from playwright.sync_api import Page
from starlette.testclient import TestClient
from typer.testing import CliRunner

from engine.audit import Decision, Reason, audit_row, record
from engine.cli import app
from tests.console.conftest import sign_in as sign_in_client
from tests.console.pages.conftest import PagesEnv, sign_in
from tests.factories import Store
from tests.journeys.helpers import NOW

REASONS = [
    (Decision.SENT, Reason.DELIVERED_TO_CHANNEL),
    (Decision.DEFERRED, Reason.AWAITING_APPROVAL),
    (Decision.DEFERRED, Reason.CAPPED_CONTACT_DAILY),
    (Decision.SKIPPED, Reason.INVALID_EMAIL),
]


def _seed(env: PagesEnv, count: int = 60) -> dict[str, int]:
    """`count` decisions over three playbooks, three per moment (ties on `at`), with details a
    CSV must quote; returns the contact ids by email."""
    store = Store(env.engine, NOW)
    acc = store.account(name="Acme")
    people = {f"p{i}@acme.example": store.contact(acc, "admin", email=f"p{i}@acme.example") for i in range(3)}
    ids = list(people.values())
    rows = []
    for n in range(count):
        decision, reason = REASONS[n % len(REASONS)]
        rows.append(
            audit_row(
                at=NOW + timedelta(minutes=n // 3),
                run_id=f"r{n}",
                playbook_id=("welcome", "renewal", "nps")[n % 3],
                playbook_version="v1",
                decision=decision,
                reason=reason,
                detail=f'decision {n}, with "quotes", a comma\nand <b>markup</b> — 한국어',
                step_id="greet",
                account_id=acc,
                contact_id=ids[n % 3],
                channel="email",
                send_key=f"k{n:03d}",
            )
        )
    with env.engine.begin() as conn:
        record(conn, rows)
    return people


def _cli_csv(env: PagesEnv, options: list[str]) -> str:
    settings = env.project.settings
    cli_env = {"TOUCHFLOW_PROJECT_DIR": str(settings.project_dir), "TOUCHFLOW_DATABASE_URL": settings.database_url}
    result = CliRunner().invoke(app, ["audit", *options, "--format", "csv"], env=cli_env)
    assert result.exit_code == 0, result.output
    return result.stdout


def _signed_in(env: PagesEnv, role: str) -> TestClient:
    client = TestClient(env.app, base_url="http://testserver")
    assert sign_in_client(client, role).status_code == 303  # type: ignore[attr-defined]
    return client


SINCE, UNTIL = (NOW + timedelta(minutes=4)).isoformat(), (NOW + timedelta(minutes=17)).isoformat()
FILTERS: dict[str, dict[str, str]] = {
    "all": {},
    "playbook": {"playbook": "renewal"},
    "contact by email": {"contact": "P1@acme.example"},
    "reason": {"reason": "awaiting_approval"},
    "decision": {"decision": "deferred"},
    "window": {"since": SINCE, "until": UNTIL},
    "combined": {"playbook": "welcome", "decision": "deferred", "since": SINCE},
}


@pytest.mark.parametrize("name", list(FILTERS))
def test_the_csv_download_equals_the_command_for_the_same_filter(make_env: Callable[..., PagesEnv], name: str) -> None:
    env = make_env()
    _seed(env)
    query = FILTERS[name]
    client = _signed_in(env, "manager")
    response = client.get("/audit/csv", params=query)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    options = [part for key, value in query.items() for part in (f"--{key}", value)]
    expected = _cli_csv(env, options)
    assert expected.count("\n") > 2, "the filter matches something"
    assert response.content.decode("utf-8") == expected


def test_pages_walk_newest_first_and_back_with_the_cursor_in_the_links(make_env: Callable[..., PagesEnv]) -> None:
    env = make_env()
    _seed(env, count=23)
    client = _signed_in(env, "admin")
    url, seen, urls = "/audit?decision=deferred&size=4", [], []
    while url:
        response = client.get(url)
        assert response.status_code == 200
        urls.append(url)
        seen.append([int(k) for k in re.findall(r'<tr class="decision" data-id="(\d+)"', response.text)])
        found = re.search(r'<a rel="next" href="([^"]+)"', response.text)
        url = unescape(found.group(1)) if found else ""
        if found:
            assert "after=" in url and "decision=deferred" in url  # the cursor and the filter travel
    flat = [i for page in seen for i in page]
    deferred = sum(1 for n in range(23) if REASONS[n % 4][0] is Decision.DEFERRED)
    assert len(flat) == len(set(flat)) == deferred and [len(p) for p in seen[:-1]] == [4] * (len(seen) - 1)
    assert flat == sorted(flat, reverse=True)  # newest first (ids grow with `at` here)
    # Previous from the last page walks back through the same pages.
    response = client.get(urls[-1])
    for expected in reversed(seen[:-1]):
        back = re.search(r'<a rel="prev" href="([^"]+)"', response.text)
        assert back is not None
        response = client.get(unescape(back.group(1)))
        assert [int(k) for k in re.findall(r'<tr class="decision" data-id="(\d+)"', response.text)] == expected


def test_a_bad_filter_says_what_is_wrong_and_reflects_nothing_unescaped(make_env: Callable[..., PagesEnv]) -> None:
    env = make_env()
    _seed(env, count=6)
    client = _signed_in(env, "manager")
    for query, said in [
        ({"since": "<script>x</script>"}, "is not a moment"),
        ({"contact": "nobody@<b>x</b>"}, "no contact"),
        ({"account": "12a"}, "account"),
        ({"decision": "maybe"}, "decision"),
        ({"after": "garbage"}, "is not a page cursor"),
    ]:
        response = client.get("/audit", params=query)
        assert response.status_code == 400, query
        assert said in unescape(response.text)
        assert "<script>x</script>" not in response.text and "<b>x</b>" not in response.text
        assert "Traceback" not in response.text
        if "after" not in query:  # the download is the whole filtered set: it has no pages
            assert client.get("/audit/csv", params=query).status_code == 400


def test_a_viewer_and_a_marketer_are_refused_the_audit_in_the_browser(
    make_env: Callable[..., PagesEnv], serve: Callable[..., str], page: Page
) -> None:
    env = make_env()
    _seed(env, count=3)
    base = serve(env.app)
    for role in ("viewer", "marketer"):
        sign_in(page, base, role)
        assert page.locator("header nav a[href='/audit']").count() == 0  # not offered
        response = page.goto(f"{base}/audit")
        assert response is not None and response.status == 403
        assert "Your role may not open this page" in page.inner_text("main")
        page.context.clear_cookies()


def test_a_manager_filters_and_downloads_the_csv_in_the_browser(
    make_env: Callable[..., PagesEnv], serve: Callable[..., str], page: Page
) -> None:
    env = make_env()
    _seed(env)
    base = serve(env.app)
    sign_in(page, base, "manager")
    page.click("header nav a[href='/audit']")
    page.fill("input[name=contact]", "p2@acme.example")
    page.select_option("select[name=decision]", "deferred")
    page.fill("input[name=since]", SINCE)
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/audit?*")
    rows = page.locator("tr.decision")
    assert rows.count() > 0
    assert {rows.nth(i).get_attribute("data-decision") for i in range(rows.count())} == {"deferred"}
    with page.expect_download() as info:
        page.click("a.csv")
    path = info.value.path()
    downloaded = path.read_text(encoding="utf-8")
    expected = _cli_csv(env, ["--contact", "p2@acme.example", "--decision", "deferred", "--since", SINCE])
    assert downloaded == expected and downloaded.count("decision ") == rows.count()
