"""The tick flow: the stages of `engine.tick.TICK_STAGES`, each as Prefect tasks.

Thin by design: every decision, and the order of the stages, lives in `engine`; this module only
turns each stage into a task. One task per playbook and one per dispatch batch (hundreds of
messages) — never one per customer: a task run costs ~50 ms of Prefect bookkeeping.

Deployed (`prefect.yaml`), a run judges the world as of its *scheduled* start time, so a run that
starts at 13:59:59.8 for 14:00 sees deferrals due at 14:00. Each stage logs its counts and timing
through the run logger, each live tick leaves a markdown summary (artifact `tick-summary`), and
with `fail_on_error` a playbook's failure fails the run once the others have run.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any, cast

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote
from sqlalchemy import Engine

from engine import tick as api
from engine.config import MAX_DISPATCHERS, load_settings
from engine.dispatch import NullChannel
from engine.dispatch.factory import make_channel
from engine.dispatch.webhook import no_post
from engine.project import Project, load_project
from engine.store.db import connect
from flows import report

_RUNTIME: dict[str, tuple[Engine, Project]] = {}
SECRET_SETTINGS = ("TOUCHFLOW_DATABASE_URL", "TOUCHFLOW_UNSUBSCRIBE_SECRET", "TOUCHFLOW_SENDGRID_WEBHOOK_KEY")
"""Settings a deployment may give as the name of a Prefect Secret block (`<NAME>_BLOCK`), so the
secret never sits in the deployment's job variables."""


class SecretBlockMissing(RuntimeError):
    """A `<NAME>_BLOCK` variable names a Secret block that does not exist."""


def secrets_from_blocks() -> list[str]:
    """Fill each setting of SECRET_SETTINGS that is unset from the Secret block its `<NAME>_BLOCK`
    variable names (the environment wins, as for the SendGrid key); returns the settings filled."""
    filled = []
    for name in SECRET_SETTINGS:
        block = os.environ.get(f"{name}_BLOCK")
        if not block or os.environ.get(name):
            continue
        from prefect.blocks.system import Secret

        try:
            # `_sync=True` is async_dispatch's switch: the plain call, never a coroutine.
            loaded: Any = cast(Any, Secret.load)(block, _sync=True)
            os.environ[name] = str(loaded.get())
        except ValueError:
            raise SecretBlockMissing(
                f"{name}_BLOCK names the Secret block '{block}', which does not exist on this Prefect server:"
                f" create it, or set {name} in the worker's environment"
            ) from None
        filled.append(name)
    return filled


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
    """One stage of `engine.tick.TICK_STAGES`, as a Prefect task named after it; logs what it did
    (counts per playbook, deferrals and skips) and how long it took to the run's log."""
    started = time.monotonic()
    result = stage.run(*args)
    logger = get_run_logger()
    logger.info("%s", report.describe_result(stage.name, result, time.monotonic() - started))
    for index, process in enumerate(getattr(result, "processes", ())):  # dispatch in several processes
        logger.info("%s", process.describe(index + 1))
    return result


def as_task(stage: api.Stage, *args: Any) -> Any:
    """The `call` of `run_tick` in the flow: each stage a Prefect task (one per playbook, one per
    dispatch batch). `quote` keeps Prefect from walking the tick's objects as task inputs."""
    name = f"{stage.name}-{args[1]}" if stage.scope == "playbook" else stage.name
    task_run = run_stage.with_options(name=stage.name, task_run_name=name)
    quoted: tuple[Any, Any] = (quote(stage), quote(args))  # unwrapped by Prefect before the call
    return task_run(*quoted)


