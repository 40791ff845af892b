"""The console in a real browser: Playwright drives the system's Chromium against the app served
by uvicorn in a thread, over a demo-like store.

Skips with the reason when /usr/bin/chromium is missing, unless TOUCHFLOW_REQUIRE_BROWSER=1
(set by .ci/run), under which it fails instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Response, sync_playwright
from sqlalchemy import select, update

from engine.store.models import accounts, audit_log, contacts, ledger
from tests.console.conftest import PASSWORD, ConsoleEnv, email_of
from tests.console.served import served

CHROMIUM = Path(os.environ.get("TOUCHFLOW_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
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
def base_url(console_env: ConsoleEnv) -> Iterator[str]:
    """The console served by uvicorn on a free loopback port, for this test."""
    with served(console_env.app) as url:
        yield url


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(90_000)  # a test send renders and sends: slow on a loaded CI machine
    yield tab
    context.close()


TEST_SEND_MS = 240_000
"""A test send renders the variants and commits the message to the outbox durably (two fsyncs).
On loaded CI machines it once took over 30 s and once over 90 s, cause not seen: the server's
stderr (tests/console/served.py) now shows whether the request arrived and how long it took."""


def _answer_to(method: str, path: str) -> Callable[[Response], bool]:
    """Matches the answer to the browser's `method` request for `path`."""
    return lambda r: r.request.method == method and urlsplit(r.url).path.endswith(path)


def _sign_in(page: Page, base_url: str, role: str) -> None:
    page.goto(f"{base_url}/login")
    page.fill("input[name=email]", email_of(role))
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/playbooks")


def test_a_viewer_signs_in_reads_the_playbooks_and_is_refused_the_review(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/playbooks/anniversary")
    assert "/login" in page.url  # not signed in: sent to the form
    page.fill("input[name=email]", email_of("viewer"))
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    assert "Wrong email or password" in page.inner_text("main")
    page.fill("input[name=email]", email_of("viewer"))
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/playbooks/anniversary")  # back where they were going
    assert "on the date in contract_start (every year)" in page.inner_text("dd.trigger")
    assert page.locator("svg.journey g.node.email").count() == 1
    assert page.locator("text=Review email variants").count() == 0  # not offered to a viewer
    response = page.goto(f"{base_url}/playbooks/anniversary/review")
    assert response is not None and response.status == 403
    assert "Your role may not open this page" in page.inner_text("main")


def test_a_marketer_reviews_both_arms_in_both_locales_and_sends_a_test(
    page: Page, base_url: str, console_env: ConsoleEnv
) -> None:
    _sign_in(page, base_url, "marketer")
    page.goto(f"{base_url}/playbooks/anniversary")
    page.click("text=Review email variants")
    cells = page.locator("td.variant")
    seen = {(c.get_attribute("data-arm"), c.get_attribute("data-locale")) for c in cells.all()}
    assert seen == {("celebrate", "en"), ("celebrate", "ko"), ("year-in-numbers", "en"), ("year-in-numbers", "ko")}
    subjects = {
        (c.get_attribute("data-arm"), c.get_attribute("data-locale")): c.locator(".subject").inner_text()
        for c in cells.all()
    }
    assert subjects[("celebrate", "en")].startswith("Happy anniversary")
    assert subjects[("year-in-numbers", "en")].endswith("your first year in numbers")
    assert subjects[("year-in-numbers", "ko")].endswith("숫자로 보는 함께한 1년")
    # The mail itself, as the recipient sees it, inside each sandboxed frame.
    ko = page.frame_locator("td.variant[data-arm='celebrate'][data-locale='ko'] iframe")
    assert ko.locator("body").inner_text().strip() != ""
    en = page.frame_locator("td.variant[data-arm='celebrate'][data-locale='en'] iframe")
    assert "See your year in review" in en.locator("body").inner_text()
    page.click("text=phone")
    page.wait_for_url("**/review?width=phone", wait_until="domcontentloaded")
    assert page.locator("iframe").first.evaluate("f => f.getBoundingClientRect().width") <= 380

    cell = page.locator("td.variant[data-arm='year-in-numbers'][data-locale='ko']")
    button = cell.locator("button[type=submit]")
    button.scroll_into_view_if_needed()
    with page.expect_response(_answer_to("POST", "/review/send"), timeout=TEST_SEND_MS) as answered:
        button.click()
    assert answered.value.status == 200
    assert f"Sent to {email_of('marketer')}" in page.inner_text(".notice")
    files = list(console_env.settings.outbox_dir.glob("*.eml"))
    assert len(files) == 1 and f"To: {email_of('marketer')}" in files[0].read_text(encoding="utf-8")
    with console_env.engine.connect() as conn:
        assert conn.execute(select(ledger.c.id)).first() is None
        audited = conn.execute(select(audit_log.c.variant).where(audit_log.c.decision == "test_send")).all()
    assert [a.variant for a in audited] == ["year-in-numbers"]


def test_the_rendered_mail_cannot_run_script_nor_reach_the_consoles_cookies(
    page: Page, base_url: str, console_env: ConsoleEnv
) -> None:
    attack = (
        "<script>document.body.setAttribute('data-ran','1');parent.document.title='pwned';"
        "fetch('/steal?c='+encodeURIComponent(document.cookie))</script>"
        "<img src=x onerror=\"document.body.setAttribute('data-ran','2')\">"
    )
    with console_env.engine.begin() as conn:
        # Names are at most 200 characters: the short form of the attack.
        named = "<script>document.body.setAttribute('data-ran','3')</script>"
        conn.execute(update(contacts).values(name=named))
        conn.execute(update(accounts).values(name=named))
    template = console_env.settings.templates_dir / "anniversary" / "thanks.en.html"
    text = template.read_text(encoding="utf-8")
    template.write_text(
        text.replace("{% endblock %}\n", attack + "{% endblock %}\n", 1).replace(
            "{% block content %}", "{% block content %}" + attack, 1
        ),
        encoding="utf-8",
    )
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    _sign_in(page, base_url, "admin")
    page.goto(f"{base_url}/playbooks/anniversary/review")
    page.wait_for_load_state("networkidle")
    frames = page.locator("iframe")
    assert frames.count() == 4
    for i in range(frames.count()):
        assert frames.nth(i).get_attribute("sandbox") == ""
        body = page.frame_locator("iframe").nth(i).locator("body")
        assert body.get_attribute("data-ran") is None
    en = page.frame_locator("td.variant[data-arm='celebrate'][data-locale='en'] iframe")
    assert "<script>" in en.locator("body").inner_text()  # the contact's name shows as text
    assert page.title() != "pwned" and "Review" in page.title()
    assert not [u for u in requests if "/steal" in u]
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script of any origin reads it
