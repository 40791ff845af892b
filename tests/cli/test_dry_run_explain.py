"""`touchflow run --dry-run --explain`: the reasons of one tick per recipient, read from the audit
rows the stages wrote inside the dry run's transaction before it is rolled back — and still nothing
written (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from engine.cli import app
from engine.store.models import audit_log, condition_state, enrollments, ledger, tasks
from engine.tick.explain import explain_dry_run
from tests.factories import Store, project

NOW = datetime(2026, 11, 24, 9, 0)
LOGIN = """
id: login-hello
name: Hello after a login
subject: account
trigger: {event: {name: login}}
steps:
  - {id: hello, email: {to: {role: [admin]}, template: hello}}
  - {id: call, task: {title: "Call {{ account.name }}"}}
"""
TEMPLATE = """{% extends "_layout.html" %}{% block subject %}Hi {{ account.name }}{% endblock %}
{% block content %}<p>Hello {{ contact.name }}</p>{% endblock %}"""
WRITTEN = (enrollments, ledger, tasks, audit_log, condition_state)


def build(db: Engine, db_url: str, tmp_path: Path) -> tuple[Path, dict[str, int]]:
    store = Store(db, NOW)
    good, bad = store.account(name="Good Co"), store.account(name="Bad Co")
    people = {"good": store.contact(good, "admin"), "bad": store.contact(bad, "admin", email="not-an-address")}
    store.events(good, "login", [0.1])
    store.events(bad, "login", [0.1])
    templates = {"hello.en.html": TEMPLATE, "hello.ko.html": TEMPLATE}
    proj = project(tmp_path, db_url, playbooks={"login-hello": LOGIN}, templates=templates)
    return proj.settings.project_dir, people


def written(db: Engine) -> list[int]:
    with db.connect() as conn:
        return [int(conn.execute(select(func.count()).select_from(t)).scalar_one()) for t in WRITTEN]


def test_explain_reads_the_reasons_before_the_rollback(db: Engine, db_url: str, tmp_path: Path) -> None:
    from engine.config import Settings
    from engine.project import load_project

    root, people = build(db, db_url, tmp_path)
    proj = load_project(Settings(project_dir=root, database_url=db_url, outbox_dir=root / "outbox"))
    summaries, decisions = explain_dry_run(db, proj, ["login-hello"], NOW, "dry-explain")

    assert (summaries[0].enrolled, summaries[0].emails, summaries[0].skipped) == (2, 1, 1)
    seen = {(d.contact_id, d.step, d.decision, d.reason) for d in decisions}
    assert (people["good"], "hello", "sent", "delivered_to_channel") in seen
    assert (people["bad"], "hello", "skipped", "invalid_email") in seen
    enrolled = [d for d in decisions if d.decision == "enrolled"]
    assert len(enrolled) == 2 and all(d.playbook == "login-hello" for d in enrolled)
    assert next(d for d in decisions if d.contact_id == people["good"]).email.endswith("@acme.example")
    assert written(db) == [0] * len(WRITTEN)


def test_cli_explain_prints_per_recipient_and_writes_nothing(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, people = build(db, db_url, tmp_path)
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(root))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    runner = CliRunner()
    args = ["run", "--dry-run", "--explain", "--now", NOW.isoformat()]

    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    explained = lines[: next(i for i, line in enumerate(lines) if "ry run" in line)]  # before the summary
    assert explained and max(len(line) for line in explained) <= 80
    bad = next(line for line in explained if "not-an-address" in line)
    assert "hello: skipped (invalid_email)" in bad and f"contact {people['bad']}" in bad
    assert "delivered_to_channel" in result.stdout and "dry run: nothing was written" in result.stdout
    assert written(db) == [0] * len(WRITTEN)

    data = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert data["summary"][0]["playbook"] == "login-hello"
    reasons = {(d["contact_id"], d["reason"]) for d in data["explain"]}
    assert (people["bad"], "invalid_email") in reasons
    assert written(db) == [0] * len(WRITTEN)

    live = runner.invoke(app, ["run", "--explain", "--now", NOW.isoformat()])
    assert live.exit_code == 2 and "--explain needs --dry-run" in live.stderr
    assert written(db) == [0] * len(WRITTEN)
