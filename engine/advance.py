"""Advancing journeys: move due enrollments through their steps and plan deliveries.

For a batch of due enrollments (at most BATCH_SIZE, claimed with SKIP LOCKED on PostgreSQL):

1. each enrollment runs on the version it entered with, or follows the playbook's `versions`
   policy when the file changed (continue / migrate by step id / exit);
2. goals and exits are checked — one statement per condition for the whole batch — and end
   the journey as *converted* or *exited*;
3. step conditions (`if`, `branch`) are evaluated for the batch the same way;
4. each enrollment walks its steps until a wait or the end. Emails, tasks and webhooks become
   ledger rows with a deterministic, unique send key — written before anything is delivered —
   so advancing twice (overlapping ticks, a retry) plans nothing twice. Updates change the
   store directly. The enrollment's move is guarded by its old step index.

Everything is written in the caller's transaction.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, select, update

from engine.addresses import email_problem
from engine.audit import Decision, Reason, audit_row, record
from engine.compile import CompiledPlaybook, CompiledStep
from engine.compile.journey import goal_reached, holding
from engine.experiments.assign import assign, experiment_id
from engine.journey_time import at_date, next_in_window, zone
from engine.spec import BranchStep, EmailStep, ExitStep, TaskStep, UpdateStep, WaitStep, WebhookStep
from engine.spec.steps import WaitForWindow, WaitUntil
from engine.store.bulk import conflict_insert
from engine.store.catalogue import resolve_field
from engine.store.models import accounts, contacts, enrollments, ledger
from engine.store.readable import read_rows
from engine.suppression import listed, reason_for
from engine.versions import SentInEnrollment, VersionStore, migrated_index

Running = list[tuple[Row[Any], CompiledPlaybook, int]]
"""(enrollment, the playbook version it runs on, the step index it starts at) per due enrollment."""

BATCH_SIZE = 500
MAX_STEPS_PER_TICK = 100
"""A journey that runs this many steps in one tick without waiting is looping: it is exited."""


@dataclass
class AdvanceResult:
    """What advancing one playbook planned and decided."""

    emails_planned: int = 0
    tasks_planned: int = 0
    webhooks_planned: int = 0
    skipped: int = 0
    waiting: int = 0
    completed: int = 0
    converted: int = 0
    exited: int = 0
    updated: int = 0

    def add(self, other: AdvanceResult) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def send_key(playbook_id: str, step_id: str, enrollment: Row[Any], recipient: str) -> str:
    """Deterministic key of one delivery: playbook, step, subject, trigger occurrence, recipient."""
    raw = "|".join(
        [playbook_id, step_id, enrollment.subject_type, str(enrollment.subject_id), enrollment.trigger_key, recipient]
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass
class _Plan:
    ledger: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    moves: list[dict[str, Any]] = field(default_factory=list)
    updates: list[tuple[UpdateStep, int, int, int | None]] = field(
        default_factory=list
    )  # step, enrollment, account, contact
    result: AdvanceResult = field(default_factory=AdvanceResult)


@dataclass
class _Batch:
    """What the walk needs to know about a batch, fetched set-based before walking."""

    now: datetime
    run_id: str
    channel: str
    recipients: dict[int, list[Row[Any]]]
    suppressed: dict[str, str]  # lower-cased address → why it must not be emailed
    unreadable: dict[int, str]  # contact id → what is wrong with its row (engine/store/readable.py)
    places: dict[int, dict[str, Any]]  # enrollment id → account/contact fields used by waits
    holds: dict[tuple[str, str, str], set[int]]  # (version, step id, "if"|"branch") → enrollments it holds for
    steps_taken: dict[int, int]  # per enrollment, across the rounds of this tick: a loop guard
    sent: SentInEnrollment = field(default_factory=SentInEnrollment)  # emails each recipient already has


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
        due = _due(conn, playbook, now)
        if not due:
            return total
        plan = _Plan()
        running = _resolve_versions(conn, plan, playbook, store, due, now, run_id)
        running = _goals_and_exits(conn, plan, running, now, run_id)
        recipients, unreadable = _recipients(conn, playbook, [e for e, _, _ in running])
        batch = _Batch(
            now=now,
            run_id=run_id,
            channel=channel,
            recipients=recipients,
            suppressed=_suppressed(conn, recipients),
            unreadable=unreadable,
            places=_places(conn, playbook, [e for e, _, _ in running]),
            holds=_conditions(conn, running, now),
            steps_taken=steps_taken,
            sent=SentInEnrollment.load(conn, [e for e, c, _ in running if any(s.kind == "email" for s in c.steps)]),
        )
        for enrollment, compiled, start in running:
            _walk(plan, batch, compiled, enrollment, start)
        _apply(conn, plan, now)
        total.add(plan.result)


# --- the batch --------------------------------------------------------------------------------


def _due(conn: Connection, playbook: CompiledPlaybook, now: datetime) -> Sequence[Row[Any]]:
    e = enrollments.c
    stmt = (
        select(
            e.id,
            e.subject_type,
            e.subject_id,
            e.account_id,
            e.trigger_key,
            e.step_index,
            e.step_id,
            e.playbook_version,
            e.enrolled_at,
        )
        .where(e.playbook_id == playbook.id, e.status == "active", e.next_run_at <= now)
        .order_by(e.id)
        .limit(BATCH_SIZE)
    )
    if conn.dialect.name == "postgresql":
        # Overlapping ticks take disjoint batches instead of waiting on each other.
        stmt = stmt.with_for_update(skip_locked=True)
    return conn.execute(stmt).all()


def _base(enrollment: Row[Any], compiled: CompiledPlaybook, now: datetime, run_id: str) -> dict[str, Any]:
    return {
        "at": now,
        "run_id": run_id,
        "playbook_id": compiled.id,
        "playbook_version": compiled.version,
        "enrollment_id": enrollment.id,
        "account_id": enrollment.account_id,
        "contact_id": enrollment.subject_id if enrollment.subject_type == "contact" else None,
    }


def _end(
    plan: _Plan,
    enrollment: Row[Any],
    compiled: CompiledPlaybook,
    status: str,
    reason: Reason,
    detail: str,
    now: datetime,
    run_id: str,
    index: int | None = None,
) -> None:
    decision = {"converted": Decision.CONVERTED, "exited": Decision.EXITED}.get(status, Decision.COMPLETED)
    # The step the journey ends at (an exit step), as the enrollment records it; none past the end.
    at_step = compiled.steps[index].id if index is not None and index < len(compiled.steps) else None
    plan.audit.append(
        audit_row(
            **_base(enrollment, compiled, now, run_id), step_id=at_step, decision=decision, reason=reason, detail=detail
        )
    )
    counter = {"converted": "converted", "exited": "exited"}.get(status, "completed")
    setattr(plan.result, counter, getattr(plan.result, counter) + 1)
    step_index = enrollment.step_index if index is None else index
    plan.moves.append(_move(enrollment, compiled, step_index, status, None, detail, now))


def _move(
    enrollment: Row[Any],
    compiled: CompiledPlaybook,
    index: int,
    status: str,
    next_run_at: datetime | None,
    outcome: str | None,
    now: datetime,
) -> dict[str, Any]:
    step = compiled.steps[index].id if index < len(compiled.steps) else None
    return {
        "b_id": enrollment.id,
        "b_old": enrollment.step_index,
        "u_step_index": index,
        "u_step_id": step,
        "u_status": status,
        "u_next_run_at": next_run_at,
        "u_updated_at": now,
        "u_version": compiled.version,
        "u_outcome": outcome,
        "u_ended_at": None if status == "active" else now,
    }


def _resolve_versions(
    conn: Connection,
    plan: _Plan,
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
            _end(
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
                _end(
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


def _goals_and_exits(conn: Connection, plan: _Plan, running: Running, now: datetime, run_id: str) -> Running:
    """End the enrollments whose goal is reached (converted) or whose exit holds (exited)."""
    by_version: dict[str, Running] = defaultdict(list)
    for item in running:
        by_version[item[1].version].append(item)
    ended: set[int] = set()
    for items in by_version.values():
        compiled = items[0][1]
        ids = [e.id for e, _, _ in items]
        spec = compiled.spec
        reached = set(conn.execute(goal_reached(spec.subject, spec.goal, ids, now)).scalars()) if spec.goal else set()
        leaving = set(conn.execute(holding(spec.subject, spec.exit_, ids, now)).scalars()) if spec.exit_ else set()
        for enrollment, _, _ in items:
            if enrollment.id in reached:
                goal = spec.goal
                what = goal.event if goal and goal.event else "goal condition"
                _end(plan, enrollment, compiled, "converted", Reason.GOAL_REACHED, f"{what} reached", now, run_id)
                ended.add(enrollment.id)
            elif enrollment.id in leaving:
                _end(plan, enrollment, compiled, "exited", Reason.EXIT_CONDITION, "exit condition holds", now, run_id)
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
                    query = holding(compiled.subject, condition, ids, now)
                    holds[(version, step.id, which)] = set(conn.execute(query).scalars())
    return holds


def _recipients(
    conn: Connection, playbook: CompiledPlaybook, due: Sequence[Row[Any]]
) -> tuple[dict[int, list[Row[Any]]], dict[int, str]]:
    """Contacts of the due subjects, keyed by account (or by contact for contact subjects), and
    what is wrong with the rows that cannot be read (each costs its own delivery only)."""
    if not due:
        return {}, {}
    c = contacts.c
    cols = (c.id, c.account_id, c.email, c.name, c.role)
    by_owner: dict[int, list[Row[Any]]] = defaultdict(list)
    if playbook.subject == "contact":
        read = read_rows(conn, select(*cols).where(c.id.in_([d.subject_id for d in due])), contacts)
        for row in read.rows:
            by_owner[row.id].append(row)
    else:
        account_ids = sorted({d.account_id for d in due})
        read = read_rows(conn, select(*cols).where(c.account_id.in_(account_ids)).order_by(c.id), contacts)
        for row in read.rows:
            by_owner[row.account_id].append(row)
    return by_owner, read.problems


def _suppressed(conn: Connection, recipients: dict[int, list[Row[Any]]]) -> dict[str, str]:
    """Which of the batch's recipients are on the suppression list, and why."""
    return listed(conn, (p.email or "" for people in recipients.values() for p in people))


