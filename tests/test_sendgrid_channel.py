"""The SendGrid channel end to end: the tick's stages, the real `sendgrid` library, a fake
SendGrid that validates every body against SendGrid's own schema, and injected faults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from sqlalchemy import Engine, insert, select

from engine import tick
from engine.dispatch.factory import make_channel
from engine.dispatch.settings import DispatchSettings
from engine.project import Project
from engine.store.models import audit_log, ledger, message_events
from tests.factories import Store, project
from tests.fakes.sendgrid_server import MAIL_SEND_SCHEMA_POINTER, MAIL_SPEC_FILE, SPEC_DIR, FakeSendGrid

NOW = datetime(2026, 11, 23, 9, 0)
PLAYBOOK = """
id: hello
name: Hello
trigger: {date: contract_start, offset: 1d}
steps:
  - email: {to: {role: [admin, champion]}, template: hello}
"""
TEMPLATE = """{% extends "_layout.html" %}{% block subject %}Hello {{ account.name }}{% endblock %}
{% block content %}<p>Hi {{ contact.name }}</p>{% endblock %}"""


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


def sendgrid_project(
    tmp_path: Path, db_url: str, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch, timeout: str = "10s"
) -> Project:
    """A project sending through the fake SendGrid. The timeout is long unless a test is about
    timeouts: a loaded CI machine once took over 1 s to answer, and the message ended `unknown`."""
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.test-key")
    proj = project(tmp_path, db_url, playbooks={"hello": PLAYBOOK}, templates={"hello.en.html": TEMPLATE})
    (proj.settings.project_dir / "touchflow.yaml").write_text(
        "channel: sendgrid\n"
        f"sendgrid: {{host: '{fake.url}', timeout: {timeout}, attempts: 3, concurrency: 4, sandbox: true}}\n",
        encoding="utf-8",
    )
    return project(tmp_path, db_url, playbooks={"hello": PLAYBOOK}, templates={"hello.en.html": TEMPLATE})


def plan(db: Engine, accounts: int = 1) -> None:
    store = Store(db, NOW)
    for _ in range(accounts):
        acc = store.account(contract_start=(NOW - timedelta(days=1)).date())
        store.contact(acc, "admin")
        store.contact(acc, "champion")


def dispatch(db: Engine, proj: Project, now: datetime, retry_sleep: list[float] | None = None) -> dict[str, Any]:
    tick.evaluate_and_advance(db, proj, "hello", now, "run", "sendgrid")
    configured = make_channel(proj.delivery, proj.settings.outbox_dir)
    channel = configured.channel
    sleeps = retry_sleep if retry_sleep is not None else []
    made = configured.settings
    settings = DispatchSettings(attempts=made.attempts, concurrency=made.concurrency, sleep=sleeps.append)
    totals: dict[str, Any] = {}
    while ids := tick.claim_batch(db, now, playbook_ids=["hello"]):
        totals = tick.deliver_batch(db, proj, ids, channel, now, "run", settings=settings).as_dict()
    return totals


def published_schema() -> Draft202012Validator:
    """The mail-send body schema exactly as SendGrid's OpenAPI document publishes it."""
    document = json.loads((SPEC_DIR / MAIL_SPEC_FILE).read_text(encoding="utf-8"))
    registry: Registry[Any] = Registry().with_resource("urn:mail", DRAFT202012.create_resource(document))
    return Draft202012Validator({"$ref": f"urn:mail#{MAIL_SEND_SCHEMA_POINTER}"}, registry=registry)


def rows(db: Engine) -> list[Any]:
    with db.connect() as conn:
        return list(conn.execute(select(ledger).order_by(ledger.c.id)).all())


def reasons(db: Engine) -> list[tuple[str, str]]:
    with db.connect() as conn:
        return [(r.decision, r.reason) for r in conn.execute(select(audit_log).order_by(audit_log.c.id))]


