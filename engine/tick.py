"""One tick, as a programmatic API the Prefect flow (and tests) call stage by stage.

Each function owns its transaction: evaluation commits per playbook, advancing per playbook,
and dispatch commits the claim before delivering and the outcome after. `dry_run` does all three
on one connection and rolls back, so it writes nothing.

A playbook that fails (its SQL, a bug) is reported — logged, audited as `playbook_failed`, and
named with the reason in its summary's `error` — and the tick goes on with the others.

Time does not go backwards: `start_live_tick` refuses a live tick earlier than the store's last
one (kept in the `tick` row of `locks`) unless forced. Dry runs and simulations are not live ticks.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.exc import DBAPIError

from engine.audit import Decision, Reason, audit_row, record
from engine.compile import CompiledPlaybook
from engine.dispatch import Dispatch, DispatchResult, DispatchSettings, EmailChannel, NullChannel, claim, deliver
from engine.dispatch.reconcile import ReconcileResult, reconcile
from engine.dispatch.webhook import no_post, post_json
from engine.plan import AdvanceResult, EvaluateResult, advance, evaluate
from engine.policy.ratelimit import DatabaseRateLimiter, PrefectRateLimiter, RateLimiter
from engine.project import Project
from engine.spec.policy import Policy
from engine.store.bulk import conflict_insert
from engine.store.models import locks

DISPATCH_BATCH = 500
LAST_TICK = "tick"
"""The `locks` row whose `held_at` is the latest `now` a live tick ran at."""

log = logging.getLogger("touchflow.tick")


class TimeWentBackwards(Exception):
    """A live tick asked to run earlier than the store's last one (pass `force` to run anyway)."""

    def __init__(self, last: datetime, now: datetime) -> None:
        self.last, self.now = last, now
        super().__init__(
            f"the store's last tick ran at {last.isoformat(sep=' ')} UTC; this tick's now is "
            f"{now.isoformat(sep=' ')} UTC — refusing to go back in time; pass --force to run anyway"
        )


def last_tick(engine: Engine) -> datetime | None:
    """The latest `now` a live tick ran at on this store (None before the first one)."""
    with engine.connect() as conn:
        return conn.execute(select(locks.c.held_at).where(locks.c.name == LAST_TICK)).scalar_one_or_none()


