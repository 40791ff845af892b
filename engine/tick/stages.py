"""The order of a tick, written once, as data: `TICK_STAGES`.

    reconcile → health (once a day) → evaluate-and-advance (per playbook)
              → dispatch-batch (until none is left) → outbox-index

`run_tick` walks the list; what it does with each stage is the caller's `call`. Called directly
(`direct`), the stages run in this process — `run_stages` for tests and simulations, `dry_run`
on a rolled-back store. The Prefect flow passes a `call` that runs each stage as a Prefect task:
one per playbook and one per dispatch batch, never one per customer or message. A stage added to
the list therefore runs in all of them. A live tick with `dispatchers` > 1 runs a stage's
`scale_out` instead of its batches: every dispatch batch, in that many processes, in one call.

A playbook that fails (its SQL, a bug) is that playbook's alone: it is logged, audited as
`playbook_failed`, and named with the reason in its summary's `error`; the tick goes on.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from engine.audit import Decision, Reason, audit_row, record
from engine.compile import CompiledPlaybook
from engine.dispatch import Dispatch, DispatchResult, DispatchSettings, EmailChannel, OutboxChannel, claim, deliver
from engine.dispatch.claims import release as release_claim
from engine.dispatch.claims import wall_clock
from engine.dispatch.reconcile import ReconcileResult, reconcile
from engine.dispatch.webhook import post_json
from engine.guard.checks import Circuit, check_playbook, release
from engine.health.compute import compute_day
from engine.health.load import load_health
from engine.plan import AdvanceResult, EvaluateResult, advance, evaluate
from engine.problems import ProblemsFound
from engine.project import Project
from engine.tick.stores import Store
from engine.tick.summary import PlaybookSummary, describe_error, merge

DISPATCH_BATCH = 500
"""Ledger rows claimed and delivered per dispatch batch (one Prefect task in the flow)."""

log = logging.getLogger("touchflow.tick")


@dataclass
class Tick:
    """One tick's inputs: the store it runs against, the project, its moment, the playbooks it
    runs, and how it sends (the channel, dispatch settings, the webhook poster). `wall_clock` is
    the real clock (unix seconds) claims are stamped and expired with: never the tick's `now`.
    With `dispatchers` > 1 (a live store), the dispatch stage runs in that many processes, each
    building the channel `touchflow.yaml` names (`channel` and `settings` then only plan)."""

    store: Store
    project: Project
    now: datetime
    run_id: str
    playbook_ids: list[str]
    channel: EmailChannel
    settings: DispatchSettings | None = None
    post: Callable[..., int] = post_json
    wall_clock: Callable[[], float] = time.time
    dispatchers: int = 1
    """Processes the dispatch stage runs in (`engine/tick/dispatchers.py`); 1: this one."""
    _dispatch: Dispatch | None = field(default=None, repr=False)

    def dispatch(self) -> Dispatch:
        """What every dispatch batch of this tick sends with, built once: the given settings
        completed by the project (links, the sending policy, the global rate's keeper)."""
        if self._dispatch is None:
            base = self.settings or DispatchSettings(team_sender=team_sender(self.project))
            settings = complete_settings(base, self.project, self.store)
            self._dispatch = Dispatch(
                playbooks=self.project.by_id(),
                channel=self.channel,
                renderer=self.project.renderer,
                post=self.post,
                settings=settings,
            )
        return self._dispatch

    def release_send_times(self) -> int:
        """Nothing left to claim: give back the send times this tick's limiter holds ahead, so
        the other dispatchers need not wait them out (`RateLimiter.release`); how many."""
        limiter = self._dispatch.settings.limiter if self._dispatch is not None else None
        return limiter.release() if limiter is not None else 0

    @property
    def outbox(self) -> Path | None:
        """The outbox directory when this tick sends to one (its truth is on disk)."""
        return self.channel.directory if isinstance(self.channel, OutboxChannel) else None


Scope = Literal["tick", "playbook", "batches"]


@dataclass(frozen=True)
class Stage:
    """One stage of a tick: its name (the Prefect task's), how often it runs — once (`tick`),
    once per playbook (`playbook`, called with the playbook's id), or again and again until it
    returns None (`batches`) — and the function that does it."""

    name: str
    scope: Scope
    run: Callable[..., Any]
    scale_out: Stage | None = None
    """For a `batches` stage: the stage that runs all its batches in one call across
    `Tick.dispatchers` processes, used instead when a live tick has more than one."""


def reconcile_stage(tick: Tick) -> ReconcileResult:
    """Settle messages left sending or unknown by earlier dispatches (never resent blindly; the
    outbox's rows by what is on disk)."""
    with tick.store.transaction() as conn:
        after, wall = tick.project.delivery.reconcile_after, wall_clock(tick.wall_clock)
        return reconcile(conn, tick.now, after, tick.run_id, tick.outbox, wall=wall)


def health_stage(tick: Tick) -> int | None:
    """Score every account for today, once a day, before the playbooks read the scores
    (engine/health/); None when the project has no health model or today is already scored.
    A model that does not load, or a failing statement, is logged: the playbooks still run, on
    the latest scores there are."""
    try:
        spec = load_health(tick.project.settings.project_dir)
        if spec is None:
            return None
        with tick.store.transaction() as conn:
            return compute_day(conn, spec, tick.now)
    except ProblemsFound as exc:
        log.error("health scores not computed: %s", exc)
    except Exception as exc:  # the scores are one input among many: the tick goes on
        log.error("health scores not computed: %s", describe_error(exc))
    return None


def plan_stage(tick: Tick, playbook_id: str) -> PlaybookSummary:
    """Enroll new subjects and plan due steps of one playbook; each step commits."""
    playbook = tick.project.by_id()[playbook_id]
    summary = PlaybookSummary(playbook_id)
    ev, adv, doing = EvaluateResult(matched=0, enrolled=0), AdvanceResult(), "evaluating"
    try:
        # The guardrails first (engine/guard/): stale data pauses the playbook, a held one only
        # stops enrolling; either is audited and said in the summary.
        with tick.store.transaction() as conn:
            pause = check_playbook(conn, playbook, tick.project.delivery.freshness, tick.now, tick.run_id)
        if pause is not None:
            summary.paused, summary.why_paused = pause.reason.value, pause.detail
        if pause is None:
            with tick.store.transaction() as conn:
                resumed = release(conn, playbook.id)  # resumed by a person: this tick runs unchecked, once
                ev = evaluate(conn, playbook, tick.now, tick.run_id, circuit=None if resumed else Circuit())
        doing = "advancing"
        if pause is None or pause.advance:
            with tick.store.transaction() as conn:
                # The channel's name goes on the ledger and audit rows of the emails planned.
                adv = advance(conn, playbook, tick.now, tick.run_id, tick.channel.name, tick.project.versions)
    except Exception as exc:  # one playbook's failure must not stop the tick's others
        summary.error = f"{doing}: {describe_error(exc)}"
        _report_failure(tick, playbook, summary.error)
    summary.fill(ev, adv)
    return summary


def dispatch_stage(tick: Tick, batch: int = DISPATCH_BATCH) -> DispatchResult | None:
    """Claim one batch of planned messages, tasks and webhooks and deliver it, committing each
    window's outcomes as they are known; None when nothing is left to claim (the send times
    still held are then given back).

    Whatever fails after the claim (a missing concurrency limit, a lost connection) releases the
    rows still claimed under it, back to `planned`, then raises: nothing waits for an expiry."""
    token = uuid.uuid4().hex  # this batch's claim: delivery touches only rows still held under it
    ranks = priorities(tick.project)
    wall = wall_clock(tick.wall_clock)
    with tick.store.transaction() as conn:
        ids = claim(
            conn,
            batch,
            tick.now,
            playbook_ids=tick.playbook_ids,
            token=token,
            priorities=ranks,
            claimed_at=wall,
        )
    if not ids:
        tick.release_send_times()
        return None
    try:
        with tick.store.session() as (conn, commit):
            return deliver(conn, ids, tick.dispatch(), now=tick.now, run_id=tick.run_id, commit=commit, token=token)
    except BaseException as exc:
        _release(tick, token, exc)
        raise


def dispatch_processes_stage(tick: Tick) -> DispatchResult | None:
    """Every dispatch batch of the tick, in `tick.dispatchers` processes (their counts summed,
    each process's kept: `engine.tick.dispatchers.ProcessesResult`); None when nothing was claimed."""
    from engine.tick.dispatchers import dispatch_processes_stage as in_processes  # it builds on this module

    return in_processes(tick)


def outbox_index_stage(tick: Tick) -> Path | None:
    """Rewrite the outbox's `index.html` (live ticks with the outbox channel only)."""
    if tick.outbox is None or tick.store.dry:
        return None
    return OutboxChannel(tick.outbox).write_index()


TICK_STAGES: tuple[Stage, ...] = (
    Stage("reconcile", "tick", reconcile_stage),
    Stage("health", "tick", health_stage),
    Stage("evaluate-and-advance", "playbook", plan_stage),
    Stage("dispatch-batch", "batches", dispatch_stage, Stage("dispatch-processes", "tick", dispatch_processes_stage)),
    Stage("outbox-index", "tick", outbox_index_stage),
)
"""A tick's stages in order. Everything that runs a tick walks this list (`run_tick`)."""


def direct(stage: Stage, *args: Any) -> Any:
    """Run a stage in this process (the `call` of tests, simulations and dry runs)."""
    return stage.run(*args)


def run_tick(tick: Tick, call: Callable[..., Any] = direct) -> dict[str, PlaybookSummary]:
    """Every stage of `TICK_STAGES` in order, each through `call(stage, *args)`; the summaries
    per playbook (planning's counts, then every dispatch batch's added)."""
    summaries = {pid: PlaybookSummary(pid) for pid in tick.playbook_ids}
    for stage in TICK_STAGES:
        if stage.scope == "tick":
            call(stage, tick)
        elif stage.scope == "playbook":
            for pid in tick.playbook_ids:
                summaries[pid] = call(stage, tick, pid)
        elif stage.scale_out is not None and tick.dispatchers > 1 and not tick.store.dry:
            if (result := call(stage.scale_out, tick)) is not None:
                merge(summaries, result)
        else:
            while (result := call(stage, tick)) is not None:
                merge(summaries, result)
    return summaries


def complete_settings(settings: DispatchSettings, project: Project, store: Store) -> DispatchSettings:
    """`settings` with what the project says where they say nothing: unsubscribe links, the
    sending policy of `touchflow.yaml`, and the global rate's keeper (none in a dry run)."""
    policy = settings.policy or project.delivery.policy
    limiter = settings.limiter or store.limiter(policy)
    approvals = settings.approvals or project.delivery.approvals == "required"
    return replace(settings, links=settings.links or project.links, policy=policy, limiter=limiter, approvals=approvals)


def priorities(project: Project) -> dict[str, int]:
    """Playbook id → its `priority`, for claiming the higher ones first."""
    return {p.id: p.spec.priority for p in project.playbooks}


def team_sender(project: Project) -> tuple[str, str]:
    """The project's team sender (name, address), from `touchflow.yaml`."""
    return project.delivery.team_sender.name, project.delivery.team_sender.email


def _release(tick: Tick, token: str, exc: BaseException) -> None:
    """Put a failed batch's claimed rows back in the queue, in a transaction of its own (the
    batch's may be unusable); a store that refuses leaves them to expire by the wall clock."""
    try:
        with tick.store.transaction() as conn:
            released = release_claim(conn, token, tick.now)
        log.warning("dispatch batch failed (%s): %d claimed rows back in the queue", describe_error(exc), released)
    except Exception as again:
        log.error("a failed batch's claim could not be released: %s", describe_error(again))


def _report_failure(tick: Tick, playbook: CompiledPlaybook, error: str) -> None:
    """Log and audit a playbook's failure, in a transaction of its own (the stage's is rolled back;
    on PostgreSQL it could not be used any more)."""
    log.error("playbook '%s' failed while %s", playbook.id, error)
    row = audit_row(
        at=tick.now,
        run_id=tick.run_id,
        playbook_id=playbook.id,
        playbook_version=playbook.version,
        decision=Decision.FAILED,
        reason=Reason.PLAYBOOK_FAILED,
        detail=error,
    )
    try:
        with tick.store.transaction() as conn:
            record(conn, [row])
    except Exception as exc:  # the store itself is failing: the log and the summary still say it
        log.error("the failure of playbook '%s' could not be audited: %s", playbook.id, describe_error(exc))
