"""What `simulate` says to answer "should I ship this?" (SQLite and PostgreSQL): deferrals and skips
by reason, branch splits, totals, the busiest contacts, who gets what (`--who`), which condition
removed everyone from a playbook that matches nobody, and what a simulation cannot know."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert
from typer.testing import CliRunner

from engine.audit import Decision, Reason, audit_row
from engine.cli import app
from engine.project import Project
from engine.simulate import simulate
from engine.simulate.report import notable_events
from engine.store.db import connect, migrate
from engine.store.models import audit_log
from tests.factories import Store, project
from tests.test_simulate import ENGINE_TABLES, TEMPLATE, counts

MONDAY = datetime(2026, 11, 23, 9, 0)  # ISO week 2026-W48
LAST = MONDAY + timedelta(days=13)
W1, W2 = "2026-W48", "2026-W49"

# One email a week per contact from this playbook: a second login in the same week is deferred.
LOGIN = """
id: login-capped
name: Login, capped
subject: account
trigger: {event: {name: login}}
policy:
  caps: {contact: {week: 1}}
steps:
  - {id: hello, email: {to: {role: [admin]}, template: sim}}
  - branch: {if: {plan: enterprise}, then: big}
  - {id: small, task: {title: "Small {{ account.name }}"}}
  - {id: big, task: {title: "Big {{ account.name }}"}, if: {plan: enterprise}}
"""
NOBODY = """
id: nobody
name: Matches nobody
subject: account
segment: {all: [{tier: tech_touch}, {plan: enterprise}, {arr: {gte: 1000000}}]}
trigger: {date: renewal_date, offset: -90d}
steps:
  - task: {title: "Never"}
"""
ENGAGED = """
id: engaged-nudge
name: Nudge those who did not open
subject: account
trigger: {event: {name: signup}}
steps:
  - {id: welcome, email: {to: {role: [admin]}, template: sim}}
  - wait: 2d
  - branch: {if: {engaged: {step: welcome, with: opened}}, then: done}
  - {id: nudge, email: {to: {role: [admin]}, template: sim}}
  - {id: done, task: {title: "Done"}}
