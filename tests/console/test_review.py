"""Variant review and test send, over HTTP: every arm × locale of the anniversary email, the
checks beside each, and a test send that lands in the outbox, audited, with no ledger row."""

from __future__ import annotations

import email
import html
import re
from email import policy

from sqlalchemy import func, select
from starlette.testclient import TestClient

from engine.console.checks import GMAIL_CLIP_BYTES, email_checks
from engine.store.models import audit_log, ledger
from tests.console.conftest import ConsoleEnv, csrf_of, email_of, sign_in


def _cells(page: str) -> list[tuple[str, str]]:
    return re.findall(r'data-arm="([^"]*)" data-locale="([^"]*)"', page)


def test_review_shows_both_arms_in_both_locales_with_subject_sender_and_parts(
    console_env: ConsoleEnv, client: TestClient
) -> None:
    sign_in(client, "marketer")
    page = client.get("/playbooks/anniversary/review").text
    assert sorted(_cells(page)) == [
        ("celebrate", "en"),
        ("celebrate", "ko"),
        ("year-in-numbers", "en"),
        ("year-in-numbers", "ko"),
    ]
    assert "your first year in numbers" in page  # the arm's own English subject
    assert html.escape("숫자로 보는 함께한 1년") in page or "숫자로 보는 함께한 1년" in page
    assert page.count('<iframe sandbox=""') == 4
    assert "allow-scripts" not in page and "allow-same-origin" not in page
    assert page.count("From: ") >= 4 and page.count("Text part") == 4
    assert "unsubscribe link present" in page
    phone = client.get("/playbooks/anniversary/review?width=phone").text
    assert "width: 375px" in phone and "width: 640px" not in phone


def test_a_test_send_reaches_the_outbox_for_the_user_only_and_is_audited_without_a_ledger_row(
    console_env: ConsoleEnv, client: TestClient
) -> None:
    sign_in(client, "marketer")
    page = client.get("/playbooks/anniversary/review").text
    contact = re.search(r'data-arm="year-in-numbers" data-locale="ko">.*?name="contact" value="(\d+)"', page, re.S)
    assert contact is not None
    response = client.post(
        "/playbooks/anniversary/review/send",
        data={
            "csrf": csrf_of(page),
            "step": "thanks",
            "arm": "year-in-numbers",
            "locale": "ko",
            "contact": contact.group(1),
        },
    )
    assert response.status_code == 200
    assert f"Sent to {email_of('marketer')}" in response.text
    files = list(console_env.settings.outbox_dir.glob("*.eml"))
    assert len(files) == 1
    message = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert message["To"] == email_of("marketer")
    assert "숫자로 보는 함께한 1년" in str(message["Subject"])
    assert message.get_body(("html",)) is not None and message.get_body(("plain",)) is not None
    with console_env.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ledger)).scalar() == 0
        rows = conn.execute(select(audit_log).where(audit_log.c.decision == "test_send")).all()
    assert len(rows) == 1
    row = rows[0]
    assert (row.reason, row.playbook_id, row.step_id, row.variant) == (
        "test_send",
        "anniversary",
        "thanks",
        "year-in-numbers",
    )
    assert row.contact_id is None and email_of("marketer") in row.detail and row.send_key.startswith("test-")


def test_a_test_send_of_a_step_that_does_not_exist_sends_nothing(console_env: ConsoleEnv, client: TestClient) -> None:
    sign_in(client, "admin")
    page = client.get("/playbooks/anniversary/review").text
    response = client.post(
        "/playbooks/anniversary/review/send",
        data={"csrf": csrf_of(page), "step": "nope", "arm": "", "locale": "en", "contact": "1"},
    )
    assert response.status_code == 400 and "Nothing was sent" in response.text
    assert list(console_env.settings.outbox_dir.glob("*.eml")) == []


def test_checks_name_what_is_wrong() -> None:
    bad = "<p><img src='x.png'><a href='javascript:alert(1)'>x</a><a href='mailto:a@b.c'>m</a></p>"
    checks = dict((what, ok) for ok, what in email_checks(bad))
    assert checks["no unsubscribe link"] is False
    assert checks["1 image(s) without alt text: x.png"] is False
    assert checks["links that are not http(s): javascript:alert(1), mailto:a@b.c"] is False
    good = "<a href='https://x.example/unsubscribe?t=1'>u</a><img src='a.png' alt='logo'>"
    assert all(ok for ok, _ in email_checks(good))
    big = good + "x" * GMAIL_CLIP_BYTES
    assert [ok for ok, what in email_checks(big) if "KB" in what] == [False]
