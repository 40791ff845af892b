"""The advance stage's driver: move due enrollments through their steps and plan deliveries.

For a batch of due enrollments (at most BATCH_SIZE, claimed with SKIP LOCKED on PostgreSQL):

1. each enrollment runs on the version it entered with, or follows the playbook's `versions`
   policy when the file changed (continue / migrate by step id / exit);
2. goals and exits are checked — one statement per condition for the whole batch — and end
   the journey as *converted* or *exited*;
3. step conditions (`if`, `branch`) are evaluated for the batch the same way;
4. each enrollment walks its steps until a wait or the end, each step by its kind's handler
   (`engine/plan/steps/`). Emails, tasks and webhooks become ledger rows with a deterministic,
   unique send key — written before anything is delivered — so advancing twice (overlapping
   ticks, a retry) plans nothing twice. Updates change the store directly. The enrollment's move
   is guarded by its old step index.

Everything is written in the caller's transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, update

from engine.audit import Decision, Reason, record
from engine.compile import CompiledPlaybook
from engine.compile.journey import goal_reached, holding
from engine.plan.batch import (
    AdvanceResult,
    Batch,
    Plan,
    Running,
    Walk,
    due,
    end,
    places,
    recipients,
    suppressed,
)
from engine.plan.steps import HANDLERS, apply_update
from engine.plan.versions import SentInEnrollment, VersionStore, migrated_index
from engine.spec import BranchStep
from engine.store.bulk import conflict_insert
from engine.store.models import enrollments, ledger

BATCH_SIZE = 500
MAX_STEPS_PER_TICK = 100
"""A journey that runs this many steps in one tick without waiting is looping: it is exited."""


def advance(
    conn: Connection,
    playbook: CompiledPlaybook,
    now: datetime,
    run_id: str,
    channel: str,
    versions: VersionStore | None = None,
) -> AdvanceResult:
    """Advance every due enrollment of `playbook` at `now`, in batches. The caller commits."""
    store = versions or VersionStore({})
    total = AdvanceResult()
    steps_taken: dict[int, int] = defaultdict(int)
    while True:
        batch_due = due(conn, playbook, now, BATCH_SIZE)
        if not batch_due:
            return total
        plan = Plan()
        running = _resolve_versions(conn, plan, playbook, store, batch_due, now, run_id)
        running = _goals_and_exits(conn, plan, running, now, run_id)
        people, unreadable = recipients(conn, playbook, [e for e, _, _ in running])
        batch = Batch(
            now=now,
            run_id=run_id,
            channel=channel,
            recipients=people,
            suppressed=suppressed(conn, people),
            unreadable=unreadable,
            places=places(conn, playbook, [e for e, _, _ in running]),
            holds=_conditions(conn, running, now),
            steps_taken=steps_taken,
            sent=SentInEnrollment.load(conn, [e for e, c, _ in running if any(s.kind == "email" for s in c.steps)]),
        )
        for enrollment, compiled, start in running:
            _walk(Walk(plan, batch, compiled, enrollment), start)
        _apply(conn, plan, now)
        total.add(plan.result)


# --- before the walk ----------------------------------------------------------------------------


def _resolve_versions(
    conn: Connection,
    plan: Plan,
    current: CompiledPlaybook,
    store: VersionStore,
    due: Sequence[Row[Any]],
    now: datetime,
    run_id: str,
) -> Running:
    """(enrollment, the playbook version it runs on, the step index to start at) for each one."""
    running: Running = []
    policy = current.spec.versions
    for enrollment in due:
        if enrollment.playbook_version == current.version:
            running.append((enrollment, current, enrollment.step_index))
            continue
        old = store.get(conn, current.id, enrollment.playbook_version)
        if policy.on_change == "exit":
            end(
                plan,
                enrollment,
                current,
                "exited",
                Reason.VERSION_CHANGED,
                f"playbook changed from {enrollment.playbook_version} to {current.version}",
                now,
                run_id,
            )
        elif policy.on_change == "continue" and old is not None:
            running.append((enrollment, old, enrollment.step_index))
        else:  # migrate (or continue without a record of the old version): move by step id
            index = migrated_index(current, old, enrollment.step_index, enrollment.step_id)
            if index is None:
                end(
                    plan,
                    enrollment,
                    current,
                    "exited",
                    Reason.STEP_REMOVED,
                    f"step '{enrollment.step_id}' is not in version {current.version}",
                    now,
                    run_id,
                )
            else:
                running.append((enrollment, current, index))
    return running


def _goals_and_exits(conn: Connection, plan: Plan, running: Running, now: datetime, run_id: str) -> Running:
    """End the enrollments whose goal is reached (converted) or whose exit holds (exited)."""
    by_version: dict[str, Running] = defaultdict(list)
    for item in running:
        by_version[item[1].version].append(item)
    ended: set[int] = set()
    for items in by_version.values():
        compiled = items[0][1]
        ids = [e.id for e, _, _ in items]
        spec = compiled.spec
        traits = compiled.traits
        reached = (
            set(conn.execute(goal_reached(spec.subject, spec.goal, ids, now, traits)).scalars()) if spec.goal else set()
        )
        leaving = (
            set(conn.execute(holding(spec.subject, spec.exit_, ids, now, traits)).scalars()) if spec.exit_ else set()
        )
        for enrollment, _, _ in items:
            if enrollment.id in reached:
                goal = spec.goal
                what = goal.event if goal and goal.event else "goal condition"
                end(plan, enrollment, compiled, "converted", Reason.GOAL_REACHED, f"{what} reached", now, run_id)
                ended.add(enrollment.id)
            elif enrollment.id in leaving:
                end(plan, enrollment, compiled, "exited", Reason.EXIT_CONDITION, "exit condition holds", now, run_id)
                ended.add(enrollment.id)
    return [item for item in running if item[0].id not in ended]


def _conditions(conn: Connection, running: Running, now: datetime) -> dict[tuple[str, str, str], set[int]]:
    """For every step with a condition (`if`, `branch`): which enrollments it holds for."""
    by_version: dict[str, Running] = defaultdict(list)
    for item in running:
        by_version[item[1].version].append(item)
    holds: dict[tuple[str, str, str], set[int]] = {}
    for version, items in by_version.items():
        compiled = items[0][1]
        ids = [e.id for e, _, start in items]
        for step in compiled.steps:
            conditions = {"if": step.spec.if_}
            if isinstance(step.spec, BranchStep):
                conditions["branch"] = step.spec.branch.if_
            for which, condition in conditions.items():
                if condition is not None:
                    query = holding(compiled.subject, condition, ids, now, compiled.traits)
                    holds[(version, step.id, which)] = set(conn.execute(query).scalars())
    return holds


# --- the walk -----------------------------------------------------------------------------------


def _walk(walk: Walk, start: int) -> None:
    """Run the enrollment's steps from `start` until one ends the walk (a wait, an update, an exit),
    the journey's end, or the loop guard."""
    steps = walk.playbook.steps
    steps_taken = walk.batch.steps_taken
    enrollment_id = walk.enrollment.id
    index = start
    while steps_taken[enrollment_id] < MAX_STEPS_PER_TICK:
        steps_taken[enrollment_id] += 1
        if index >= len(steps):
            walk.end("completed", Reason.JOURNEY_END, f"all {len(steps)} steps done", index)
            return
        step = steps[index]
        if step.spec.if_ is not None and not walk.holds(step, "if"):
            walk.audit(step, Decision.SKIPPED, Reason.CONDITION_FALSE, "step condition does not hold")
            index += 1
            continue
        following = HANDLERS[type(step.spec)](walk, step, step.spec, index)
        if following is None:
            return
        index = following
    walk.end("exited", Reason.LOOP, f"{MAX_STEPS_PER_TICK} steps without a wait")


