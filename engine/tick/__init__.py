"""One tick, as a programmatic API: the stages in order (`stages.TICK_STAGES`), the stores they
run against (`stores`), what a tick reports (`summary`) and the guard against time going
backwards (`clock`).

The functions here take an Engine and run one stage, or the whole list, in this process; the
Prefect flow (`flows/tick.py`) runs the same list as tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from engine.dispatch import (
    DispatchResult,
    DispatchSettings,
    EmailChannel,
    NullChannel,
    OutboxChannel,
    claim,
    deliver,
)
from engine.dispatch.reconcile import ReconcileResult
from engine.dispatch.webhook import no_post, post_json
from engine.project import Project
from engine.tick.clock import LAST_TICK, TimeWentBackwards, last_tick, start_live_tick
from engine.tick.dispatchers import DispatcherFailed, effective_dispatchers, scales_out
from engine.tick.stages import (
    DISPATCH_BATCH,
    TICK_STAGES,
    Stage,
    Tick,
    complete_settings,
    direct,
    dispatch_stage,
    plan_stage,
    priorities,
    reconcile_stage,
    run_tick,
    team_sender,
)
from engine.tick.stores import DryStore, LiveStore, Store, dry_store, make_limiter
from engine.tick.summary import PlaybookSummary, describe_error, merge

__all__ = [
    "DISPATCH_BATCH",
    "LAST_TICK",
    "TICK_STAGES",
    "DispatcherFailed",
    "DryStore",
    "LiveStore",
    "PlaybookSummary",
    "Stage",
    "Store",
    "Tick",
    "TimeWentBackwards",
    "claim_batch",
    "deliver_batch",
    "describe_error",
    "direct",
    "dispatch_stage",
    "dry_run",
    "dry_store",
    "effective_dispatchers",
    "evaluate_and_advance",
    "last_tick",
    "make_limiter",
    "merge",
    "plan_stage",
    "priorities",
    "reconcile_pending",
    "reconcile_stage",
    "run_stages",
    "run_tick",
    "scales_out",
    "start_live_tick",
    "team_sender",
    "with_project",
]


def run_stages(
    engine: Engine,
    project: Project,
    playbook_ids: list[str],
    now: datetime,
    run_id: str,
    channel: EmailChannel,
    settings: DispatchSettings | None = None,
    post: Callable[..., int] = post_json,
    dispatchers: int = 1,
) -> dict[str, PlaybookSummary]:
    """One live tick's stages in this process, in the order the flow runs them as Prefect tasks
    (for tests and simulations): the same `TICK_STAGES`, reconciliation and the outbox index
    included. Not guarded by `start_live_tick`: a caller that stands for a live tick checks first.
    With `dispatchers` > 1 on PostgreSQL, dispatch runs in that many processes, each sending
    through the channel `touchflow.yaml` names (SQLite: one, with a warning)."""
    tick = Tick(LiveStore(engine), project, now, run_id, playbook_ids, channel, settings, post)
    tick.dispatchers = effective_dispatchers(engine, dispatchers)
    return run_tick(tick)


def dry_run(
    engine: Engine, project: Project, playbook_ids: list[str], now: datetime, run_id: str
) -> list[PlaybookSummary]:
    """What the tick would do at `now`: the same stages on one connection, rolled back at the end;
    emails are rendered but sent nowhere, webhooks not called, no send slot taken."""
    with dry_store(engine) as store:
        tick = Tick(store, project, now, run_id, playbook_ids, NullChannel(), post=no_post)
        return list(run_tick(tick).values())


def evaluate_and_advance(
    engine: Engine, project: Project, playbook_id: str, now: datetime, run_id: str, channel_name: str | None = None
) -> PlaybookSummary:
    """The evaluate-and-advance stage for one playbook, committed (a failure is reported in the
    summary's `error`, not raised). The planned rows name `channel_name`, by default the channel
    of the project's settings (`touchflow.yaml` or `TOUCHFLOW_CHANNEL`)."""
    named = NullChannel()
    named.name = (
        channel_name or project.delivery.channel
    )  # planning only records the channel's name on the rows it writes
    return plan_stage(Tick(LiveStore(engine), project, now, run_id, [playbook_id], named), playbook_id)


def claim_batch(
    engine: Engine,
    now: datetime,
    limit: int = DISPATCH_BATCH,
    playbook_ids: list[str] | None = None,
    token: str | None = None,
    priorities: dict[str, int] | None = None,
) -> list[int]:
    """Claim a batch of planned ledger rows (of `playbook_ids`, when given; higher `priorities`
    first); commits, so other dispatchers skip them. Pass the same `token` to `deliver_batch`."""
    with engine.begin() as conn:
        return claim(conn, limit, now, playbook_ids=playbook_ids, token=token, priorities=priorities)


def deliver_batch(
    engine: Engine,
    project: Project,
    ids: list[int],
    channel: EmailChannel,
    now: datetime,
    run_id: str,
    post: Callable[..., int] = post_json,
    settings: DispatchSettings | None = None,
    token: str | None = None,
) -> DispatchResult:
    """Deliver claimed rows, committing each outcome as soon as it is known. With the claim's
    `token`, rows requeued and claimed elsewhere meanwhile are left alone."""
    tick = Tick(LiveStore(engine), project, now, run_id, [], channel, settings, post)
    with tick.store.session() as (conn, commit):
        return deliver(conn, ids, tick.dispatch(), now=now, run_id=run_id, commit=commit, token=token)


def with_project(settings: DispatchSettings, project: Project, engine: Engine) -> DispatchSettings:
    """`settings` completed by the project: links, the sending policy, the global rate's keeper."""
    return complete_settings(settings, project, LiveStore(engine))


def reconcile_pending(engine: Engine, project: Project, now: datetime, run_id: str) -> ReconcileResult:
    """The reconcile stage alone, committed; with the outbox channel, by what is on disk."""
    outbox = project.delivery.channel == "outbox"
    channel = OutboxChannel(project.settings.outbox_dir) if outbox else NullChannel()
    return reconcile_stage(Tick(LiveStore(engine), project, now, run_id, [], channel))