class PlaybooksFailed(RuntimeError):
    """Raised at the end of a tick run with `fail_on_error` when playbooks failed (the others ran)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        failed = [f"'{r['playbook']}' ({r['error']})" for r in rows if r.get("error")]
        super().__init__(f"{len(failed)} playbook(s) failed: " + "; ".join(failed))


def scheduled_moment() -> datetime:
    """The moment this flow run stands for, naive UTC: its scheduled start time (a deployment's
    14:00 run is the tick of 14:00, whenever its worker picks it up), else the clock."""
    scheduled = flow_run.scheduled_start_time
    moment = scheduled if isinstance(scheduled, datetime) else datetime.now(UTC)
    return datetime.fromtimestamp(moment.timestamp(), UTC).replace(tzinfo=None)


@flow(name="touchflow-tick")
def tick(
    now: datetime | None = None,
    dry_run: bool = False,
    playbook: str | None = None,
    force: bool = False,
    fail_on_error: bool = False,
    dispatchers: int = 1,
) -> list[dict[str, Any]]:
    """One tick at `now` (default: the run's scheduled start time, UTC) over every active
    playbook. A live tick earlier than the store's last one raises TimeWentBackwards unless
    `force` — but a scheduled run (no `now`) older than the store's last tick completes with
    nothing to do, superseded by that later tick; a dry run may look at any moment. Each row's
    `error` names a playbook that failed while the others ran; with `fail_on_error`
    (deployments) the run then raises PlaybooksFailed so Prefect marks it failed. A failing
    dispatch batch raises (its claim released first).

    `dispatchers` > 1 runs the dispatch stage as one task that starts that many processes, each
    claiming batches with SKIP LOCKED until none is left (PostgreSQL; SQLite dispatches in one,
    with a warning); the run's log gets each process's counts, and a process that dies fails
    the run (DispatcherFailed) once the others stopped."""
    if not 1 <= dispatchers <= MAX_DISPATCHERS:
        raise ValueError(f"dispatchers must be between 1 and {MAX_DISPATCHERS}, not {dispatchers}")
    at = now or scheduled_moment()
    if at.tzinfo is not None:  # the engine works in naive UTC
        at = at.astimezone(UTC).replace(tzinfo=None)
    logger = get_run_logger()
    for name in secrets_from_blocks():
        logger.info("%s from its Secret block", name)
    engine, project = _runtime(refresh=True)
    ids = [p.id for p in project.active(playbook)]
    logger.info("tick at %s UTC over %d playbooks, channel %s", at.isoformat(), len(ids), project.delivery.channel)
    run_id = str(flow_run.get_id() or uuid.uuid4())
    if dry_run:
        with api.dry_store(engine) as store:
            dry = api.Tick(store, project, at, run_id, ids, NullChannel(), post=no_post)
            dry_rows = [s.as_dict() for s in api.run_tick(dry, call=as_task).values()]
            report.log_failures(logger, dry_rows)
            return dry_rows
    last = api.last_tick(engine)
    if now is None and not force and last is not None and at < last:
        # An enqueued run that started after a later one: that tick already judged the world at a
        # later moment, so nothing is left for this one (deployment runs never overlap).
        said = f"superseded: the store already ticked at {last.isoformat()} UTC, after this run's {at.isoformat()}"
        logger.warning("%s; nothing to do", said)
        create_markdown_artifact(
            f"# Touchflow tick at {at.isoformat()} UTC\n\n{said}; nothing to do.\n", key="tick-summary"
        )
        return []
    start_live_tick(at, force)
    configured = make_channel(project.delivery, project.settings.outbox_dir)
    live = api.Tick(api.LiveStore(engine), project, at, run_id, ids, configured.channel, configured.settings)
    live.dispatchers = api.effective_dispatchers(engine, dispatchers)
    if dispatchers > live.dispatchers:
        logger.warning(
            "%d dispatchers asked for; the store has one writer (SQLite): dispatching in one process", dispatchers
        )
    rows = [s.as_dict() for s in api.run_tick(live, call=as_task).values()]
    report.log_failures(logger, rows)
    why = report.reasons(engine, at, run_id)
    for pid, decision, reason, count in why:
        logger.info("playbook '%s': %d %s (%s)", pid, count, decision, reason)
    create_table_artifact(key="tick-table", table=rows, description=f"Touchflow tick at {at.isoformat()}")
    create_markdown_artifact(
        report.markdown(at, run_id, rows, why), key="tick-summary", description=f"Touchflow tick at {at.isoformat()}"
    )
    if fail_on_error and any(row.get("error") for row in rows):
        raise PlaybooksFailed(rows)
    return rows