# --- writing ------------------------------------------------------------------------------------


def _apply(conn: Connection, plan: Plan, now: datetime) -> None:
    """Move enrollments first, each guarded by its old step index, and write the ledger, audit and
    updates only for those that moved: a tick that lost the race for an enrollment writes nothing
    for it (SQLite reads without row locks, so two ticks can plan the same enrollment)."""
    moved = _move_enrollments(conn, plan.moves)
    if plan.ledger:
        rows = [r for r in plan.ledger if r["enrollment_id"] in moved]
        if rows:
            conn.execute(conflict_insert(conn, ledger).on_conflict_do_nothing(index_elements=["send_key"]), rows)
    record(conn, [a for a in plan.audit if a["enrollment_id"] in moved])
    for spec, enrollment_id, account_id, contact_id in plan.updates:
        if enrollment_id in moved:
            apply_update(conn, spec, account_id, contact_id)


def _move_enrollments(conn: Connection, moves: list[dict[str, Any]]) -> set[int]:
    """Apply the moves, each only if the enrollment is still where it was planned on; the ids
    that moved."""
    e = enrollments.c
    stmt = (
        update(enrollments)
        .where(and_(e.id == bindparam("b_id"), e.step_index == bindparam("b_old"), e.status == "active"))
        .values(
            step_index=bindparam("u_step_index"),
            step_id=bindparam("u_step_id"),
            status=bindparam("u_status"),
            next_run_at=bindparam("u_next_run_at"),
            updated_at=bindparam("u_updated_at"),
            playbook_version=bindparam("u_version"),
            outcome=bindparam("u_outcome"),
            ended_at=bindparam("u_ended_at"),
        )
    )
    return {m["b_id"] for m in moves if conn.execute(stmt, m).rowcount == 1}
