"""An unsubscribe link unsubscribes the address its message was sent to, whatever the contact's
address is now, and its pages never show another address (SQLite and PostgreSQL)."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, insert, select, update
from starlette.testclient import TestClient

from engine import tick
from engine.audit import Decision, Reason
from engine.dispatch import OutboxChannel
from engine.dispatch.channels import OutgoingEmail, SendError
from engine.project import Project
from engine.store.models import audit_log, contacts, ledger, suppressions
from engine.unsubscribe import SECRET_ENV, UnsubscribeLinks, mask_address
from engine.webhooks.app import create_app
from tests.factories import Store, project

NOW = datetime(2026, 11, 2, 9, 0)  # a Monday, 09:00 UTC
OLD, NEW = "ann.lee@acme.example", "bo.kim@other.example"
LINKS = UnsubscribeLinks("https://cs.example.com", b"s3cret")
PLAYBOOK = """\
id: hello-twice
name: Hello twice
trigger: {plan: hello-twice}
steps:
  - id: hello
    email: {to: {role: [admin]}, template: welcome/hello}
  - wait: 2d
  - id: again
    email: {to: {role: [admin]}, template: welcome/hello}
"""


@pytest.fixture(autouse=True)
def _project_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # The links are signed with the project's key file, which the tick and the pages share.
    monkeypatch.delenv(SECRET_ENV, raising=False)


def setup_contact(db: Engine, db_url: str, tmp_path: Path) -> tuple[Project, int]:
    store = Store(db, NOW)
    contact = store.contact(store.account(plan="hello-twice"), "admin", email=OLD)
    return project(tmp_path, db_url, playbooks={"hello-twice": PLAYBOOK}), contact


def run_tick(db: Engine, proj: Project, now: datetime, channel: Any = None) -> None:
    active = [p.id for p in proj.active()]
    tick.run_stages(db, proj, active, now, "tick", channel or OutboxChannel(proj.settings.outbox_dir))


def outbox(proj: Project) -> dict[str, email.message.EmailMessage]:
    """Recipient → the message sent to them (one each in these tests)."""
    found: dict[str, email.message.EmailMessage] = {}
    for path in sorted(proj.settings.outbox_dir.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        found[message["To"].addresses[0].addr_spec] = message
    return found


def link_path(message: email.message.EmailMessage) -> str:
    """The path and query of the message's List-Unsubscribe link, as a client would follow it."""
    url = str(message["List-Unsubscribe"]).strip("<>")
    return "/unsubscribe?" + url.split("?", 1)[1]


def link_path_of(links: UnsubscribeLinks, send_key: str) -> str:
    """The path and query of the link of the message `send_key`."""
    return links.url(send_key).removeprefix(links.base_url)


def change_address(db: Engine, contact: int, address: str) -> None:
    with db.begin() as conn:
        conn.execute(update(contacts).where(contacts.c.id == contact).values(email=address))


def suppressed(db: Engine) -> list[str]:
    with db.connect() as conn:
        return sorted(conn.execute(select(suppressions.c.email)).scalars())


def unsubscribe_audits(db: Engine) -> list[Any]:
    with db.connect() as conn:
        query = select(audit_log).where(audit_log.c.reason == Reason.SUPPRESSED_UNSUBSCRIBED.value)
        return list(conn.execute(query).all())


def client(db: Engine, links: UnsubscribeLinks) -> TestClient:
    return TestClient(create_app(db, None, clock=lambda: NOW.replace(tzinfo=UTC), links=links))


def shows_no_address_but(text: str, masked: str) -> bool:
    """The page shows `masked` and neither address in full, nor the other one masked."""
    others = {OLD, NEW, mask_address(OLD), mask_address(NEW)} - {masked}
    return masked in text and not any(a in text for a in others)