def _places(conn: Connection, playbook: CompiledPlaybook, due: Sequence[Row[Any]]) -> dict[int, dict[str, Any]]:
    """Per enrollment: the account's (and contact's) row, for waits on dates and local windows, and
    under "problems" what is wrong with either row when it cannot be read (update steps skip it)."""
    if not due:
        return {}
    read = read_rows(conn, select(accounts).where(accounts.c.id.in_(sorted({d.account_id for d in due}))), accounts)
    account_rows = {r.id: dict(r._mapping) for r in read.rows}
    problems = {("account", i): p for i, p in read.problems.items()}
    contact_rows: dict[int, dict[str, Any]] = {}
    if playbook.subject == "contact":
        ids = sorted({d.subject_id for d in due})
        read = read_rows(conn, select(contacts).where(contacts.c.id.in_(ids)), contacts)
        contact_rows = {r.id: dict(r._mapping) for r in read.rows}
        problems.update({("contact", i): p for i, p in read.problems.items()})
    out = {}
    for d in due:
        out[d.id] = {"account": account_rows.get(d.account_id, {}), "contact": contact_rows.get(d.subject_id, {})}
        found = {"account": problems.get(("account", d.account_id)), "contact": problems.get(("contact", d.subject_id))}
        if any(found.values()):
            out[d.id]["problems"] = found
    return out


