"""`simulate` and `touchflow simulate` on a hand-built store (SQLite and PostgreSQL): exact figures
per playbook and week, emails per contact, and a source store left untouched."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Table, func, select
from typer.testing import CliRunner

from engine.cli import app
from engine.project import Project
from engine.simulate import ContactLoad, SimulationError, iso_week, nearest_rank, simulate, tick_times
from engine.simulate import replay as simulation
from engine.store.models import (
    accounts,
    audit_log,
    condition_state,
    enrollments,
    events,
    ledger,
    playbook_versions,
    tasks,
)
from tests.factories import Store, project

MONDAY = datetime(2026, 11, 23, 9, 0)  # ISO week 2026-W48
LAST = MONDAY + timedelta(days=13)  # Sunday of 2026-W49: 14 daily ticks
W1, W2 = "2026-W48", "2026-W49"

RENEWAL = """
id: renewal-sim
name: Renewal, simulated
subject: account
trigger: {date: renewal_date, offset: -90d, window: 1d}
goal: {event: renewal_signed}
exit: {events: {name: cancel_requested, within: 30d}}
steps:
  - email: {to: {role: [admin]}, template: sim}
  - wait: 3d
  - email: {to: {role: [admin]}, template: sim}
"""
LOGIN = """
id: login-sim
name: Login, simulated
subject: account
trigger: {event: {name: login}}
steps:
  - email: {to: {role: [admin]}, template: sim}
  - task: {title: "Login at {{ account.name }}"}
"""
DRAFT = """
id: draft-sim
name: Draft, never runs unless asked for
status: draft
subject: account
trigger: {date: contract_start, offset: 0d}
steps:
  - task: {title: "Draft"}