def test_an_old_link_unsubscribes_the_address_it_was_sent_to_not_the_current_one(
    db: Engine, db_url: str, tmp_path: Path
) -> None:
    proj, contact = setup_contact(db, db_url, tmp_path)
    run_tick(db, proj, NOW)
    first = outbox(proj)
    assert list(first) == [OLD]
    old_link = link_path(first[OLD])
    change_address(db, contact, NEW)

    with client(db, proj.links) as pages:
        ask = pages.get(old_link)
        assert ask.status_code == 200 and '<form method="post"' in ask.text
        assert NEW not in ask.text and mask_address(NEW) not in ask.text
        assert suppressed(db) == []  # a GET changes nothing
        done = pages.post(old_link, data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200
        assert suppressed(db) == [OLD]
        assert shows_no_address_but(done.text, mask_address(OLD))
        again = pages.post(old_link, data={"List-Unsubscribe": "One-Click"})
        assert again.status_code == 200 and shows_no_address_but(again.text, mask_address(OLD))
    assert suppressed(db) == [OLD]
    assert shows_no_address_but(ask.text, mask_address(OLD))  # the GET page says which address
    (row,) = unsubscribe_audits(db)  # the second click wrote nothing
    assert row.contact_id == contact and OLD in row.detail and NEW not in row.detail

    # The new address still receives mail: the next step goes out to it.
    for path in proj.settings.outbox_dir.glob("*.eml"):
        path.unlink()
    run_tick(db, proj, NOW + timedelta(days=3))
    assert list(outbox(proj)) == [NEW]
    with db.connect() as conn:
        rows = conn.execute(select(ledger.c.step_id, ledger.c.status, ledger.c.sent_to).order_by(ledger.c.id)).all()
    assert [tuple(r) for r in rows] == [("hello", "sent", OLD), ("again", "sent", NEW)]


class _TimesOut:
    """A channel whose request may have gone out: the ledger row ends `unknown`."""

    name = "outbox"

    def send(self, message: OutgoingEmail) -> str:
        raise SendError("ambiguous", "timed out after the request was sent")


def test_the_address_is_recorded_before_the_request_leaves(db: Engine, db_url: str, tmp_path: Path) -> None:
    # A message whose outcome is unknown may have been delivered, link and all.
    proj, contact = setup_contact(db, db_url, tmp_path)
    run_tick(db, proj, NOW, channel=_TimesOut())
    with db.connect() as conn:
        (row,) = conn.execute(select(ledger.c.send_key, ledger.c.status, ledger.c.sent_to)).all()
    assert (row.status, row.sent_to) == ("unknown", OLD)
    change_address(db, contact, NEW)
    with client(db, proj.links) as pages:
        done = pages.post(link_path_of(proj.links, row.send_key))
    assert done.status_code == 200 and shows_no_address_but(done.text, mask_address(OLD))
    assert suppressed(db) == [OLD]


def add_old_message(db: Engine, send_key: str, *, sent_to: str | None, audit_detail: str | None) -> int:
    """A message sent to OLD before the address was recorded on the ledger (`sent_to` None), whose
    contact's address is NEW now; with `audit_detail`, the audit row dispatch wrote for it."""
    store = Store(db, NOW)
    account = store.account()
    contact = store.contact(account, email=NEW)
    row = {
        "send_key": send_key,
        "kind": "email",
        "channel": "outbox",
        "status": "sent",
        "playbook_id": "onboarding",
        "playbook_version": "v1",
        "step_id": "welcome",
        "enrollment_id": 1,
        "account_id": account,
        "contact_id": contact,
        "payload": {},
        "sent_to": sent_to,
        "created_at": NOW,
        "updated_at": NOW,
    }
    with db.begin() as conn:
        conn.execute(insert(ledger), [row])
        if audit_detail is not None:
            sent = {
                "at": NOW,
                "run_id": "old-tick",
                "playbook_id": "onboarding",
                "playbook_version": "v1",
                "step_id": "welcome",
                "enrollment_id": 1,
                "account_id": account,
                "contact_id": contact,
                "channel": "outbox",
                "decision": Decision.SENT.value,
                "reason": Reason.DELIVERED_TO_CHANNEL.value,
                "detail": audit_detail,
                "send_key": send_key,
            }
            conn.execute(insert(audit_log), [sent])
    return contact


def test_a_link_sent_before_addresses_were_recorded_uses_the_audit_trail(db: Engine) -> None:
    add_old_message(db, "old-1", sent_to=None, audit_detail=f"welcome/hello.en.html to {OLD}: Welcome: to: you")
    with client(db, LINKS) as pages:
        ask = pages.get(link_path_of(LINKS, "old-1"))
        assert ask.status_code == 200 and shows_no_address_but(ask.text, mask_address(OLD))
        done = pages.post(link_path_of(LINKS, "old-1"))
        assert done.status_code == 200 and shows_no_address_but(done.text, mask_address(OLD))
    assert suppressed(db) == [OLD]


@pytest.mark.parametrize(
    "detail",
    [None, "welcome/hello.en.html to not-an-address: Welcome", "a message without the usual shape"],
    ids=["no-audit-row", "bad-address", "other-detail"],
)
def test_a_link_whose_address_is_unknown_is_refused_never_the_current_address(db: Engine, detail: str | None) -> None:
    add_old_message(db, "old-2", sent_to=None, audit_detail=detail)
    with client(db, LINKS) as pages:
        ask = pages.get(link_path_of(LINKS, "old-2"))
        done = pages.post(link_path_of(LINKS, "old-2"))
    for page in (ask, done):
        assert page.status_code == 410
        assert "which address" in page.text and "<form" not in page.text
        assert NEW not in page.text and mask_address(NEW) not in page.text
    assert suppressed(db) == []
    assert unsubscribe_audits(db) == []


def test_a_recorded_address_is_unsubscribed_even_when_the_contact_is_gone(db: Engine) -> None:
    contact = add_old_message(db, "sent-1", sent_to=f" {OLD.upper()} ", audit_detail=None)
    with db.begin() as conn:
        conn.execute(delete(contacts).where(contacts.c.id == contact))
    with client(db, LINKS) as pages:
        done = pages.post(link_path_of(LINKS, "sent-1"))
    assert done.status_code == 200 and shows_no_address_but(done.text, mask_address(OLD))
    assert suppressed(db) == [OLD]
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit_log)).scalar_one() == 1


def test_forged_and_unknown_links_and_gets_change_nothing(db: Engine) -> None:
    add_old_message(db, "sent-2", sent_to=OLD, audit_detail=None)
    forged = f"/unsubscribe?k=sent-2&t={LINKS.token('sent-3')}"
    with client(db, LINKS) as pages:
        assert pages.get(forged).status_code == 403
        assert pages.post(forged).status_code == 403
        unknown = pages.post(link_path_of(LINKS, "sent-404"))
        assert unknown.status_code == 404
        assert pages.get(link_path_of(LINKS, "sent-404")).status_code == 404
        for _ in range(2):
            assert pages.get(link_path_of(LINKS, "sent-2")).status_code == 200
    assert OLD not in unknown.text and NEW not in unknown.text
    assert suppressed(db) == []
    assert unsubscribe_audits(db) == []


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("kim@example.com", "k***@example.com"),
        ("K@Example.com", "K***@Example.com"),
        ("ann.lee+cs@acme.example", "a***@acme.example"),
        ("not-an-address", "***"),
        ("@example.com", "***@example.com"),
        ("", "***"),
    ],
)
def test_addresses_are_masked_to_their_first_letter_and_domain(address: str, masked: str) -> None:
    assert mask_address(address) == masked
