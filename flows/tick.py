"""The tick flow: the stages of `engine.tick.TICK_STAGES`, each as Prefect tasks.

Thin by design: every decision, and the order of the stages, lives in `engine`; this module only
turns each stage into a task. One task per playbook and one per dispatch batch (hundreds of
messages) — never one per customer: a task run costs ~50 ms of Prefect bookkeeping.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote
from sqlalchemy import Engine

from engine import tick as api
from engine.config import load_settings
from engine.dispatch import NullChannel
from engine.dispatch.factory import make_channel
from engine.dispatch.webhook import no_post
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


@task(name="start-live-tick", cache_policy=NONE)
def start_live_tick(now: datetime, force: bool) -> None:
    """Refuse to run before the store's last tick (unless forced); record this one."""
    engine, _ = _runtime()
    api.start_live_tick(engine, now, force)


@task(cache_policy=NONE)
def run_stage(stage: api.Stage, args: tuple[Any, ...]) -> Any:
    """One stage of `engine.tick.TICK_STAGES`, as a Prefect task named after it."""
    return stage.run(*args)


def as_task(stage: api.Stage, *args: Any) -> Any:
    """The `call` of `run_tick` in the flow: each stage a Prefect task (one per playbook, one per
    dispatch batch). `quote` keeps Prefect from walking the tick's objects as task inputs."""
    name = f"{stage.name}-{args[1]}" if stage.scope == "playbook" else stage.name
    task_run = run_stage.with_options(name=stage.name, task_run_name=name)
    quoted: tuple[Any, Any] = (quote(stage), quote(args))  # unwrapped by Prefect before the call
    return task_run(*quoted)


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
    engine, project = _runtime(refresh=True)
    ids = [p.id for p in project.active(playbook)]
    run_id = str(flow_run.get_id() or uuid.uuid4())
    if dry_run:
        with api.dry_store(engine) as store:
            dry = api.Tick(store, project, at, run_id, ids, NullChannel(), post=no_post)
            return _reported([s.as_dict() for s in api.run_tick(dry, call=as_task).values()])
    start_live_tick(at, force)
    configured = make_channel(project.delivery, project.settings.outbox_dir)
    live = api.Tick(api.LiveStore(engine), project, at, run_id, ids, configured.channel, configured.settings)
    rows = _reported([s.as_dict() for s in api.run_tick(live, call=as_task).values()])
    create_table_artifact(key="tick-summary", table=rows, description=f"Touchflow tick at {at.isoformat()}")
    return rows


def _reported(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows`, after logging each failed playbook to the flow run's log."""
    for row in rows:
        if row.get("error"):
            get_run_logger().error("playbook '%s' failed: %s", row["playbook"], row["error"])
    return rows