"""
TEMPLATE = """{% extends "_layout.html" %}{% block subject %}Hi {{ account.name }}{% endblock %}
{% block content %}<p>Hello {{ contact.name }}</p>{% endblock %}"""
ENGINE_TABLES = (enrollments, ledger, tasks, audit_log, condition_state, playbook_versions)


def build(db: Engine, db_url: str, tmp_path: Path) -> Project:
    """Three renewals 90 days after days 0 and 4 (week 1) and 8 (week 2); logins; a goal; an exit.

    renewal-sim: A1 enters on day 0 and converts on day 3 (renewal_signed on day 1); A2 (20
    admins) enters on day 4 and gets its second email on day 7; A3 enters on day 8 and exits on
    day 11 (cancel_requested on day 9). login-sim: one enrollment, email and task per login.
    """
    store = Store(db, MONDAY)
    day = timedelta(days=1)

    def renewing_on(n: int) -> Any:
        return (MONDAY + n * day + timedelta(days=90)).date()

    a1 = store.account(name="A1", renewal_date=renewing_on(0))
    a1_admin = store.contact(a1, "admin")
    store.contact(a1, "user")
    a2 = store.account(name="A2", renewal_date=renewing_on(4))
    for _ in range(20):
        store.contact(a2, "admin")
    a3 = store.account(name="A3", renewal_date=renewing_on(8))
    store.contact(a3, "admin")
    a4 = store.account(name="A4")  # renews in 200 days: only logs in
    store.contact(a4, "admin")
    # Events are placed at 10:00 / 08:00 of a day relative to the 09:00 ticks.
    at = MONDAY  # Store.events counts days back from Store.now
    store.now = at + timedelta(hours=1)
    store.events(a1, "renewal_signed", [-1])
    store.events(a3, "cancel_requested", [-9])
    store.now = at - timedelta(hours=1)
    store.events(a1, "login", [-1], contact_id=a1_admin)
    store.events(a4, "login", [-1, -3, -5, -9])
    store.events(a4, "login", [-20])  # after --to: not copied
    return project(
        tmp_path,
        db_url,
        playbooks={"renewal-sim": RENEWAL, "login-sim": LOGIN, "draft-sim": DRAFT},
        templates={"sim.en.html": TEMPLATE, "sim.ko.html": TEMPLATE},
    )


def counts(db: Engine, tables: tuple[Table, ...]) -> dict[str, int]:
    with db.connect() as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one()) for t in tables}


def figures(report: dict[str, Any]) -> dict[tuple[str, str], tuple[int, ...]]:
    keys = ("enrolled", "emails", "tasks", "exits", "goals", "failed")
    return {(w["playbook"], w["week"]): tuple(w[k] for k in keys) for w in report["weeks"]}


EXPECTED = {
    # (playbook, week): enrolled, emails, tasks, exits, goals, failed
    ("renewal-sim", W1): (2, 1 + 20, 0, 0, 1, 0),
    ("renewal-sim", W2): (1, 20 + 1, 0, 1, 0, 0),
    # Tasks are new task rows: a login of an account whose login task is still open updates that
    # task instead of opening another (one open task per account and reason): A4's three logins
    # in W1 and its login in W2 make one task.
    ("login-sim", W1): (4, 4, 2, 0, 0, 0),
    ("login-sim", W2): (1, 1, 0, 0, 0, 0),
}
# W1: A1's admin 2 (renewal, login), A2's 20 admins 1 each, A4's admin 3 logins → 22 contacts,
# [1 × 20, 2, 3]: max 3, rank ⌈0.95 · 22⌉ = 21 → 2. W2: A2's admins, A3's and A4's admin, 1 each.
EXPECTED_LOAD = [ContactLoad(W1, 3, 2), ContactLoad(W2, 1, 1)]


def test_figures_per_playbook_and_week_and_the_store_untouched(db: Engine, db_url: str, tmp_path: Path) -> None:
    proj = build(db, db_url, tmp_path)
    store_before = counts(db, (accounts, events))
    report = simulate(db, proj, MONDAY, LAST, timedelta(days=1))

    assert report.ticks == 14 and report.playbooks == ("login-sim", "renewal-sim")
    assert figures(report.as_dict()) == EXPECTED
    assert list(report.emails_per_contact) == EXPECTED_LOAD
    assert "max 3 (2026-W48), p95 2 (2026-W48)" in report.over_messaging()
    assert counts(db, ENGINE_TABLES) == {t.name: 0 for t in ENGINE_TABLES}
    assert counts(db, (accounts, events)) == store_before

    only = simulate(db, proj, MONDAY, LAST, timedelta(days=1), playbook_id="draft-sim")
    assert only.playbooks == ("draft-sim",)
    assert [(w.week, w.enrolled, w.tasks) for w in only.weeks] == [(W1, 0, 0), (W2, 0, 0)]


def test_cli_json(db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj = build(db, db_url, tmp_path)
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(proj.settings.project_dir))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    runner = CliRunner()
    args = ["simulate", "--from", MONDAY.isoformat(), "--to", LAST.isoformat()]

    result = runner.invoke(app, [*args, "--step", "1d", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ticks"] == 14
    assert figures(data) == EXPECTED
    assert data["emails_per_contact"] == [{"week": c.week, "max": c.max, "p95": c.p95} for c in EXPECTED_LOAD]
    assert counts(db, ENGINE_TABLES) == {t.name: 0 for t in ENGINE_TABLES}

    table = runner.invoke(app, [*args, "--playbook", "renewal-sim"])
    assert table.exit_code == 0, table.output
    assert "renewal-sim" in table.stdout and "login-sim" not in table.stdout
    # Without login-sim, nobody gets two emails in a week (A2's second email falls in week 2).
    words = " ".join(table.stdout.split())  # the report wraps at 80 columns
    assert "emails per contact per week: max 1 (2026-W48), p95 1 (2026-W48) over 14 ticks every 1d" in words

    bad = [
        (["--from", "2026-12-01", "--to", "2026-11-01"], "error: --to (2026-11-01 00:00:00) is before --from"),
        (["--from", "2026-11-01", "--to", "2026-11-02", "--step", "30m"], "error: --step must be at least 1h"),
        (["--from", "2026-11-01", "--to", "2026-11-02", "--step", "1x"], "error: --step: '1x' is not a duration"),
        (["--from", "yesterday", "--to", "2026-11-02"], "error: 'yesterday' is not an ISO 8601 date"),
        (["--from", "2026-11-01", "--to", "2026-11-02", "--playbook", "nope"], "error: --playbook: no playbook 'nope'"),
    ]
    for options, message in bad:
        failed = runner.invoke(app, ["simulate", *options])
        assert failed.exit_code == 2, failed.output
        assert failed.stderr.startswith(message) and failed.stderr.count("\n") == 1, failed.stderr


def test_scratch_directory_is_removed_even_on_error(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = build(db, db_url, tmp_path)
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_root))
    simulate(db, proj, MONDAY, MONDAY + timedelta(days=1), timedelta(hours=12))
    assert list(scratch_root.iterdir()) == []

    def boom(*_args: Any) -> None:
        raise RuntimeError("tick failed")

    monkeypatch.setattr(simulation, "_tick", boom)
    with pytest.raises(RuntimeError, match="tick failed"):
        simulate(db, proj, MONDAY, LAST, timedelta(days=1))
    assert list(scratch_root.iterdir()) == []
    assert counts(db, ENGINE_TABLES) == {t.name: 0 for t in ENGINE_TABLES}


def test_ticks_weeks_and_percentiles() -> None:
    assert tick_times(MONDAY, MONDAY + timedelta(hours=25), timedelta(hours=12)) == [
        MONDAY,
        MONDAY + timedelta(hours=12),
        MONDAY + timedelta(hours=24),
    ]
    assert tick_times(MONDAY, MONDAY, timedelta(days=1)) == [MONDAY]
    with pytest.raises(SimulationError, match="before --from"):
        tick_times(MONDAY, MONDAY - timedelta(seconds=1), timedelta(days=1))
    with pytest.raises(SimulationError, match="at least 1h"):
        tick_times(MONDAY, LAST, timedelta(minutes=59))
    assert [iso_week(MONDAY - timedelta(hours=10)), iso_week(MONDAY), iso_week(LAST)] == ["2026-W47", W1, W2]
    assert iso_week(datetime(2027, 1, 1)) == "2026-W53"  # a Friday: still the year's 53rd week
    assert nearest_rank([], 95) == 0
    assert nearest_rank([(5, 1)], 95) == 5
    assert nearest_rank([(1, 19), (9, 1)], 95) == 1  # rank 19 of 20
    assert nearest_rank([(1, 18), (9, 2)], 95) == 9
    assert nearest_rank([(3, 1), (1, 20), (2, 1)], 95) == 2  # unordered input, rank 21 of 22
