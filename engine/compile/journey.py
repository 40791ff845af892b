"""SQL about enrollments in flight: goals, exits and step conditions, for a batch at once.

Each returns the ids of the given enrollments for which the condition holds at `now`, in one
statement per condition per batch — never one query per customer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, select

from engine.compile.conditions import SqlContext, compile_condition, property_filter
from engine.compile.sql_functions import shifted
from engine.spec import Goal
from engine.spec.traits import NO_TRAITS, TraitTypes
from engine.store.models import accounts, contacts, enrollments, events


def _context(subject: str, now: datetime, traits: TraitTypes) -> SqlContext:
    subject_table = contacts if subject == "contact" else accounts
    return SqlContext(subject, subject_table, accounts, now, enrollment_table=enrollments, traits=traits)  # type: ignore[arg-type]


def holding(
    subject: str, condition: Any, ids: Sequence[int], now: datetime, traits: TraitTypes = NO_TRAITS
) -> Select[Any]:
    """SELECT the ids among `ids` of enrollments for which `condition` holds at `now`."""
    return _select(subject, compile_condition(condition, _context(subject, now, traits)), ids)


def goal_reached(
    subject: str, goal: Goal, ids: Sequence[int], now: datetime, traits: TraitTypes = NO_TRAITS
) -> Select[Any]:
    """SELECT the ids among `ids` of enrollments that reached `goal` by `now`."""
    ctx = _context(subject, now, traits)
    e = enrollments.c
    if goal.event is not None:
        owner, subject_side = ctx.owner("subject")
        in_time = [events.c.occurred_at > e.enrolled_at, events.c.occurred_at <= now]
        if goal.within is not None:
            in_time.append(events.c.occurred_at <= shifted(e.enrolled_at, int(goal.within.total_seconds())))
        reached: ColumnElement[bool] = exists().where(
            owner == subject_side, events.c.name == goal.event, *in_time, *property_filter(goal.where, now)
        )
    else:
        reached = compile_condition(goal.condition, ctx)
        if goal.within is not None:
            reached = and_(reached, e.enrolled_at >= now - goal.within)
    return _select(subject, reached, ids)


def _select(subject: str, predicate: ColumnElement[bool], ids: Sequence[int]) -> Select[Any]:
    e = enrollments.c
    if subject == "contact":
        source = enrollments.join(contacts, contacts.c.id == e.subject_id).join(
            accounts, accounts.c.id == contacts.c.account_id
        )
    else:
        source = enrollments.join(accounts, accounts.c.id == e.subject_id)
    return select(e.id).select_from(source).where(e.id.in_(list(ids)), predicate)