def test_sends_through_sendgrid_with_the_send_key(
    db: Engine, db_url: str, tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = sendgrid_project(tmp_path, db_url, fake, monkeypatch)
    plan(db, accounts=3)
    dispatch(db, proj, NOW)
    sent = rows(db)
    published = published_schema()
    assert [r.status for r in sent] == ["sent"] * 6
    accepted = {m.message_id: m for m in fake.accepted}
    assert {r.provider_message_id for r in sent} == set(accepted)
    for row in sent:
        body = accepted[row.provider_message_id].body
        # Per personalization (an object in SendGrid's schema; the top-level field is a string there).
        assert "custom_args" not in body
        assert body["personalizations"][0]["custom_args"]["send_key"] == row.send_key
        assert list(published.iter_errors(body)) == []
        assert body["categories"] == ["hello"]
        assert body["mail_settings"]["sandbox_mode"]["enable"] is True
        # One-click unsubscribe (RFC 8058) with the project's signed link.
        link = body["headers"]["List-Unsubscribe"].strip("<>")
        assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        args = parse_qs(urlsplit(link).query)
        assert args["k"] == [row.send_key] and proj.links.valid(row.send_key, args["t"][0])
    assert fake.rejected == []  # every body valid against SendGrid's schema
    assert fake.duplicates_by("send_key") == []


def test_429_and_500_are_retried_and_a_400_fails_for_good(
    db: Engine, db_url: str, tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = sendgrid_project(tmp_path, db_url, fake, monkeypatch)
    plan(db, accounts=1)
    # Two messages, sent one after the other by one worker each: faults are taken in order.
    fake.inject(("status", 429, {"Retry-After": "0"}), ("status", 500), ("reject", 400))
    sleeps: list[float] = []
    dispatch(db, proj, NOW, sleeps)
    # Requests in order: 429, 500, 400, 202 — whichever message meets the 400 fails for good, the
    # other is retried through the 429/500 and sent.
    assert sorted(r.status for r in rows(db)) == ["failed", "sent"]
    assert len(fake.accepted) == 1 and len(fake.requests) == 4
    assert fake.duplicates_by("send_key") == []
    assert 0.0 in sleeps  # Retry-After honoured
    (failed,) = [r for r in rows(db) if r.status == "failed"]
    assert failed.error.startswith("HTTP 400")
    assert ("failed", "provider_rejected") in reasons(db)


def test_persistent_5xx_defers_the_message_to_a_later_dispatch(
    db: Engine, db_url: str, tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = sendgrid_project(tmp_path, db_url, fake, monkeypatch)
    plan(db, accounts=1)
    fake.set_fault_hook(lambda n, request: ("status", 503))
    dispatch(db, proj, NOW)
    deferred = rows(db)
    assert [r.status for r in deferred] == ["planned", "planned"]
    assert all(r.attempts == 1 and r.not_before > NOW for r in deferred)
    assert reasons(db).count(("deferred", "provider_busy")) == 2
    assert tick.claim_batch(db, NOW) == []  # not before its time
    fake.set_fault_hook(lambda n, request: None)
    later = max(r.not_before for r in deferred)
    dispatch(db, proj, later)
    assert [r.status for r in rows(db)] == ["sent", "sent"]
    assert len(fake.accepted) == 2


def test_a_timeout_is_unknown_and_reconciled_from_provider_events_never_resent(
    db: Engine, db_url: str, tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = sendgrid_project(tmp_path, db_url, fake, monkeypatch, timeout="1s")
    plan(db, accounts=1)
    fake.inject(("slow", 1.6), ("drop",))
    dispatch(db, proj, NOW)
    assert [r.status for r in rows(db)] == ["unknown", "unknown"]
    assert reasons(db).count(("unknown", "outcome_unknown")) == 2
    fake.wait_idle(5)
    assert tick.claim_batch(db, NOW + timedelta(hours=1)) == []  # never claimed again: never resent
    # The slow one reached SendGrid: its `processed` event arrives through the webhook.
    delivered = {key for m in fake.accepted for key in m.send_keys}
    with db.begin() as conn:
        for n, key in enumerate(sorted(delivered)):
            conn.execute(
                insert(message_events),
                [
                    {
                        "send_key": key,
                        "event": "processed",
                        "occurred_at": NOW,
                        "provider_event_id": f"e{n}",
                        "payload": {},
                    }
                ],
            )
    later = NOW + timedelta(minutes=20)  # past reconcile_after (15m), not yet twice it
    result = tick.reconcile_pending(db, proj, later, "reconcile")
    assert result.confirmed == len(delivered) == 1
    assert sorted(r.status for r in rows(db)) == ["sent", "unknown"]
    tick.reconcile_pending(db, proj, later + timedelta(hours=1), "reconcile")
    assert sorted(r.status for r in rows(db)) == ["failed", "sent"]
    (given_up,) = [r for r in rows(db) if r.status == "failed"]
    assert given_up.error.startswith("unconfirmed")
    assert len(fake.accepted) == 1 and fake.duplicates_by("send_key") == []


def test_hostile_names_through_sendgrid_fail_or_go_out_clean(
    db: Engine, db_url: str, tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = sendgrid_project(tmp_path, db_url, fake, monkeypatch)
    store = Store(db, NOW)
    acc = store.account(contract_start=(NOW - timedelta(days=1)).date())
    eve = store.contact(acc, "admin", name="=?utf-8?q?Eve=0D=0AReply-To:_attacker@evil.example=0D=0A=0D=0Abody?=")
    kim = store.contact(acc, "champion", name="Kim\r\nBcc: evil@evil.example\u2028\x1b")
    dispatch(db, proj, NOW)

    status = {r.contact_id: (r.status, r.error) for r in rows(db)}
    assert status[kim] == ("sent", None)
    assert status[eve][0] == "failed" and status[eve][1].startswith("To name: ")
    assert ("failed", "render_failed") in reasons(db)
    (accepted,) = fake.accepted
    assert accepted.body["personalizations"][0]["to"][0]["name"] == "Kim Bcc: evil@evil.example"
    assert fake.rejected == []