# --- the walk -----------------------------------------------------------------------------------


def _walk(plan: _Plan, batch: _Batch, compiled: CompiledPlaybook, enrollment: Row[Any], start: int) -> None:
    now, run_id = batch.now, batch.run_id
    base = _base(enrollment, compiled, now, run_id)
    index = start
    while batch.steps_taken[enrollment.id] < MAX_STEPS_PER_TICK:
        batch.steps_taken[enrollment.id] += 1
        if index >= len(compiled.steps):
            _end(
                plan,
                enrollment,
                compiled,
                "completed",
                Reason.JOURNEY_END,
                f"all {len(compiled.steps)} steps done",
                now,
                run_id,
                index,
            )
            return
        step = compiled.steps[index]
        spec = step.spec
        if spec.if_ is not None and enrollment.id not in batch.holds.get((compiled.version, step.id, "if"), set()):
            plan.audit.append(
                audit_row(
                    **base,
                    step_id=step.id,
                    decision=Decision.SKIPPED,
                    reason=Reason.CONDITION_FALSE,
                    detail="step condition does not hold",
                )
            )
            index += 1
            continue
        if isinstance(spec, WaitStep):
            until = _wait_until(spec, batch, enrollment)
            index += 1
            if until > now:
                plan.result.waiting += 1
                plan.audit.append(
                    audit_row(
                        **base,
                        step_id=step.id,
                        decision=Decision.WAITING,
                        reason=Reason.WAIT_STEP,
                        detail=f"until {until.isoformat()}",
                    )
                )
                plan.moves.append(_move(enrollment, compiled, index, "active", until, None, now))
                return
            continue
        if isinstance(spec, BranchStep):
            condition_holds = enrollment.id in batch.holds.get((compiled.version, step.id, "branch"), set())
            target = spec.branch.then if condition_holds else spec.branch.else_
            jump = compiled.index_of(target) if target else None
            plan.audit.append(
                audit_row(
                    **base,
                    step_id=step.id,
                    decision=Decision.BRANCHED,
                    reason=Reason.BRANCH,
                    detail=f"condition {'holds' if condition_holds else 'does not hold'}: "
                    f"go to {target or 'next step'}",
                )
            )
            index = jump if jump is not None else index + 1
            continue
        if isinstance(spec, ExitStep):
            _end(plan, enrollment, compiled, "exited", Reason.EXIT_STEP, spec.exit, now, run_id, index)
            return
        if isinstance(spec, EmailStep):
            _plan_email(plan, compiled, step, spec, enrollment, batch, base)
        elif isinstance(spec, TaskStep):
            _plan_action(plan, compiled, step, enrollment, base, "task", {"task": spec.task.model_dump(mode="json")})
            plan.result.tasks_planned += 1
        elif isinstance(spec, WebhookStep):
            _plan_action(
                plan, compiled, step, enrollment, base, "webhook", {"webhook": spec.webhook.model_dump(mode="json")}
            )
            plan.result.webhooks_planned += 1
        elif isinstance(spec, UpdateStep) and (
            unreadable := batch.places.get(enrollment.id, {}).get("problems", {}).get(spec.update.target)
        ):
            # Never write to a row that cannot be read: traits would be rebuilt from nothing.
            plan.audit.append(
                audit_row(
                    **base, step_id=step.id, decision=Decision.SKIPPED, reason=Reason.UNREADABLE_ROW, detail=unreadable
                )
            )
            plan.result.skipped += 1
        elif isinstance(spec, UpdateStep):
            contact = enrollment.subject_id if enrollment.subject_type == "contact" else None
            plan.updates.append((spec, enrollment.id, enrollment.account_id, contact))
            plan.audit.append(
                audit_row(
                    **base,
                    step_id=step.id,
                    decision=Decision.UPDATED,
                    reason=Reason.UPDATE_STEP,
                    detail=_describe_update(spec),
                )
            )
            plan.result.updated += 1
            # Yield right after an update: the enrollment is due again at once, and the next round
            # of this tick checks goals, exits and step conditions against the updated data.
            plan.moves.append(_move(enrollment, compiled, index + 1, "active", now, None, now))
            return
        index += 1
    _end(plan, enrollment, compiled, "exited", Reason.LOOP, f"{MAX_STEPS_PER_TICK} steps without a wait", now, run_id)


