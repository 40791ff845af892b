"""Guardrails on real stores (SQLite and PostgreSQL): the login feed stops and "no login in 14
days" would enroll every account. Stale data pauses the playbook (with a freshness limit, or by
the absence condition's own window); otherwise the circuit breaker holds it until resumed."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from engine import tick
from engine.guard.checks import resume, tripped
from engine.project import Project
from engine.store.freshness import Arrival, record_arrivals
from engine.store.models import enrollments, playbook_holds
from tests.factories import Store
from tests.journeys.helpers import audit, load, run_tick

T0 = datetime(2026, 11, 2, 9, 0)
DAY = timedelta(days=1)

INACTIVE = """id: inactive
name: No login in 14 days
segment: {status: active}
trigger:
  no_events: {name: login, within: 14d}
entry: {once_per: 90d}
{limits}steps:
  - task: {title: "Check in with {{ account.name }}"}
"""


def _project(tmp_path: Path, db_url: str, limits: str = "", freshness: dict[str, str] | None = None) -> Project:
    proj = load(tmp_path, db_url, INACTIVE.replace("{limits}", limits))
    if freshness is None:
        return proj
    delivery = proj.delivery.model_validate({**proj.delivery.model_dump(), "freshness": freshness})
    return dataclasses.replace(proj, delivery=delivery)


def _customers(db: Engine, n: int) -> tuple[Store, list[int]]:
    """`n` active accounts that all logged in an hour before T0 (a healthy feed)."""
    store = Store(db, T0)
    ids = [store.account(name=f"Account {i}") for i in range(n)]
    for account in ids:
        store.events(account, "login", [1 / 24])
    return store, ids


def _enrolled(db: Engine) -> int:
    with db.connect() as conn:
        return len(conn.execute(select(enrollments.c.id)).all())


def _holds(db: Engine) -> list[Any]:
    with db.connect() as conn:
        return list(conn.execute(select(playbook_holds)).all())


def test_a_freshness_limit_pauses_the_playbook_when_the_feed_stops(db: Engine, db_url: str, tmp_path: Path) -> None:
    _customers(db, 5)
    proj = _project(tmp_path, db_url, freshness={"login": "48h"})
    now = T0 + 3 * DAY  # the last login is 3 days old: older than 48 h, younger than the 14 d window
    summary = run_tick(db, proj, now)["inactive"]
    assert (summary.enrolled, summary.paused) == (0, "paused_stale_data")
    assert summary.why_paused is not None and "login" in summary.why_paused and "limit 2d" in summary.why_paused
    (row,) = audit(db, reason="paused_stale_data")
    assert (row.playbook_id, row.decision) == ("inactive", "paused")
    assert "(3d old)" in row.detail and "login" in row.detail
    # The playbook's journeys do not advance on stale data either; a fresh login lets it run again.
    Store(db, now).events(Store(db, now).account(name="Fresh"), "login", [0])
    assert run_tick(db, proj, now + timedelta(minutes=5), "t2")["inactive"].paused is None


def test_by_default_an_absence_condition_pauses_once_no_event_is_inside_its_window(
    db: Engine, db_url: str, tmp_path: Path
) -> None:
    _customers(db, 5)
    proj = _project(tmp_path, db_url)
    # 20 days on, nobody logged in: "no login in 14 days" is true of everyone, so it cannot be trusted.
    summary = run_tick(db, proj, T0 + 20 * DAY)["inactive"]
    assert (summary.enrolled, summary.paused) == (0, "paused_stale_data")
    assert "limit 2w" in (summary.why_paused or "")
    assert _enrolled(db) == 0


def test_a_quiet_week_is_not_a_stopped_feed(db: Engine, db_url: str, tmp_path: Path) -> None:
    store, ids = _customers(db, 5)
    proj = _project(tmp_path, db_url)
    store.events(ids[0], "login", [-15])  # one account still logs in, 15 days after T0
    summary = run_tick(db, proj, T0 + 16 * DAY)["inactive"]
    assert (summary.paused, summary.enrolled) == (None, 4)


def test_a_table_source_is_judged_by_what_import_recorded(db: Engine, db_url: str, tmp_path: Path) -> None:
    _customers(db, 2)
    with db.begin() as conn:
        record_arrivals(conn, {"accounts": Arrival(rows=2, latest=T0 - 10 * DAY)}, T0 - 10 * DAY)
    proj = _project(tmp_path, db_url, freshness={"accounts": "7d"})
    summary = run_tick(db, proj, T0)["inactive"]
    assert summary.paused == "paused_stale_data"
    assert "accounts: newest data 2026-10-23 09:00 (10d old); limit 1w" in (summary.why_paused or "")


def test_the_circuit_opens_holds_and_resumes(db: Engine, db_url: str, tmp_path: Path) -> None:
    store, ids = _customers(db, 20)
    proj = _project(tmp_path, db_url, limits="limits: {max_share: 10, max_enrollments: 5}\n")
    # A first tick enrolls one inactive account (the backlog tick is exempt anyway).
    lonely = store.account(name="Lonely")
    assert run_tick(db, proj, T0, "t0")["inactive"].enrolled == 1
    # The feed stops for all but one account: 19 of 21 would enroll (90 %), over 10 % and 5.
    store.events(ids[0], "login", [-15])
    now = T0 + 16 * DAY
    summary = run_tick(db, proj, now, "t1")["inactive"]
    assert (summary.enrolled, summary.paused) == (0, "circuit_open")
    assert summary.why_paused == (
        "would enroll 19 accounts, 90 % of the segment (21); limit 10 % and 5; nobody enrolled"
    )
    assert _enrolled(db) == 1 and lonely
    (hold,) = _holds(db)
    assert (hold.status, hold.detail["would_enroll"], hold.detail["segment"]) == ("held", 19, 21)
    # Held: each tick it is skipped is audited, and nobody enters.
    held = run_tick(db, proj, now + timedelta(hours=1), "t2")["inactive"]
    assert (held.enrolled, held.paused) == (0, "circuit_open")
    assert "touchflow resume inactive" in (held.why_paused or "")
    assert [r.reason for r in audit(db, decision="paused")] == ["circuit_open", "circuit_open"]
    # A person resumes it: audited with who; the next tick enrolls above the limit, once.
    with db.begin() as conn:
        assert resume(conn, proj.by_id()["inactive"], "mina", now + timedelta(hours=2), "resume")
    (row,) = audit(db, reason="resumed_by_operator")
    assert "resumed by mina" in row.detail
    assert run_tick(db, proj, now + timedelta(hours=3), "t3")["inactive"].enrolled == 19
    assert _holds(db) == []
    with db.connect() as conn:
        trips = tripped(conn)
    assert [(t.at, t.reason) for t in trips] == [(now, "circuit_open"), (now + timedelta(hours=1), "circuit_open")]


def test_resume_of_a_playbook_not_held_says_so(db: Engine, db_url: str, tmp_path: Path) -> None:
    proj = _project(tmp_path, db_url)
    with db.begin() as conn:
        assert resume(conn, proj.by_id()["inactive"], "mina", T0, "resume") is False
    assert audit(db, reason="resumed_by_operator") == []


def test_a_first_tick_enrolls_its_whole_backlog(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, T0)
    for i in range(12):
        store.account(name=f"Never logged in {i}")
    store.events(store.account(name="Active"), "login", [0])
    proj = _project(tmp_path, db_url, limits="limits: {max_share: 5, max_enrollments: 3}\n")
    summary = run_tick(db, proj, T0)["inactive"]
    assert (summary.enrolled, summary.paused) == (12, None)


def test_a_dry_run_reports_the_trip_and_writes_no_hold(db: Engine, db_url: str, tmp_path: Path) -> None:
    store, ids = _customers(db, 20)
    proj = _project(tmp_path, db_url, limits="limits: {max_share: 10, max_enrollments: 5}\n")
    store.account(name="Lonely")
    run_tick(db, proj, T0, "t0")
    store.events(ids[0], "login", [-15])
    (summary,) = tick.dry_run(db, proj, ["inactive"], T0 + 16 * DAY, "dry")
    assert (summary.enrolled, summary.paused) == (0, "circuit_open")
    assert _holds(db) == []
    assert audit(db, decision="paused") == []
