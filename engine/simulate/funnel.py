"""Why a playbook matched nobody: how many subjects are left after each of its conditions.

The order is the playbook's own: all subjects (accounts, or contacts with their account), then
each condition of the segment (the members of a top-level `all`, and each field of a field test,
one at a time, in the order written), then the trigger (a level condition's `all` split the same
way). Each count is cumulative — the subjects for which every condition so far holds — and runs as
one set-based COUNT on the scratch copy at the first tick, before any journey starts, so entry
rules (which need earlier enrollments) play no part. The first count that drops to 0 names the
condition that removed everyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, FromClause, and_, func, select, true

from engine.compile import CompiledPlaybook
from engine.compile.conditions import compile_condition, describe_condition
from engine.spec.conditions import AllOf, FieldCondition
from engine.spec.playbook import BecameTrueTrigger, DateTrigger, EventTrigger, ScheduleTrigger


@dataclass(frozen=True)
class FunnelStep:
    """A condition, and how many subjects are left once it and every one before it hold."""

    condition: str
    left: int


@dataclass(frozen=True)
class Funnel:
    """The conditions of one playbook in order, counted at `at`."""

    playbook: str
    at: datetime
    steps: tuple[FunnelStep, ...]


def parts(condition: Any) -> list[Any]:
    """A condition as the conjuncts it is made of: the members of an `all`, the fields of a
    field test one by one; anything else whole."""
    if isinstance(condition, AllOf):
        return [p for member in condition.all for p in parts(member)]
    if isinstance(condition, FieldCondition) and len(condition.root) > 1:
        return [FieldCondition({name: test}) for name, test in condition.root.items()]
    return [condition]


def funnel(conn: Connection, playbook: CompiledPlaybook, now: datetime) -> Funnel:
    """The cumulative counts of `playbook`'s conditions at `now` (see the module's docstring)."""
    ctx = playbook.context(now)
    base: FromClause = ctx.subject_table
    if ctx.subject_table is not ctx.account_table:
        base = ctx.subject_table.join(ctx.account_table, ctx.account_table.c.id == ctx.subject_table.c.account_id)
    subject_id = ctx.subject_table.c.id
    held: list[ColumnElement[bool]] = []
    steps = [FunnelStep(f"all {playbook.subject}s", _count(conn, base, subject_id, held))]
    segment = parts(playbook.spec.segment) if playbook.spec.segment is not None else []
    for cond in segment:
        held.append(compile_condition(cond, ctx))
        steps.append(FunnelStep(f"segment: {describe_condition(cond)}", _count(conn, base, subject_id, held)))
    trigger = playbook.spec.trigger
    if isinstance(trigger, DateTrigger | EventTrigger | ScheduleTrigger | BecameTrueTrigger):
        # One step: the trigger's firing predicate over its own FROM (an event trigger joins events).
        source = playbook.source(now)
        held.append(source.fires)
        steps.append(
            FunnelStep(f"trigger: {playbook.describe_trigger()}", _count(conn, source.from_, source.subject_id, held))
        )
    else:
        for cond in parts(trigger):
            held.append(compile_condition(cond, ctx))
            steps.append(FunnelStep(f"trigger: {describe_condition(cond)}", _count(conn, base, subject_id, held)))
    return Funnel(playbook.id, now, tuple(steps))


def _count(conn: Connection, from_: FromClause, subject_id: Any, held: list[ColumnElement[bool]]) -> int:
    stmt = select(func.count(func.distinct(subject_id))).select_from(from_).where(and_(true(), *held))
    return int(conn.execute(stmt).scalar_one())