def _wait_until(spec: WaitStep, batch: _Batch, enrollment: Row[Any]) -> datetime:
    wait = spec.wait
    place = batch.places.get(enrollment.id, {"account": {}, "contact": {}})
    if isinstance(wait, WaitUntil):
        info = resolve_field(wait.until, "contact" if enrollment.subject_type == "contact" else "account")
        row = place["contact"] if info and info.table == "contact" else place["account"]
        moment = at_date(row.get(info.name) if info else None, wait.offset)
        return moment or batch.now
    if isinstance(wait, WaitForWindow):
        tz = zone(place["contact"].get("timezone") or place["account"].get("timezone"))
        return next_in_window(batch.now, tz, wait.window)
    return batch.now + wait


def _plan_email(
    plan: _Plan,
    playbook: CompiledPlaybook,
    step: CompiledStep,
    spec: EmailStep,
    enrollment: Row[Any],
    batch: _Batch,
    base: dict[str, Any],
) -> None:
    owner = enrollment.subject_id if enrollment.subject_type == "contact" else enrollment.account_id
    people = batch.recipients.get(owner, [])
    if spec.email.to is not None:
        roles = set(spec.email.to.role)
        people = [p for p in people if p.role in roles]
    if not people:
        plan.result.skipped += 1
        wanted = ", ".join(spec.email.to.role) if spec.email.to else "the contact"
        plan.audit.append(
            audit_row(
                **base,
                step_id=step.id,
                channel=batch.channel,
                decision=Decision.SKIPPED,
                reason=Reason.NO_RECIPIENTS,
                detail=f"no contact with role {wanted}",
            )
        )
        return
    experiment = spec.email.experiment
    arm = None
    subject = f"{enrollment.subject_type}:{enrollment.subject_id}"
    if experiment is not None:
        arm = assign(experiment, experiment_id(experiment, playbook.id, step.id), subject)
    held_by = _held_out_by(playbook, subject)
    if held_by is not None and (arm is None or not arm.holdout):
        # A holdout measures sending nothing at all: its subjects get none of this playbook's
        # emails, the later ones (a follow-up, a reminder) included.
        for person in people:
            key = send_key(playbook.id, step.id, enrollment, f"contact:{person.id}")
            _hold_out(plan, step, person, key, held_by, enrollment, playbook, batch, base)
        return
    # `step_template` is what the step sends whatever the arm: what a later version must not repeat.
    template = spec.email.template
    payload: dict[str, Any] = {"template": template, "from": spec.email.from_, "step_template": template}
    not_before = None
    if arm is not None:
        # The arm's overrides travel in the payload, like the step itself: dispatch reads no file.
        payload |= {"template": arm.template or template, "from": arm.from_ or spec.email.from_}
        if arm.subject is not None:
            payload["subject"] = arm.subject
        if arm.delay is not None:
            not_before = batch.now + arm.delay
    for person in people:
        key = send_key(playbook.id, step.id, enrollment, f"contact:{person.id}")
        if arm is not None and arm.holdout:
            _hold_out(plan, step, person, key, arm.id, enrollment, playbook, batch, base)
            continue
        problem = email_problem(person.email)
        why_not = batch.suppressed.get((person.email or "").strip().lower())
        reason = Reason.INVALID_EMAIL
        if person.id in batch.unreadable:  # a contact row that cannot be read costs its own delivery
            problem, reason = batch.unreadable[person.id], Reason.UNREADABLE_ROW
        if problem is None and why_not is not None:
            problem, reason = (
                f"{person.email} is on the suppression list ({why_not})",
                reason_for(why_not),
            )
        if already := batch.sent.earlier(playbook, step, enrollment.id, person.id):
            # An edit gave a step that already sent this a new id (and so a new send key).
            problem, reason = (
                f"the recipient already has '{spec.email.template}' in this enrollment "
                f"(step {', '.join(repr(s) for s in already)}): not sent again",
                Reason.ALREADY_SENT_IN_ENROLLMENT,
            )
        plan.ledger.append(
            {
                "send_key": key,
                "kind": "email",
                "channel": batch.channel,
                "status": "skipped" if problem else "planned",
                "playbook_id": playbook.id,
                "playbook_version": playbook.version,
                "step_id": step.id,
                "enrollment_id": enrollment.id,
                "account_id": enrollment.account_id,
                "contact_id": person.id,
                "payload": payload,
                "variant": arm.id if arm is not None else None,
                "not_before": not_before,
                "error": problem,
                "created_at": batch.now,
                "updated_at": batch.now,
            }
        )
        if problem:
            plan.result.skipped += 1
            plan.audit.append(
                {
                    **audit_row(
                        **base,
                        step_id=step.id,
                        channel=batch.channel,
                        decision=Decision.SKIPPED,
                        reason=reason,
                        detail=problem,
                        send_key=key,
                        variant=arm.id if arm is not None else None,
                    ),
                    "contact_id": person.id,
                }
            )
        else:
            plan.result.emails_planned += 1
            batch.sent.add(enrollment.id, person.id, step.id, spec.email.template)


