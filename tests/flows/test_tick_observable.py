"""A deployed tick, as an operator sees it: judged at its scheduled time, logged per stage, summed
up in a markdown artifact, and failed in Prefect when a playbook failed (after the others ran)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from engine.project import Project
from engine.store.models import ledger
from tests.flows.test_tick_flow import NOW, _small_project

pytestmark = pytest.mark.prefect


def _artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    latest = max(found, key=lambda a: a.created or datetime.min)
    return str(latest.data)


def _run_log(flow_run_id: Any) -> str:
    """Every line the flow run and its tasks logged, as the Prefect UI shows them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return "\n".join(entry.message for entry in logs)


def test_a_run_judges_the_world_at_its_scheduled_start_not_the_clock(
    harness: None, db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 14:00 run picked up at 13:59:59.8 is the tick of 14:00: Prefect's scheduled start time."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from prefect.states import Scheduled

    from engine.tick import last_tick
    from flows.tick import tick

    _small_project(tmp_path, db, db_url, monkeypatch)
    fourteen = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    with get_client(sync_client=True) as client:  # as a deployment's schedule creates it
        scheduled = client.create_flow_run(tick, parameters={}, state=Scheduled(scheduled_time=fourteen))
    run_flow(tick, flow_run=scheduled, parameters={})  # what a worker does, whatever the clock says
    assert last_tick(db) == datetime(2026, 11, 23, 14, 0)


def test_each_tick_leaves_a_readable_summary_and_logs_its_stages(
    harness: None,
    db: Engine,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.tick import tick

    _small_project(tmp_path, db, db_url, monkeypatch)
    loggers = [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs")]
    for logger in loggers:  # the suite runs Prefect at WARNING; an operator's workers at INFO
        logger.setLevel(logging.INFO)
    try:
        state = tick(now=NOW, return_state=True)
    finally:
        for logger in loggers:
            logger.setLevel(logging.NOTSET)
    rows = {row["playbook"]: row for row in state.result()}
    said = _run_log(state.state_details.flow_run_id)
    assert "tick at 2026-11-23T09:00:00 UTC over 2 playbooks, channel outbox" in said
    assert "evaluate-and-advance: playbook=hello; matched=1; enrolled=1" in said
    assert "dispatch-batch: emails hello=1; tasks call=1" in said

    summary = _artifact("tick-summary")
    assert summary.startswith("# Touchflow tick at 2026-11-23T09:00:00 UTC")
    assert f"**{rows['hello']['emails']} emails** and **{rows['call']['tasks']} tasks** sent" in summary
    assert "| hello | 1 | 1 | 1 | 0 | 0 | 0 | 0 |  |" in summary


def test_a_failed_playbook_fails_the_run_after_the_others_ran(
    harness: None, db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.tick as flow_module
    from flows.tick import PlaybooksFailed, tick
    from tests.journeys.test_playbook_isolation import _with_broken_sql

    _small_project(tmp_path, db, db_url, monkeypatch)
    real_load = flow_module.load_project

    def broken(settings: Any) -> Project:
        return _with_broken_sql(real_load(settings), "call")

    monkeypatch.setattr(flow_module, "load_project", broken)
    state = tick(now=NOW, fail_on_error=True, return_state=True)

    assert state.is_failed()
    with pytest.raises(PlaybooksFailed, match=r"1 playbook\(s\) failed: 'call' \(evaluating: "):
        state.result()
    with db.connect() as conn:  # the others ran
        sent = conn.execute(select(func.count()).where(ledger.c.status == "sent")).scalar_one()
    assert sent == 1
    summary = _artifact("tick-summary")
    assert "## Failed" in summary and "- `call`: evaluating: " in summary


def test_a_scheduled_run_older_than_the_stores_last_tick_is_superseded_not_failed(
    harness: None, db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two enqueued runs may start in either order; the earlier moment, started second, has
    nothing left to do (a later tick judged the world already): it completes and says so."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from prefect.states import Scheduled

    from engine.tick import last_tick
    from flows.tick import tick

    _small_project(tmp_path, db, db_url, monkeypatch)
    tick(now=NOW.replace(hour=15))
    with get_client(sync_client=True) as client:
        late = client.create_flow_run(
            tick, parameters={}, state=Scheduled(scheduled_time=NOW.replace(hour=14, tzinfo=UTC))
        )
    state = run_flow(tick, flow_run=late, parameters={}, return_type="state")
    assert state.is_completed() and state.result() == []
    assert last_tick(db) == NOW.replace(hour=15)
    assert "superseded" in _artifact("tick-summary")
