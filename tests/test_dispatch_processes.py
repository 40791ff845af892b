"""Dispatch scaled out over processes (`engine/tick/dispatchers.py`), caps and rate still exact.

Two playbooks each plan an email to the same 300 contacts (600 planned rows) with a cap of one
email per contact per day and `rate_limit: 50` (the store's schedule). Four spawned dispatcher
processes — each with its own interpreter, Engine, SendGrid channel and limiter — claim and
deliver until nothing is left, against the fake SendGrid (in its own process, answering after
50 ms). Then the ledger and the provider agree: every contact got exactly one email (the cap),
the other row is deferred (`planned` with `not_before`), nothing is left claimed or sending, no
message arrived twice, more than one process sent, and the rate held at the provider's end of
every request: ≤ 52 in any second, ≥ 45/s on average. PostgreSQL only: several dispatchers
share a store through SKIP LOCKED; SQLite has one writer.
"""

from __future__ import annotations

from bisect import bisect_left
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from benchmarks.dispatch import NOW, build_store
from engine import tick
from engine.project import load_project
from engine.store.models import ledger
from engine.tick.dispatchers import dispatch_in_processes
from tests.dispatch_scenario import CAPPED_SENDGRID, TWO_PLAYBOOKS
from tests.factories import project
from tests.fakes.provider_process import provider_process

CONTACTS = 300
PLAYBOOKS = TWO_PLAYBOOKS
TOUCHFLOW_YAML = CAPPED_SENDGRID


def test_four_dispatcher_processes_keep_caps_and_rate(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("dispatcher processes share a store on PostgreSQL (SKIP LOCKED); SQLite has one writer")
    build_store(db, CONTACTS)
    proj = project(tmp_path, db_url, playbooks=PLAYBOOKS)
    (proj.settings.project_dir / "touchflow.yaml").write_text(TOUCHFLOW_YAML, encoding="utf-8")
    proj = load_project(proj.settings)
    for pid in PLAYBOOKS:
        tick.evaluate_and_advance(db, proj, pid, NOW, "plan", "sendgrid")
    with provider_process(latency=0.05) as fake:
        monkeypatch.setenv("SENDGRID_API_KEY", "SG.processes")
        monkeypatch.setenv("TOUCHFLOW_SENDGRID_HOST", fake.url)  # read by each spawned process
        reports = dispatch_in_processes(proj.settings, NOW, "scale", list(PLAYBOOKS), 4, batch=100, archive=False)
        arrivals = fake.arrivals()

    keys = [key for arrival in arrivals for key in arrival.send_keys]
    assert len(keys) == len(set(keys)) == CONTACTS
    sent_by = [sum(r.counts["emails"].values()) for r in reports]
    assert sum(sent_by) == CONTACTS and sum(1 for n in sent_by if n) >= 2, sent_by
    with db.connect() as conn:
        by_status = dict(conn.execute(select(ledger.c.status, func.count()).group_by(ledger.c.status)).all())
        per_contact = conn.execute(
            select(ledger.c.contact_id, func.count()).where(ledger.c.status == "sent").group_by(ledger.c.contact_id)
        ).all()
        deferred_due = conn.execute(
            select(func.count()).where(ledger.c.status == "planned", ledger.c.not_before > NOW)
        ).scalar_one()
    assert by_status == {"sent": CONTACTS, "planned": CONTACTS}, by_status
    assert deferred_due == CONTACTS  # the cap deferred the second email, to a later moment
    assert len(per_contact) == CONTACTS and {n for _, n in per_contact} == {1}

    moments = sorted(arrival.at for arrival in arrivals)
    busiest = max(bisect_left(moments, t + 1.0) - i for i, t in enumerate(moments))
    mean = (len(moments) - 1) / (moments[-1] - moments[0])
    print(f"\n4 processes: {mean:.1f}/s, busiest second {busiest}, sent per process {sent_by}")
    assert busiest <= 52 and mean >= 45, (busiest, mean)