def _held_out_by(playbook: CompiledPlaybook, subject: str) -> str | None:
    """The holdout arm `subject` falls in, in any experiment of the playbook (assignment is a pure
    function of the experiment and the subject, so no lookup is needed)."""
    for step in playbook.steps:
        experiment = step.spec.email.experiment if isinstance(step.spec, EmailStep) else None
        if experiment is not None and any(a.holdout for a in experiment.arms):
            arm = assign(experiment, experiment_id(experiment, playbook.id, step.id), subject)
            if arm.holdout:
                return arm.id
    return None


def _hold_out(
    plan: _Plan,
    step: CompiledStep,
    person: Row[Any],
    key: str,
    arm: str,
    enrollment: Row[Any],
    playbook: CompiledPlaybook,
    batch: _Batch,
    base: dict[str, Any],
) -> None:
    """A holdout recipient: a ledger row that never goes out (`held_out`), tracked for the report."""
    plan.ledger.append(
        {
            "send_key": key,
            "kind": "email",
            "channel": batch.channel,
            "status": "held_out",
            "playbook_id": playbook.id,
            "playbook_version": playbook.version,
            "step_id": step.id,
            "enrollment_id": enrollment.id,
            "account_id": enrollment.account_id,
            "contact_id": person.id,
            "payload": {},
            "variant": arm,
            "not_before": None,
            "error": None,
            "created_at": batch.now,
            "updated_at": batch.now,
        }
    )
    plan.audit.append(
        {
            **audit_row(
                **base,
                step_id=step.id,
                channel=batch.channel,
                decision=Decision.SKIPPED,
                reason=Reason.HOLDOUT,
                detail=f"holdout arm '{arm}': receives none of this playbook's emails, tracked for the experiment",
                send_key=key,
                variant=arm,
            ),
            "contact_id": person.id,
        }
    )


