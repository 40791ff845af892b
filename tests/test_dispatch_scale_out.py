"""A tick whose dispatch stage runs in N processes (`Tick.dispatchers`), on PostgreSQL.

Two playbooks each plan an email to the same 300 contacts through the SendGrid channel, with a
cap of one email per contact per day and `rate_limit: 50` kept by the store's schedule. The
fake SendGrid answers in its own process after 50 ms. With 2 and 3 dispatcher processes the
tick's summary has the shape and counts of a one-process tick, every contact got exactly one
email (the cap), nothing arrived twice, nothing is left claimed, the ledger names the channel,
several processes sent, and the rate held at the provider's end.

A dispatcher process killed with SIGKILL mid-batch fails the dispatch stage with a message that
names it; the others stop after their batch in hand; nothing arrives twice; its claimed rows
come back once their claim expires, and the next tick at the same `now` sends them.
SQLite has one writer: asked for processes, a tick dispatches in one, with a warning.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from bisect import bisect_left
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from benchmarks.dispatch import NOW, build_store
from engine import tick
from engine.dispatch.claims import wall_clock
from engine.dispatch.factory import make_channel
from engine.dispatch.reconcile import reconcile
from engine.project import Project, load_project
from engine.store.models import audit_log, ledger
from engine.tick.dispatchers import ProcessesResult
from tests.dispatch_scenario import CAPPED_SENDGRID, TWO_PLAYBOOKS
from tests.factories import project
from tests.fakes.provider_process import RemoteFake, provider_process

CONTACTS = 300
CAPPED = CAPPED_SENDGRID
UNCAPPED = """
channel: sendgrid
sendgrid: {api_key_env: SENDGRID_API_KEY, concurrency: 8, attempts: 1}
policy:
  rate_limit: 100
  rate_limiter: database
"""


def _project(db: Engine, db_url: str, tmp_path: Path, touchflow_yaml: str) -> Project:
    build_store(db, CONTACTS)
    proj = project(tmp_path, db_url, playbooks=TWO_PLAYBOOKS)
    (proj.settings.project_dir / "touchflow.yaml").write_text(touchflow_yaml, encoding="utf-8")
    return load_project(proj.settings)


def _statuses(db: Engine) -> dict[str, int]:
    with db.connect() as conn:
        return dict(conn.execute(select(ledger.c.status, func.count()).group_by(ledger.c.status)).all())  # type: ignore[arg-type]


def _pg_only(db: Engine) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("dispatcher processes share a store on PostgreSQL (SKIP LOCKED); SQLite has one writer")


@pytest.mark.parametrize("dispatchers", [2, 3])
def test_a_tick_with_n_dispatchers_sends_each_message_once_within_caps_and_rate(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dispatchers: int
) -> None:
    _pg_only(db)
    proj = _project(db, db_url, tmp_path, CAPPED)
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.scale-out")
    results: list[Any] = []

    def recording(stage: tick.Stage, *args: Any) -> Any:
        result = stage.run(*args)
        results.append((stage.name, result))
        return result

    with provider_process(latency=0.05) as fake:
        monkeypatch.setenv("TOUCHFLOW_SENDGRID_HOST", fake.url)  # read by each spawned process
        channel = make_channel(proj.delivery, proj.settings.outbox_dir).channel
        live = tick.Tick(tick.LiveStore(db), proj, NOW, "scale", list(TWO_PLAYBOOKS), channel, dispatchers=dispatchers)
        summaries = tick.run_tick(live, call=recording)
        arrivals = fake.arrivals()

    # The summary: one row per playbook, the counts of every process summed.
    assert set(summaries) == set(TWO_PLAYBOOKS)
    assert sum(s.emails for s in summaries.values()) == CONTACTS
    assert sum(s.deferred for s in summaries.values()) == CONTACTS
    assert all(s.error is None and s.failed == 0 for s in summaries.values())
    stages = [name for name, _ in results]
    assert "dispatch-batch" not in stages and stages.count("dispatch-processes") == 1, stages
    scaled = next(r for name, r in results if name == "dispatch-processes")
    assert isinstance(scaled, ProcessesResult) and len(scaled.processes) == dispatchers
    sent_by = [sum(p.counts.get("emails", {}).values()) for p in scaled.processes]
    assert sum(sent_by) == CONTACTS and sum(1 for n in sent_by if n) >= 2, sent_by

    # The provider and the ledger agree: each contact once (the cap), nothing twice, nothing held.
    keys = [key for arrival in arrivals for key in arrival.send_keys]
    assert len(keys) == len(set(keys)) == CONTACTS
    assert _statuses(db) == {"sent": CONTACTS, "planned": CONTACTS}
    with db.connect() as conn:
        sent_keys = set(conn.execute(select(ledger.c.send_key).where(ledger.c.status == "sent")).scalars())
        per_contact = conn.execute(
            select(ledger.c.contact_id, func.count()).where(ledger.c.status == "sent").group_by(ledger.c.contact_id)
        ).all()
        channels = set(conn.execute(select(ledger.c.channel).distinct()).scalars())
        deferred_later = conn.execute(
            select(func.count()).where(ledger.c.status == "planned", ledger.c.not_before > NOW)
        ).scalar_one()
        audited_sent = conn.execute(
            select(func.count()).where(audit_log.c.decision == "sent", audit_log.c.run_id == "scale")
        ).scalar_one()
    assert sent_keys == set(keys)
    assert len(per_contact) == CONTACTS and {n for _, n in per_contact} == {1}
    assert channels == {"sendgrid"}
    assert deferred_later == CONTACTS
    assert audited_sent == CONTACTS  # every process wrote the tick's own run id

    moments = sorted(arrival.at for arrival in arrivals)
    busiest = max(bisect_left(moments, t + 1.0) - i for i, t in enumerate(moments))
    mean = (len(moments) - 1) / (moments[-1] - moments[0])
    print(f"\n{dispatchers} processes: {mean:.1f}/s, busiest second {busiest}, sent per process {sent_by}")
    assert busiest <= 52 and mean >= 45, (busiest, mean)


def _kill_one_dispatcher_after(fake: RemoteFake, arrived: int, killed: list[int]) -> None:
    """Once `arrived` messages reached the provider, SIGKILL one dispatcher process."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len(fake.arrivals()) >= arrived:
            victims = [p for p in multiprocessing.active_children() if p.name.startswith("touchflow-dispatcher")]
            if victims and victims[0].pid is not None:
                os.kill(victims[0].pid, signal.SIGKILL)
                killed.append(victims[0].pid)
            return
        time.sleep(0.02)


