"""One playbook's failure does not stop the others, on SQLite and PostgreSQL.

The failing playbook is reported — its summary says at which stage and why, an audit row
(`failed`, `playbook_failed`) keeps it — while every other playbook evaluates, advances and
dispatches. On PostgreSQL a failed statement aborts its transaction, so the report is written in
a fresh one.
"""

from __future__ import annotations

import dataclasses
import importlib
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, Select, column, select, table, text

from engine import tick
from engine.compile import CompiledPlaybook
from engine.project import Project
from engine.tick import stages
from tests.factories import Store
from tests.journeys.helpers import NOW, audit, ledger_rows, load, playbook, run_tick, task_rows

MAIL = playbook("mail", "  - id: hello\n    email: {to: {role: [admin]}, template: welcome/hello}\n")
CALL = playbook("call", '  - id: call\n    task: {title: "Call {{ account.name }}"}\n')
context_module = importlib.import_module("engine.dispatch.context")

BROKEN = playbook("broken", "  - id: hello\n    email: {to: {role: [admin]}, template: welcome/hello}\n")


class _MissingTable(CompiledPlaybook):
    """A playbook whose compiled SQL fails in the database (a table that is not there)."""

    def occurrences(self, now: datetime) -> Select[Any]:
        missing = table("no_such_table", column("subject_id"), column("account_id"), column("trigger_key"))
        return select(missing.c.subject_id, missing.c.account_id, missing.c.trigger_key)


def _with_broken_sql(proj: Project, playbook_id: str) -> Project:
    def swap(p: CompiledPlaybook) -> CompiledPlaybook:
        if p.id != playbook_id:
            return p
        return _MissingTable(**{f.name: getattr(p, f.name) for f in dataclasses.fields(p)})

    return dataclasses.replace(proj, playbooks=tuple(swap(p) for p in proj.playbooks))


def _store(db: Engine) -> dict[str, int]:
    store = Store(db, NOW)
    ids = {}
    for plan in ("broken", "mail", "call"):
        ids[plan] = store.account(plan=plan, name=f"{plan.title()} Co")
        store.contact(ids[plan], "admin")
    return ids


def _others_went_ahead(db: Engine, result: dict[str, tick.PlaybookSummary], ids: dict[str, int]) -> None:
    assert (result["mail"].enrolled, result["mail"].emails, result["mail"].error) == (1, 1, None)
    assert (result["call"].enrolled, result["call"].tasks, result["call"].error) == (1, 1, None)
    assert [t.account_id for t in task_rows(db)] == [ids["call"]]
    assert [(r.account_id, r.status) for r in ledger_rows(db, playbook_id="mail")] == [(ids["mail"], "sent")]


def test_a_playbook_whose_sql_fails_is_reported_and_the_others_run(db: Engine, db_url: str, tmp_path: Path) -> None:
    ids = _store(db)
    proj = _with_broken_sql(load(tmp_path, db_url, BROKEN, MAIL, CALL), "broken")

    result = run_tick(db, proj, NOW)

    _others_went_ahead(db, result, ids)
    error = result["broken"].error
    assert error is not None and error.startswith("evaluating: ") and "no_such_table" in error
    assert "\n" not in error and "Traceback" not in error
    assert (result["broken"].enrolled, result["broken"].emails) == (0, 0)
    (failed,) = audit(db, decision="failed")
    assert (failed.playbook_id, failed.reason, failed.detail) == ("broken", "playbook_failed", error)
    assert failed.playbook_version == proj.by_id()["broken"].version


def test_a_playbook_that_fails_while_advancing_keeps_its_enrollments_and_the_others_run(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _store(db)
    proj = load(tmp_path, db_url, BROKEN, MAIL, CALL)
    real_advance = stages.advance

    def advance(conn: Connection, compiled: CompiledPlaybook, *args: Any, **kwargs: Any) -> Any:
        if compiled.id == "broken":  # a real database error, in the middle of the stage's transaction
            conn.execute(text("SELECT * FROM no_such_table"))
        return real_advance(conn, compiled, *args, **kwargs)

    monkeypatch.setattr(stages, "advance", advance)

    result = run_tick(db, proj, NOW)

    _others_went_ahead(db, result, ids)
    broken = result["broken"]
    assert (broken.matched, broken.enrolled, broken.emails) == (1, 1, 0)  # evaluation had committed
    assert broken.error is not None and broken.error.startswith("advancing: ")
    (failed,) = audit(db, decision="failed")
    assert (failed.playbook_id, failed.reason) == ("broken", "playbook_failed")


def test_a_raising_template_context_fails_that_playbooks_messages_only(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _store(db)
    proj = load(tmp_path, db_url, BROKEN, MAIL, CALL)
    real_context = context_module.template_context

    def template_context(*args: Any, **kwargs: Any) -> Any:
        if kwargs["playbook"].id == "broken":
            raise LookupError("the context cannot be built")
        return real_context(*args, **kwargs)

    monkeypatch.setattr(context_module, "template_context", template_context)

    result = run_tick(db, proj, NOW)

    _others_went_ahead(db, result, ids)
    assert (result["broken"].emails, result["broken"].failed) == (0, 1)
    (failed,) = audit(db, decision="failed")
    assert (failed.playbook_id, failed.account_id) == ("broken", ids["broken"])
    assert failed.detail == "LookupError: the context cannot be built"


def test_a_dry_run_reports_a_failing_playbook_and_previews_the_others(db: Engine, db_url: str, tmp_path: Path) -> None:
    _store(db)
    proj = _with_broken_sql(load(tmp_path, db_url, BROKEN, MAIL, CALL), "broken")

    preview = {s.playbook: s for s in tick.dry_run(db, proj, ["broken", "mail", "call"], NOW, "dry")}

    assert preview["broken"].error is not None and "no_such_table" in preview["broken"].error
    assert (preview["mail"].enrolled, preview["mail"].emails, preview["mail"].error) == (1, 1, None)
    assert (preview["call"].enrolled, preview["call"].tasks) == (1, 1)
    assert audit(db) == [] and ledger_rows(db) == []  # a dry run writes nothing, not even the failure


def test_a_simulation_stops_at_a_failing_playbook_and_says_which(db: Engine, db_url: str, tmp_path: Path) -> None:
    from datetime import timedelta

    from engine.simulate import SimulationError, simulate

    _store(db)
    proj = _with_broken_sql(load(tmp_path, db_url, BROKEN, MAIL, CALL), "broken")

    with pytest.raises(SimulationError) as stopped:
        simulate(db, proj, NOW, NOW + timedelta(days=1), timedelta(days=1))

    said = str(stopped.value)
    assert (
        said.startswith(f"at {NOW.isoformat(sep=' ')}: playbook 'broken' failed (evaluating: ")
        and "no_such_table" in said
    )