def _plan_action(
    plan: _Plan,
    playbook: CompiledPlaybook,
    step: CompiledStep,
    enrollment: Row[Any],
    base: dict[str, Any],
    kind: str,
    payload: dict[str, Any],
) -> None:
    # The action's spec travels in the payload: dispatch needs no playbook file of that version.
    plan.ledger.append(
        {
            "send_key": send_key(playbook.id, step.id, enrollment, kind),
            "kind": kind,
            "channel": kind,
            "status": "planned",
            "playbook_id": playbook.id,
            "playbook_version": playbook.version,
            "step_id": step.id,
            "enrollment_id": enrollment.id,
            "account_id": enrollment.account_id,
            "contact_id": base["contact_id"],
            "payload": payload,
            "variant": None,
            "not_before": None,
            "error": None,
            "created_at": base["at"],
            "updated_at": base["at"],
        }
    )


def _describe_update(spec: UpdateStep) -> str:
    u = spec.update
    parts = [f"{k}={v!r}" for k, v in u.set.items()] + [f"{k} cleared" for k in u.clear]
    parts += [f"tag +{t}" for t in u.tag] + [f"tag -{t}" for t in u.untag]
    return f"{u.target}: " + ", ".join(parts)


# --- writing ------------------------------------------------------------------------------------


def _apply(conn: Connection, plan: _Plan, now: datetime) -> None:
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
            _apply_update(conn, spec, account_id, contact_id)


def _move_enrollments(conn: Connection, moves: list[dict[str, Any]]) -> set[int]:
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


def _apply_update(conn: Connection, spec: UpdateStep, account_id: int, contact_id: int | None) -> None:
    u = spec.update
    table = contacts if u.target == "contact" else accounts
    row_id = contact_id if u.target == "contact" and contact_id is not None else account_id
    values: dict[str, Any] = {}
    traits: dict[str, Any] | None = None
    for name, value in [*u.set.items(), *((n, None) for n in u.clear)]:
        if name.startswith("traits."):
            if traits is None:
                traits = dict(
                    conn.execute(select(table.c.traits).where(table.c.id == row_id)).scalar_one_or_none() or {}
                )
            key = name.removeprefix("traits.")
            if value is None:
                traits.pop(key, None)
            else:
                traits[key] = value
        else:
            values[name] = value
    if u.tag or u.untag:
        if traits is None:
            traits = dict(conn.execute(select(table.c.traits).where(table.c.id == row_id)).scalar_one_or_none() or {})
        tags = [t for t in traits.get("tags", []) if t not in u.untag]
        traits["tags"] = tags + [t for t in u.tag if t not in tags]
    if traits is not None:
        values["traits"] = traits
    conn.execute(update(table).where(table.c.id == row_id).values(**values))
