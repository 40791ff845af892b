"""A hostile template in a tick (SQLite and PostgreSQL): its message fails with `render_failed` and
the reason; the rest of the batch is sent and the tick finishes."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select

from engine.store.models import ledger, tasks
from tests.factories import Store, project
from tests.render.test_render_limits import fails_within
from tests.test_tick import audit, outbox, run_tick

NOW = datetime(2026, 11, 23, 9, 0)

# Loops whose bounds the static checks cannot see (a variable): only the runtime limits stop them.
SPIN = "{% set n = 100000 %}{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}"
PLAYBOOK = (
    """
id: hello
name: Hello
trigger: {date: contract_start, offset: 1d}
steps:
  - email: {to: {role: [admin]}, template: hello}
  - task:
      title: "{% if account.name == 'Evil Co' %}"""
    + SPIN
    + """{% endif %}Call {{ account.name }}"
      due: 2d
"""
)
TEMPLATE = (
    '{% extends "_layout.html" %}{% block subject %}Hello {{ account.name }}{% endblock %}'
    "{% block content %}{% if account.name == 'Evil Co' %}" + SPIN + "{% endif %}"
    "<p>Hi {{ contact.name }}</p>{% endblock %}"
)


def test_a_hostile_template_fails_its_messages_and_the_batch_goes_on(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    start = (NOW - timedelta(days=1)).date()
    csm = store.csm()
    good = store.account(name="Good Co", contract_start=start, csm_id=csm)
    store.contact(good, "admin")
    evil = store.account(name="Evil Co", contract_start=start, csm_id=csm)
    evil_admin = store.contact(evil, "admin")
    proj = project(tmp_path, db_url, playbooks={"hello": PLAYBOOK}, templates={"hello.en.html": TEMPLATE})

    began = time.monotonic()
    with fails_within(60):
        summary = run_tick(db, proj, NOW)["hello"]
    assert time.monotonic() - began < 30

    assert [m["Subject"] for m in outbox(proj)] == ["Hello Good Co"]
    with db.connect() as conn:
        opened = conn.execute(select(tasks.c.account_id, tasks.c.title)).all()
        statuses = sorted(conn.execute(select(ledger.c.kind, ledger.c.status)).all())
    assert [tuple(t) for t in opened] == [(good, "Call Good Co")]
    assert statuses == [("email", "failed"), ("email", "sent"), ("task", "failed"), ("task", "sent")]
    failed = audit(db, decision="failed")
    assert [(r.reason, r.account_id) for r in failed] == [("render_failed", evil)] * 2
    email_failure = next(r for r in failed if r.contact_id == evil_admin)
    assert "hello.en.html" in email_failure.detail and "iterations" in email_failure.detail
    assert all("iterations" in r.detail and "Traceback" not in r.detail for r in failed)
    assert summary.failed == 2
