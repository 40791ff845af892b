"""One tick, stage by stage, on a hand-built store (SQLite and PostgreSQL): exact expectations."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from engine import tick
from engine.dispatch import OutboxChannel
from engine.project import Project
from engine.store.models import audit_log, enrollments, ledger, tasks
from tests.factories import Store, project

NOW = datetime(2026, 11, 23, 9, 0)


def run_tick(engine: Engine, proj: Project, now: datetime, run_id: str = "run") -> dict[str, tick.PlaybookSummary]:
    """What the flow does, without Prefect: evaluate and advance each playbook, then dispatch."""
    active = [p.id for p in proj.active()]
    return tick.run_stages(engine, proj, active, now, run_id, OutboxChannel(proj.settings.outbox_dir))


def outbox(proj: Project) -> list[email.message.EmailMessage]:
    files = sorted(proj.settings.outbox_dir.glob("*.eml")) if proj.settings.outbox_dir.exists() else []
    return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]  # type: ignore[misc]


def audit(engine: Engine, **where: Any) -> list[Any]:
    stmt = select(audit_log).order_by(audit_log.c.id)
    for key, value in where.items():
        stmt = stmt.where(audit_log.c[key] == value)
    with engine.connect() as conn:
        return list(conn.execute(stmt).all())


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_renewal_journey_over_two_ticks(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    csm = store.csm(name="Mina Park", email="mina@touchflow.example")
    acc = store.account(name="Hanbit Logistics", renewal_date=(NOW + timedelta(days=88)).date(), csm_id=csm)
    admin = store.contact(acc, "admin")
    champion = store.contact(acc, "champion")
    store.contact(acc, "user")
    billing = store.contact(acc, "billing")
    store.account(name="Not yet", renewal_date=(NOW + timedelta(days=200)).date())
    proj = project(tmp_path, db_url)

    first = run_tick(db, proj, NOW)["renewal-90d"]
    assert (first.matched, first.enrolled, first.emails, first.tasks) == (1, 1, 2, 0)
    sent = outbox(proj)
    assert sorted(m["To"].addresses[0].addr_spec for m in sent) == [
        f"person{admin}@acme.example",
        f"person{champion}@acme.example",
    ]
    assert all(m["From"].addresses[0].addr_spec == "mina@touchflow.example" for m in sent)  # from: csm
    assert all("Hanbit Logistics" in m.get_body(("html",)).get_content() for m in sent)  # type: ignore[union-attr]

    again = run_tick(db, proj, NOW + timedelta(hours=1))["renewal-90d"]
    assert (again.enrolled, again.emails) == (0, 0)
    assert len(outbox(proj)) == 2

    nobody_clicked = run_tick(db, proj, NOW + timedelta(days=14))["renewal-90d"]
    assert (nobody_clicked.emails, nobody_clicked.tasks) == (0, 1)  # the CSM calls

    later = run_tick(db, proj, NOW + timedelta(days=30))["renewal-90d"]
    assert later.emails == 3  # the notice also goes to billing
    assert len(outbox(proj)) == 5
    assert f"person{billing}@acme.example" in {m["To"].addresses[0].addr_spec for m in outbox(proj)}
    with db.connect() as conn:
        status = conn.execute(
            select(enrollments.c.status).where(enrollments.c.playbook_id == "renewal-90d")
        ).scalar_one()
    assert status == "completed"
    decisions = [(r.decision, r.reason) for r in audit(db, playbook_id="renewal-90d")]
    assert decisions.count(("enrolled", "trigger_matched")) == 1
    assert decisions.count(("sent", "delivered_to_channel")) == 5
    assert decisions.count(("waiting", "wait_step")) == 2
    assert decisions.count(("task_opened", "task_created")) == 1
    assert decisions.count(("completed", "journey_end")) == 1


def test_inactive_and_support_spike(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    csm = store.csm()
    quiet = store.account(name="Quiet Co", tier="low_touch", csm_id=csm)
    store.contact(quiet, "admin")
    store.events(quiet, "login", [70, 90, 120])
    active = store.account(name="Busy Co")
    store.contact(active, "admin")
    store.events(active, "login", [3, 70])
    never = store.account(name="Never Co")  # not "previously active": no login in 180 days
    store.contact(never, "admin")
    spiky = store.account(name="Spiky Co", tier="high_touch", csm_id=csm)
    store.events(spiky, "support_ticket_opened", [0.5, 1, 2, 3, 6])
    calm = store.account(name="Calm Co")
    store.events(calm, "support_ticket_opened", [1, 2, 3, 6, 8])  # only four inside 7 days
    proj = project(tmp_path, db_url)

    result = run_tick(db, proj, NOW)
    assert (result["inactive-60d"].enrolled, result["inactive-60d"].emails) == (1, 1)
    assert (result["support-spike"].enrolled, result["support-spike"].tasks) == (1, 1)
    with db.connect() as conn:
        task = conn.execute(select(tasks)).one()
        subjects = set(conn.execute(select(enrollments.c.subject_id)).scalars())
    assert subjects == {quiet, spiky}
    assert (task.account_id, task.csm_id, task.priority) == (spiky, csm, "high")
    assert task.title == "Support spike at Spiky Co: 5+ tickets in 7 days"
    assert task.due_at == NOW + timedelta(days=2)
    opened = audit(db, decision="task_opened")
    assert len(opened) == 1 and "Spiky Co" in opened[0].detail

    assert run_tick(db, proj, NOW + timedelta(days=1))["support-spike"].tasks == 0  # once per 30 days


def test_bad_address_and_failing_render_affect_only_their_message(db: Engine, db_url: str, tmp_path: Path) -> None:
    playbook = """
