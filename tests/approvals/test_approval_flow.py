"""`approvals: required` end to end on SQLite and PostgreSQL: unapproved content is deferred (not
an attempt) and audited once per row and content; approved, it goes on the next tick exactly once;
an edit of the template or the layout revokes the approval; with approvals off nothing changes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine

from engine.approvals import RECHECK_AFTER, list_approvals
from tests.approvals.helpers import ARMS, HELLO, approve_now, outbox_keys, reload, required, template
from tests.factories import Store
from tests.journeys.helpers import NOW, audit, ledger_rows, load, run_tick

LATER = NOW + timedelta(minutes=15)


def _awaiting(db: Engine) -> list[str]:
    return [r.send_key for r in audit(db, reason="awaiting_approval")]


def test_unapproved_waits_then_goes_once_after_approval(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    acc = store.account(plan="hello")
    store.contact(acc, "admin")
    proj = required(tmp_path, db_url, HELLO)

    run_tick(db, proj, NOW, "t1")
    (row,) = ledger_rows(db, playbook_id="hello")
    assert (row.status, row.attempts, row.not_before) == ("planned", 0, NOW + RECHECK_AFTER)
    assert outbox_keys(proj) == []
    (waiting,) = audit(db, reason="awaiting_approval")
    assert (waiting.decision, waiting.send_key, waiting.step_id) == ("deferred", row.send_key, "greet")
    assert "touchflow approvals approve hello greet" in waiting.detail
    with db.connect() as conn:
        (status,) = list_approvals(conn, proj.playbooks, proj.renderer)[:1]
    assert waiting.content_hash == status.content.content_hash and not status.approved

    run_tick(db, proj, LATER, "t2")  # still unapproved: deferred again, but said once
    assert ledger_rows(db, playbook_id="hello")[0].status == "planned"
    assert _awaiting(db) == [row.send_key]

    approve_now(db, proj, "hello", "greet")
    run_tick(db, proj, LATER + timedelta(minutes=15), "t3")
    run_tick(db, proj, LATER + timedelta(minutes=30), "t4")
    (sent,) = ledger_rows(db, playbook_id="hello")
    assert (sent.status, sent.attempts) == ("sent", 0)
    assert outbox_keys(proj) == [sent.send_key]
    assert [r.send_key for r in audit(db, decision="sent")] == [sent.send_key]


def test_editing_the_template_or_the_layout_revokes(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    acc = store.account(plan="hello")
    store.contact(acc, "admin")
    proj = required(tmp_path, db_url, HELLO)
    approve_now(db, proj, "hello", "greet")
    with db.connect() as conn:
        assert all(s.approved for s in list_approvals(conn, proj.playbooks, proj.renderer))

    layout = template(proj, "_layout.html")
    layout.write_text(layout.read_text(encoding="utf-8").replace("</body>", "<p>new footer</p></body>"), "utf-8")
    proj = reload(proj.settings)
    with db.connect() as conn:
        statuses = {s.content.locale: s for s in list_approvals(conn, proj.playbooks, proj.renderer)}
    assert not statuses["en"].approved and statuses["en"].approved_hash is not None
    run_tick(db, proj, NOW, "t1")
    assert outbox_keys(proj) == []
    (first,) = audit(db, reason="awaiting_approval")

    approve_now(db, proj, "hello", "greet")
    hello = template(proj, "welcome/hello.en.html")
    hello.write_text(hello.read_text(encoding="utf-8").replace("Welcome aboard.", "Welcome!"), "utf-8")
    proj = reload(proj.settings)
    run_tick(db, proj, LATER, "t2")
    assert outbox_keys(proj) == []
    second = audit(db, reason="awaiting_approval")[-1]
    assert second.content_hash != first.content_hash  # the new content is said once more

    approve_now(db, proj, "hello", "greet")
    run_tick(db, proj, LATER + timedelta(minutes=15), "t3")
    assert len(outbox_keys(proj)) == 1
    assert "Welcome!" in next(proj.settings.outbox_dir.glob("*.eml")).read_text(encoding="utf-8")


def test_an_arm_and_a_locale_are_approved_apart(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    for n in range(8):  # enough subjects that both arms get some
        acc = store.account(plan="arms", locale="ko" if n % 2 else "en")
        store.contact(acc, "admin")
    proj = required(tmp_path, db_url, ARMS)
    with db.connect() as conn:
        listed = {
            (s.content.arm, s.content.locale): s.content.content_hash
            for s in list_approvals(conn, proj.playbooks, proj.renderer)
        }
    assert set(listed) == {("plain", "en"), ("plain", "ko"), ("short", "en"), ("short", "ko")}
    assert len(set(listed.values())) == 4  # the arm's subject and the locale's file both count

    approve_now(db, proj, "arms", "greet", "short")
    run_tick(db, proj, NOW, "t1")
    rows = ledger_rows(db, playbook_id="arms")
    assert {r.variant for r in rows} == {"plain", "short"}
    for r in rows:
        assert r.status == ("sent" if r.variant == "short" else "planned"), r.variant
    assert sorted(_awaiting(db)) == sorted(r.send_key for r in rows if r.variant == "plain")


def test_approvals_off_changes_nothing(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    acc = store.account(plan="hello")
    store.contact(acc, "admin")
    proj = load(tmp_path, db_url, HELLO)  # no touchflow.yaml: approvals off
    assert proj.delivery.approvals == "off"
    run_tick(db, proj, NOW, "t1")
    (row,) = ledger_rows(db, playbook_id="hello")
    assert row.status == "sent"
    assert outbox_keys(proj) == [row.send_key]
    assert _awaiting(db) == []
