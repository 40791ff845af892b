"""The tick flow: evaluate and advance each active playbook, then dispatch in batches.

Thin by design: every decision lives in `engine`; this module only orders the stages as Prefect
tasks. One task per playbook and one per dispatch batch (hundreds of messages) — never one per
customer: a task run costs ~50 ms of Prefect bookkeeping.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE
from prefect.runtime import flow_run
from sqlalchemy import Engine

from engine import tick as api
from engine.config import load_settings
from engine.dispatch import DispatchResult, OutboxChannel
from engine.dispatch.factory import make_channel
from engine.project import Project, load_project
from engine.store.db import connect

_RUNTIME: dict[str, tuple[Engine, Project]] = {}


def _runtime(refresh: bool = False) -> tuple[Engine, Project]:
    """The store's Engine (one pool per database URL per process) and the project, reloaded on
    `refresh` so a long-running worker sees playbook changes at every tick."""
    settings = load_settings()
    key = f"{settings.project_dir}|{settings.database_url}"
    if refresh or key not in _RUNTIME:
        engine = _RUNTIME[key][0] if key in _RUNTIME else connect(settings.database_url)
        _RUNTIME[key] = (engine, load_project(settings))
    return _RUNTIME[key]


@task(name="evaluate-and-advance", cache_policy=NONE)
def evaluate_and_advance(playbook_id: str, now: datetime, run_id: str) -> dict[str, Any]:
    """Enroll and plan one playbook (a failure is reported in the summary's `error`, not raised)."""
    engine, project = _runtime()
    # The configured channel's name goes on the ledger and audit rows of the emails planned.
    channel = project.delivery.channel
    return api.evaluate_and_advance(engine, project, playbook_id, now, run_id, channel).as_dict()


@task(name="start-live-tick", cache_policy=NONE)
def start_live_tick(now: datetime, force: bool) -> None:
    """Refuse to run before the store's last tick (unless forced); record this one."""
    engine, _ = _runtime()
    api.start_live_tick(engine, now, force)


@task(name="dispatch-batch", cache_policy=NONE)
def dispatch_batch(now: datetime, run_id: str, playbook_ids: list[str]) -> dict[str, dict[str, int]] | None:
    """Claim and deliver one batch of planned messages, tasks and webhooks; None when none is left."""
    engine, project = _runtime()
    token = uuid.uuid4().hex  # this batch's claim: delivery touches only rows still held under it
    ids = api.claim_batch(engine, now, playbook_ids=playbook_ids, token=token, priorities=api.priorities(project))
    if not ids:
        return None
    configured = make_channel(project.delivery, project.settings.outbox_dir)
    result = api.deliver_batch(
        engine, project, ids, configured.channel, now, run_id, settings=configured.settings, token=token
    )
    return result.as_dict()


@task(name="reconcile", cache_policy=NONE)
def reconcile(now: datetime, run_id: str) -> dict[str, int]:
    """Settle messages left sending or unknown by earlier dispatches (never resent blindly)."""
    engine, project = _runtime()
    return asdict(api.reconcile_pending(engine, project, now, run_id))


@task(name="dry-run", cache_policy=NONE)
def dry_run_all(playbook_ids: list[str], now: datetime, run_id: str) -> list[dict[str, Any]]:
    """Compute the whole tick in a rolled-back transaction."""
    engine, project = _runtime()
    return [s.as_dict() for s in api.dry_run(engine, project, playbook_ids, now, run_id)]


@flow(name="touchflow-tick")
def tick(
    now: datetime | None = None, dry_run: bool = False, playbook: str | None = None, force: bool = False
) -> list[dict[str, Any]]:
    """One tick at `now` (default: the current time, UTC) over every active playbook. A live tick
    earlier than the store's last one raises TimeWentBackwards unless `force`; a dry run may look
    at any moment. Each row's `error` names a playbook that failed while the others ran."""
    at = now or datetime.now(UTC)
    if at.tzinfo is not None:  # the engine works in naive UTC
        at = at.astimezone(UTC).replace(tzinfo=None)
    _, project = _runtime(refresh=True)
    ids = [p.id for p in project.active(playbook)]
    run_id = str(flow_run.get_id() or uuid.uuid4())
    if dry_run:
        return _reported(list(dry_run_all(ids, at, run_id)))
    start_live_tick(at, force)
    reconcile(at, run_id)
    summaries = {pid: api.PlaybookSummary(**evaluate_and_advance(pid, at, run_id)) for pid in ids}
    while (batch := dispatch_batch(at, run_id, ids)) is not None:
        api.merge(summaries, DispatchResult.from_dict(batch))
    if project.delivery.channel == "outbox":
        OutboxChannel(project.settings.outbox_dir).write_index()
    rows = _reported([s.as_dict() for s in summaries.values()])
    create_table_artifact(key="tick-summary", table=rows, description=f"Touchflow tick at {at.isoformat()}")
    return rows


def _reported(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows`, after logging each failed playbook to the flow run's log."""
    for row in rows:
        if row.get("error"):
            get_run_logger().error("playbook '%s' failed: %s", row["playbook"], row["error"])
    return rows