id: hello
name: Hello
trigger: {date: contract_start, offset: 1d}
steps:
  - email: {to: {role: [admin, user]}, template: hello}
"""
    template = """{% extends "_layout.html" %}{% block subject %}Hello {{ account.name }}{% endblock %}
{% block content %}<p>Hi {{ contact.name }}</p>{% endblock %}"""
    store = Store(db, NOW)
    start = (NOW - timedelta(days=1)).date()
    good = store.account(name="Good Co", contract_start=start)
    store.contact(good, "admin")
    broken = store.contact(good, "user", email="not-an-address")
    evil = store.account(name="Evil\r\nBcc: everyone@example.com", contract_start=start)
    store.contact(evil, "admin")
    proj = project(tmp_path, db_url, playbooks={"hello": playbook}, templates={"hello.en.html": template})

    summary = run_tick(db, proj, NOW)["hello"]
    assert (summary.enrolled, summary.emails, summary.skipped, summary.failed) == (2, 1, 1, 1)
    assert [m["Subject"] for m in outbox(proj)] == ["Hello Good Co"]
    skipped = audit(db, decision="skipped")
    assert [(r.reason, r.contact_id) for r in skipped] == [("invalid_email", broken)]
    failed = audit(db, decision="failed")
    assert failed[0].reason == "render_failed" and "line break" in failed[0].detail
    with db.connect() as conn:
        statuses = sorted(conn.execute(select(ledger.c.status)).scalars())
    assert statuses == ["failed", "sent", "skipped"]


def test_dry_run_writes_nothing(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    acc = store.account(renewal_date=(NOW + timedelta(days=90)).date())
    store.contact(acc, "admin")
    proj = project(tmp_path, db_url)

    preview = {s.playbook: s for s in tick.dry_run(db, proj, [p.id for p in proj.active()], NOW, "dry")}
    assert (preview["renewal-90d"].enrolled, preview["renewal-90d"].emails) == (1, 1)
    assert [count(db, t) for t in (enrollments, ledger, tasks, audit_log)] == [0, 0, 0, 0]
    assert outbox(proj) == []


def test_suppressed_addresses_are_never_emailed(db: Engine, db_url: str, tmp_path: Path) -> None:
    from engine.store.models import suppressions

    store = Store(db, NOW)
    acc = store.account(renewal_date=(NOW + timedelta(days=90)).date())
    store.contact(acc, "admin", email="Gone@Acme.example")
    kept = store.contact(acc, "champion")
    with db.begin() as conn:
        conn.execute(
            suppressions.insert(),
            [
                {
                    "email": "gone@acme.example",
                    "reason": "unsubscribe",
                    "source": "manual",
                    "created_at": NOW,
                    "detail": "",
                }
            ],
        )
    proj = project(tmp_path, db_url)

    summary = run_tick(db, proj, NOW)["renewal-90d"]
    assert (summary.emails, summary.skipped) == (1, 1)
    assert [m["To"].addresses[0].addr_spec for m in outbox(proj)] == [f"person{kept}@acme.example"]
    (skipped,) = audit(db, decision="skipped")
    assert skipped.reason == "suppressed_unsubscribed" and "suppression list" in skipped.detail


def test_the_team_sender_comes_from_touchflow_yaml(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    acc = store.account(renewal_date=(NOW + timedelta(days=90)).date())  # no CSM: `from: csm` falls back
    store.contact(acc, "admin")
    proj = project(tmp_path, db_url)
    (proj.settings.project_dir / "touchflow.yaml").write_text(
        "team_sender: {name: Hanbit Success, email: success@hanbit.example}\n", encoding="utf-8"
    )
    proj = project(tmp_path, db_url)
    run_tick(db, proj, NOW)
    (sent,) = outbox(proj)
    assert str(sent["From"]) == "Hanbit Success <success@hanbit.example>"