def start_live_tick(engine: Engine, now: datetime, force: bool = False) -> None:
    """Record `now` as the store's last tick, or raise TimeWentBackwards when it is earlier than
    the last one: a tick in the past would send mail dated then and re-run journeys' waits.
    With `force` it runs anyway, and the mark stays at the latest tick. Commits."""
    mark = locks.c
    with engine.begin() as conn:
        conn.execute(
            conflict_insert(conn, locks)
            .values(name=LAST_TICK, held_at=None)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        # One conditional UPDATE: two ticks starting together cannot both see the old mark.
        later = or_(mark.held_at.is_(None), mark.held_at <= now)
        if conn.execute(update(locks).where(mark.name == LAST_TICK, later).values(held_at=now)).rowcount:
            return
        last = conn.execute(select(mark.held_at).where(mark.name == LAST_TICK)).scalar_one()
    if not force:
        raise TimeWentBackwards(last, now)
    log.warning("forced: a live tick at %s, before the store's last tick at %s", now, last)


def describe_error(exc: BaseException) -> str:
    """One line saying what failed: the exception's class and first line (the driver's own for a
    database error, without the SQL and parameters SQLAlchemy appends)."""
    inner = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(inner).strip().splitlines()
    message = f"{type(inner).__name__}: {lines[0]}" if lines else type(inner).__name__
    return message if len(message) <= 500 else message[:499] + "…"


@dataclass
class PlaybookSummary:
    """The per-playbook line of a tick's report."""

    playbook: str
    matched: int = 0
    enrolled: int = 0
    emails: int = 0
    tasks: int = 0
    skipped: int = 0
    deferred: int = 0
    failed: int = 0
    converted: int = 0
    exited: int = 0
    error: str | None = None
    """Why the playbook failed this tick ("evaluating: …"), None when it did not."""

    def as_dict(self) -> dict[str, int | str | None]:
        return asdict(self)


def evaluate_and_advance(
    engine: Engine,
    project: Project,
    playbook_id: str,
    now: datetime,
    run_id: str,
    channel_name: str,
) -> PlaybookSummary:
    """Enroll new subjects and plan due steps of one playbook; commits each stage. A failure is
    this playbook's alone: it is logged and audited, and the summary's `error` says why."""
    playbook = project.by_id()[playbook_id]
    summary = PlaybookSummary(playbook_id)
    ev, adv, stage = EvaluateResult(matched=0, enrolled=0), AdvanceResult(), "evaluating"
    try:
        with engine.begin() as conn:
            ev = evaluate(conn, playbook, now, run_id)
        stage = "advancing"
        with engine.begin() as conn:
            adv = advance(conn, playbook, now, run_id, channel_name, project.versions)
    except Exception as exc:  # one playbook's failure must not stop the tick's others
        summary.error = f"{stage}: {describe_error(exc)}"
        _report_failure(engine, playbook, now, run_id, summary.error)
    _fill(summary, ev, adv)
    return summary


def _report_failure(engine: Engine, playbook: CompiledPlaybook, now: datetime, run_id: str, error: str) -> None:
    """Log and audit a playbook's failure, in a transaction of its own (the stage's is rolled back;
    on PostgreSQL it could not be used any more)."""
    log.error("playbook '%s' failed while %s", playbook.id, error)
    row = audit_row(
        at=now,
        run_id=run_id,
        playbook_id=playbook.id,
        playbook_version=playbook.version,
        decision=Decision.FAILED,
        reason=Reason.PLAYBOOK_FAILED,
        detail=error,
    )
    try:
        with engine.begin() as conn:
            record(conn, [row])
    except Exception as exc:  # the store itself is failing: the log and the summary still say it
        log.error("the failure of playbook '%s' could not be audited: %s", playbook.id, describe_error(exc))


def _fill(summary: PlaybookSummary, ev: EvaluateResult, adv: AdvanceResult) -> None:
    summary.matched, summary.enrolled, summary.skipped = ev.matched, ev.enrolled, adv.skipped
    summary.converted, summary.exited = adv.converted, adv.exited


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
    """Deliver claimed rows, committing each outcome as soon as it is known. `post` calls webhooks.
    With the claim's `token`, rows requeued and claimed elsewhere meanwhile are left alone."""
    with engine.connect() as conn:
        how = with_project(settings or DispatchSettings(team_sender=team_sender(project)), project, engine)
        dispatch = Dispatch(
            playbooks=project.by_id(), channel=channel, renderer=project.renderer, post=post, settings=how
        )
        result = deliver(conn, ids, dispatch, now=now, run_id=run_id, commit=conn.commit, token=token)
        conn.commit()
        return result


def with_project(settings: DispatchSettings, project: Project, engine: Engine) -> DispatchSettings:
    """`settings` with what the project says where they say nothing: unsubscribe links, the
    sending policy of `touchflow.yaml`, and the global rate limiter."""
    policy = settings.policy or project.delivery.policy
    limiter = settings.limiter or make_limiter(policy, engine)
    return replace(settings, links=settings.links or project.links, policy=policy, limiter=limiter)


def make_limiter(policy: Policy, engine: Engine) -> RateLimiter | None:
    """The global send rate's keeper, when `policy` sets one (see engine/policy/ratelimit.py)."""
    if policy.rate_limit is None:
        return None
    use_prefect = policy.rate_limiter == "prefect" or (
        policy.rate_limiter == "auto" and bool(os.environ.get("PREFECT_API_URL"))
    )
    if use_prefect:
        return PrefectRateLimiter(policy.rate_limit)
    return DatabaseRateLimiter(engine, policy.rate_limit)


def priorities(project: Project) -> dict[str, int]:
    """Playbook id → its `priority`, for claiming the higher ones first."""
    return {p.id: p.spec.priority for p in project.playbooks}


def team_sender(project: Project) -> tuple[str, str]:
    """The project's team sender (name, address), from `touchflow.yaml`."""
    return project.delivery.team_sender.name, project.delivery.team_sender.email


def reconcile_pending(engine: Engine, project: Project, now: datetime, run_id: str) -> ReconcileResult:
    """Settle messages left sending or unknown (see engine/dispatch/reconcile.py); commits. With
    the outbox channel, its rows are settled by what is on disk."""
    outbox = project.settings.outbox_dir if project.delivery.channel == "outbox" else None
    with engine.begin() as conn:
        return reconcile(conn, now, project.delivery.reconcile_after, run_id, outbox)


def run_stages(
    engine: Engine,
    project: Project,
    playbook_ids: list[str],
    now: datetime,
    run_id: str,
    channel: EmailChannel,
    settings: DispatchSettings | None = None,
    post: Callable[..., int] = post_json,
) -> dict[str, PlaybookSummary]:
    """One tick's stages in this process, in the order the flow runs them as Prefect tasks:
    evaluate and advance each playbook, then claim and deliver their planned rows in batches.
    For simulations and tests; the flow itself adds reconciliation and runs each stage as a task."""
    summaries = {pid: evaluate_and_advance(engine, project, pid, now, run_id, channel.name) for pid in playbook_ids}
    ranks = priorities(project)
    while ids := claim_batch(
        engine, now, playbook_ids=playbook_ids, token=(token := uuid.uuid4().hex), priorities=ranks
    ):
        result = deliver_batch(engine, project, ids, channel, now, run_id, post, settings=settings, token=token)
        merge(summaries, result)
    return summaries


def merge(summaries: dict[str, PlaybookSummary], result: DispatchResult) -> None:
    """Add a dispatch batch's counts to the per-playbook summaries."""
    for pid, n in result.emails.items():
        summaries.setdefault(pid, PlaybookSummary(pid)).emails += n
    for pid, n in result.tasks.items():
        summaries.setdefault(pid, PlaybookSummary(pid)).tasks += n
    for pid, n in result.failed.items():
        summaries.setdefault(pid, PlaybookSummary(pid)).failed += n
    for pid, n in result.deferred.items():
        summaries.setdefault(pid, PlaybookSummary(pid)).deferred += n
    for pid, n in result.skipped.items():
        summaries.setdefault(pid, PlaybookSummary(pid)).skipped += n


def dry_run(
    engine: Engine, project: Project, playbook_ids: list[str], now: datetime, run_id: str
) -> list[PlaybookSummary]:
    """What the tick would do at `now`, computed in one transaction that is rolled back."""
    summaries = {pid: PlaybookSummary(pid) for pid in playbook_ids}
    channel = NullChannel()
    with engine.connect() as conn:
        trans = conn.begin()
        if conn.dialect.name == "sqlite":
            # pysqlite opens its transaction lazily, at the first write: the first SAVEPOINT below
            # would be the outermost transaction, and releasing it would commit the dry run.
            conn.exec_driver_sql("BEGIN")
        try:
            for pid in playbook_ids:
                try:
                    with conn.begin_nested():  # a failing playbook rolls back to here, alone
                        ev = evaluate(conn, project.by_id()[pid], now, run_id)
                        adv = advance(conn, project.by_id()[pid], now, run_id, channel.name, project.versions)
                except Exception as exc:
                    summaries[pid].error = describe_error(exc)
                    log.error("dry run: playbook '%s' failed: %s", pid, summaries[pid].error)
                    continue
                _fill(summaries[pid], ev, adv)
            settings = DispatchSettings(
                team_sender=team_sender(project), links=project.links, policy=project.delivery.policy
            )
            dispatch = Dispatch(
                playbooks=project.by_id(), channel=channel, renderer=project.renderer, post=no_post, settings=settings
            )
            while ids := claim(conn, DISPATCH_BATCH, now, playbook_ids=playbook_ids, priorities=priorities(project)):
                merge(summaries, deliver(conn, ids, dispatch, now=now, run_id=run_id))
        finally:
            trans.rollback()
    return list(summaries.values())