def test_a_dispatcher_killed_mid_batch_fails_the_tick_sends_nothing_twice_and_its_claims_come_back(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pg_only(db)
    proj = _project(db, db_url, tmp_path, UNCAPPED)
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.scale-out")
    planned = 2 * CONTACTS
    with provider_process(latency=0.05) as fake:
        monkeypatch.setenv("TOUCHFLOW_SENDGRID_HOST", fake.url)
        channel = make_channel(proj.delivery, proj.settings.outbox_dir).channel
        killed: list[int] = []
        killer = threading.Thread(target=_kill_one_dispatcher_after, args=(fake, 60, killed))
        killer.start()
        with pytest.raises(tick.DispatcherFailed, match=r"dispatcher process \d of 3 was killed by signal 9"):
            tick.run_stages(db, proj, list(TWO_PLAYBOOKS), NOW, "crash", channel, dispatchers=3)
        killer.join()
        assert killed, "no dispatcher process was running when the provider had its messages"
        after_crash = _statuses(db)
        assert after_crash.get("claimed", 0) > 0, after_crash  # the dead one's batch, not yet sent
        assert after_crash.get("sent", 0) < planned

        # Its claim expires by the wall clock (here: a clock past `reconcile_after`), back to planned.
        after = proj.delivery.reconcile_after
        with db.begin() as conn:
            reconcile(conn, NOW, after, "reconcile", wall=wall_clock() + after + timedelta(minutes=1))
        assert "claimed" not in _statuses(db)

        # The next tick at the same moment sends what was left, and only that.
        again = tick.run_stages(db, proj, list(TWO_PLAYBOOKS), NOW, "again", channel, dispatchers=2)
        arrivals = fake.arrivals()

    keys = [key for arrival in arrivals for key in arrival.send_keys]
    assert len(keys) == len(set(keys)), "a message reached the provider twice"
    final = _statuses(db)
    # What the killed process had in flight stays `sending` (settled later from the provider's
    # events, never resent); everything else was sent exactly once.
    assert set(final) <= {"sent", "sending"} and sum(final.values()) == planned, final
    assert final.get("sending", 0) == after_crash.get("sending", 0), (after_crash, final)
    with db.connect() as conn:
        sent_keys = set(conn.execute(select(ledger.c.send_key).where(ledger.c.status == "sent")).scalars())
    assert sent_keys <= set(keys)
    assert sum(s.emails for s in again.values()) == final["sent"] - after_crash.get("sent", 0)


def test_sqlite_dispatches_in_one_process_with_a_warning(
    db: Engine, db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if db.dialect.name != "sqlite":
        pytest.skip("the one-writer fallback is SQLite's")
    proj = project(tmp_path, db_url, playbooks=TWO_PLAYBOOKS)
    build_store(db, 20)
    from engine.dispatch import OutboxChannel

    with caplog.at_level(logging.WARNING, logger="touchflow.tick"):
        summaries = tick.run_stages(
            db, proj, list(TWO_PLAYBOOKS), NOW, "one", OutboxChannel(proj.settings.outbox_dir), dispatchers=3
        )
    assert "3 dispatchers asked for, but sqlite has one writer" in caplog.text
    assert sum(s.emails for s in summaries.values()) == 40 == len(list(proj.settings.outbox_dir.glob("*.eml")))
    assert _statuses(db) == {"sent": 40}