"""


def build(db: Engine, db_url: str, tmp_path: Path) -> tuple[Project, dict[str, int]]:
    """E1 (enterprise) logs in on day 0; S1 (starter) on days 0 and 2 (its second email waits for
    the weekly cap); S2 (starter) on day 8. Nobody signs up."""
    store = Store(db, MONDAY)
    e1 = store.account(name="E1", plan="enterprise")
    s1 = store.account(name="S1")
    s2 = store.account(name="S2")
    people = {"e1": store.contact(e1, "admin"), "s1": store.contact(s1, "admin"), "s2": store.contact(s2, "admin")}
    store.now = MONDAY - timedelta(hours=1)  # each login an hour before that day's tick
    store.events(e1, "login", [0])
    store.events(s1, "login", [0, -2])
    store.events(s2, "login", [-8])
    proj = project(
        tmp_path,
        db_url,
        playbooks={"login-capped": LOGIN, "nobody": NOBODY, "engaged-nudge": ENGAGED},
        templates={"sim.en.html": TEMPLATE, "sim.ko.html": TEMPLATE},
    )
    return proj, people


def week(report: dict[str, Any], playbook: str, name: str) -> dict[str, Any]:
    return next(w for w in report["weeks"] if w["playbook"] == playbook and w["week"] == name)


def test_reasons_splits_totals_and_busiest(db: Engine, db_url: str, tmp_path: Path) -> None:
    proj, people = build(db, db_url, tmp_path)
    report = simulate(db, proj, MONDAY, LAST, timedelta(days=1)).as_dict()

    w1 = week(report, "login-capped", W1)
    # S1's second `small` task updates its open one (one open task per account and reason).
    assert (w1["enrolled"], w1["emails"], w1["tasks"]) == (3, 2, 2)
    # S1's second email (day 2) is held back by the playbook's weekly cap, once per message.
    assert w1["deferred"] == {"capped_playbook_contact_weekly": 1}
    # E1 took the branch to `big`; S1 (twice) went on to `small`, whose next step `big` is skipped.
    assert w1["skipped"] == {"condition_false": 2}
    splits = {(b["step"], b["path"]): b["count"] for b in report["branches"] if b["week"] == W1}
    assert sorted(splits.values()) == [1, 2]
    assert any("go to big" in path and n == 1 for (_, path), n in splits.items())
    assert any("go to next step" in path and n == 2 for (_, path), n in splits.items())

    w2 = week(report, "login-capped", W2)
    assert w2["enrolled"] == 1 and w2["emails"] == 2  # S2's, and S1's deferred one once the cap allows
    totals = {t["week"]: t for t in report["totals"]}
    assert totals[W1]["enrolled"] == 3 and totals[W2]["emails"] == 2
    assert report["total"]["emails"] == 4 and report["total"]["tasks"] == w1["tasks"] + w2["tasks"]

    busiest = report["busiest_contacts"]
    assert busiest[0]["contact_id"] == people["s1"]
    assert busiest[0]["total"] == 2 and busiest[0]["per_week"] == {W1: 1, W2: 1}
    assert busiest[0]["email"].endswith("@acme.example")
    assert counts(db, ENGINE_TABLES) == {t.name: 0 for t in ENGINE_TABLES}


def test_who_gets_what_and_when(db: Engine, db_url: str, tmp_path: Path) -> None:
    proj, people = build(db, db_url, tmp_path)
    report = simulate(db, proj, MONDAY, LAST, timedelta(days=1), who="login-capped").as_dict()
    emails = [r for r in report["recipients"] if r["kind"] == "email"]
    channel = proj.delivery.channel  # the channel a live tick would use
    assert {(r["contact_id"], r["step"], r["template"], r["channel"]) for r in emails} == {
        (people["e1"], "hello", "sim", channel),
        (people["s1"], "hello", "sim", channel),
        (people["s2"], "hello", "sim", channel),
    }
    s2 = next(r for r in emails if r["contact_id"] == people["s2"])
    assert s2["planned_at"] == (MONDAY + timedelta(days=8)).isoformat() and s2["status"] == "sent"
    tasks = sorted(r["step"] for r in report["recipients"] if r["kind"] == "task")
    assert tasks == ["big", "small", "small", "small"]


def test_why_nobody_matched_and_what_it_cannot_know(db: Engine, db_url: str, tmp_path: Path) -> None:
    proj, _ = build(db, db_url, tmp_path)
    report = simulate(db, proj, MONDAY, LAST, timedelta(days=1)).as_dict()
    funnels = {f["playbook"]: [(s["condition"], s["left"]) for s in f["steps"]] for f in report["funnels"]}
    assert set(funnels) == {"nobody", "engaged-nudge"}  # login-capped matched someone
    assert funnels["nobody"] == [
        ("all accounts", 3),
        ("segment: tier = 'tech_touch'", 3),
        ("segment: plan = 'enterprise'", 1),
        ("segment: arr gte 1000000", 0),
        ("trigger: 90d before renewal_date", 0),
    ]
    assert funnels["engaged-nudge"] == [("all accounts", 3), ("trigger: event signup", 0)]

    notes = " ".join(report["notes"])
    assert "engaged-nudge" in notes and "opened" in notes  # engagement it did not observe
    assert "renewal_date" in notes  # a date trigger replayed against today's values
    assert "as they are now" in notes


def test_unusual_reasons_are_reported_per_week_whatever_they_are(tmp_path: Path) -> None:
    """Reasons the report has no column for (guardrails, failures) appear with their first moment
    and detail, grouped by reason: new reasons need no code here."""
    scratch = connect(f"sqlite:///{tmp_path / 'scratch.db'}")
    migrate(scratch)
    base: dict[str, Any] = {"run_id": "r", "playbook_id": "p", "playbook_version": "v"}
    rows = [
        audit_row(at=MONDAY, decision=Decision.ENROLLED, reason=Reason.TRIGGER_MATCHED, **base),
        audit_row(at=MONDAY + timedelta(days=1), decision=Decision.SKIPPED, reason=Reason.HOLDOUT, **base),
    ]
    odd = [
        {**rows[0], "decision": "skipped", "reason": "circuit_open", "detail": "would enroll 900 (usual 40)"},
        {**rows[0], "at": MONDAY + timedelta(days=2), "decision": "skipped", "reason": "circuit_open", "detail": "x"},
        {**rows[0], "at": MONDAY + timedelta(days=8), "decision": "skipped", "reason": "paused_stale_data"},
    ]
    with scratch.begin() as conn:
        conn.execute(insert(audit_log), rows + odd)
        found = notable_events(conn, [MONDAY + timedelta(days=d) for d in range(14)])
    scratch.dispose()
    assert [(e.week, e.playbook, e.reason, e.count, e.first.isoformat(), e.detail) for e in found] == [
        (W1, "p", "circuit_open", 2, MONDAY.isoformat(), "would enroll 900 (usual 40)"),
        (W2, "p", "paused_stale_data", 1, (MONDAY + timedelta(days=8)).isoformat(), ""),
    ]


def test_cli_report_fits_80_columns_and_json_has_everything(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj, people = build(db, db_url, tmp_path)
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(proj.settings.project_dir))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    runner = CliRunner()
    args = ["simulate", "--from", MONDAY.isoformat(), "--to", LAST.isoformat()]

    text = runner.invoke(app, [*args, "--who", "login-capped"])
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(line for line in lines if len(line) > 80)
    assert "capped_playbook_contact_weekly" in text.stdout
    assert "segment: arr gte 1000000" in text.stdout and "busiest contacts" in text.stdout
    assert f"person{people['s2']}@acme.example" in text.stdout  # --who
    assert "cannot know" in text.stdout

    data = json.loads(runner.invoke(app, [*args, "--who", "login-capped", "--json"]).stdout)
    assert {"weeks", "totals", "total", "branches", "busiest_contacts", "funnels", "notes", "recipients"} <= set(data)
    assert len(data["recipients"]) == 8

    unknown = runner.invoke(app, [*args, "--who", "nope"])
    assert unknown.exit_code == 2 and unknown.stderr.startswith("error: --who: no playbook 'nope'"), unknown.stderr


def test_progress_on_a_terminal_only(db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from io import StringIO

    from rich.console import Console

    from engine.cli import authoring

    proj, _ = build(db, db_url, tmp_path)
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(proj.settings.project_dir))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    args = ["simulate", "--from", MONDAY.isoformat(), "--to", LAST.isoformat(), "--json"]

    quiet = CliRunner().invoke(app, args)
    assert quiet.exit_code == 0 and quiet.stderr == ""

    terminal = StringIO()
    monkeypatch.setattr(authoring, "err", Console(file=terminal, force_terminal=True, width=80))
    shown = CliRunner().invoke(app, args)
    assert shown.exit_code == 0, shown.output
    assert "simulating" in terminal.getvalue() and "14/14" in terminal.getvalue()
