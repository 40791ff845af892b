"""Approvals in the browser, on SQLite and PostgreSQL, with `approvals: required`: unapproved
content is deferred by a tick and audited `awaiting_approval`; a marketer approves it on the page
(with a comment, through a CSRF-protected form); the next tick sends it, exactly once; editing the
template afterwards shows the content as not approved again. A manager may read, not approve."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from html import unescape

from playwright.sync_api import Page
from sqlalchemy import select

from engine.store.models import approvals
from tests.approvals.helpers import outbox_keys, template
from tests.console.conftest import email_of
from tests.console.pages.conftest import PagesEnv, sign_in
from tests.factories import Store
from tests.journeys.helpers import NOW, audit, ledger_rows, run_tick


def _status(page: Page, locale: str) -> str:
    return page.locator(f"tr.content[data-step='greet'][data-locale='{locale}'] td.status").inner_text()


def test_unapproved_waits_is_approved_in_the_browser_and_goes_once(
    make_env: Callable[..., PagesEnv], serve: Callable[..., str], page: Page
) -> None:
    env = make_env(approvals=True)
    store = Store(env.engine, NOW)
    store.contact(store.account(plan="hello"), "admin")
    base = serve(env.app)

    run_tick(env.engine, env.project, NOW, "t1")
    (row,) = ledger_rows(env.engine, playbook_id="hello")
    assert row.status == "planned" and outbox_keys(env.project) == []
    (waiting,) = audit(env.engine, reason="awaiting_approval")
    assert (waiting.decision, waiting.send_key) == ("deferred", row.send_key)

    sign_in(page, base, "marketer")
    page.click("header nav a[href='/approvals']")
    assert "approvals: required" in page.inner_text("main")
    locales = [r.get_attribute("data-locale") for r in page.locator("tr.content[data-playbook='hello']").all()]
    assert sorted(locales) == ["en", "ko"]
    assert {_status(page, loc) for loc in locales} == {"not approved"}
    page.fill("form.approve input[name=comment]", "Checked both locales <b>ok</b>")
    page.click("form.approve button[type=submit]")
    page.wait_for_selector(".notice")
    assert f"Approved hello / greet (en, ko) by {email_of('marketer')}" in page.inner_text(".notice")
    for loc in ("en", "ko"):
        assert _status(page, loc) == "approved"
        cells = page.locator(f"tr.content[data-locale='{loc}'] td").all_inner_texts()
        assert email_of("marketer") in cells and "Checked both locales <b>ok</b>" in cells
    with env.engine.connect() as conn:
        recorded = conn.execute(select(approvals.c.approved_by, approvals.c.locale)).all()
    assert sorted(recorded) == [(email_of("marketer"), "en"), (email_of("marketer"), "ko")]

    run_tick(env.engine, env.project, NOW + timedelta(minutes=15), "t2")
    run_tick(env.engine, env.project, NOW + timedelta(minutes=30), "t3")
    (sent,) = ledger_rows(env.engine, playbook_id="hello")
    assert sent.status == "sent" and outbox_keys(env.project) == [sent.send_key]
    assert [r.send_key for r in audit(env.engine, decision="sent")] == [sent.send_key]

    # Editing the English template revokes its approval: the page says so, Korean stays approved.
    hello = template(env.project, "welcome/hello.en.html")
    hello.write_text(hello.read_text(encoding="utf-8").replace("Welcome aboard.", "Welcome!"), "utf-8")
    page.reload()
    assert _status(page, "en") == "not approved (changed since the approval)"
    assert _status(page, "ko") == "approved"


def test_a_manager_reads_the_approvals_but_may_not_approve(
    make_env: Callable[..., PagesEnv], serve: Callable[..., str], page: Page
) -> None:
    env = make_env(approvals=True)
    base = serve(env.app)
    sign_in(page, base, "manager")
    page.goto(f"{base}/approvals")
    assert page.locator("tr.content[data-playbook='hello']").count() == 2
    assert page.locator("form.approve").count() == 0
    csrf = page.locator("header form.who input[name=csrf]").get_attribute("value")
    response = page.request.post(
        f"{base}/approvals/approve", form={"csrf": csrf or "", "playbook": "hello", "step": "greet", "arm": ""}
    )
    assert response.status == 403
    with env.engine.connect() as conn:
        assert conn.execute(select(approvals.c.id)).first() is None


def test_an_unknown_step_or_a_missing_csrf_token_approves_nothing(
    make_env: Callable[..., PagesEnv], serve: Callable[..., str], page: Page
) -> None:
    env = make_env(approvals=True)
    base = serve(env.app)
    sign_in(page, base, "admin")
    page.goto(f"{base}/approvals")
    csrf = page.locator("form.approve input[name=csrf]").first.get_attribute("value") or ""
    response = page.request.post(f"{base}/approvals/approve", form={"csrf": csrf, "playbook": "hello", "step": "nope"})
    said = unescape(response.text())
    assert response.status == 400 and "no email step 'nope'" in said and "its email steps: greet" in said
    response = page.request.post(f"{base}/approvals/approve", form={"playbook": "hello", "step": "greet"})
    assert response.status == 403
    with env.engine.connect() as conn:
        assert conn.execute(select(approvals.c.id)).first() is None
