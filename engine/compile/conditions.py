"""Conditions → SQLAlchemy boolean expressions over the subject's row, its account and events.

A fixed table of operators; values are always bound parameters, never SQL text. Event windows
are shaped for the indexes in the store: EXISTS / NOT EXISTS correlated on
events(account_id|contact_id, name, occurred_at), and IN (… GROUP BY … HAVING) for counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Table, and_, exists, false, func, not_, or_, select, true

from engine.spec.base import format_duration
from engine.spec.conditions import (
    AllOf,
    AnyOf,
    EventsCondition,
    FieldCondition,
    FieldOps,
    NoEventsCondition,
    NotOf,
)
from engine.store.catalogue import resolve_field
from engine.store.models import events

Subject = Literal["account", "contact"]


@dataclass(frozen=True)
class SqlContext:
    """The tables a condition refers to, and the moment it is evaluated at."""

    subject: Subject
    subject_table: Table
    account_table: Table
    now: datetime

    def column(self, name: str) -> ColumnElement[Any]:
        info = resolve_field(name, self.subject)
        if info is None:  # validation rejects these first; this is a programming error
            raise KeyError(f"unknown field {name!r} for {self.subject} subjects")
        table = self.account_table if info.table == "account" else self.subject_table
        return table.c[info.name]

    def event_owner(self) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
        """(events column, subject column) that tie an event to the subject."""
        if self.subject == "contact":
            return events.c.contact_id, self.subject_table.c.id
        return events.c.account_id, self.subject_table.c.id


_OPS: dict[str, Callable[[ColumnElement[Any], Any], ColumnElement[bool]]] = {
    "eq": lambda c, v: c == v,
    "ne": lambda c, v: c != v,
    "lt": lambda c, v: c < v,
    "lte": lambda c, v: c <= v,
    "gt": lambda c, v: c > v,
    "gte": lambda c, v: c >= v,
    "in_": lambda c, v: c.in_(v),
    "not_in": lambda c, v: c.not_in(v),
    "exists": lambda c, v: c.is_not(None) if v else c.is_(None),
}


def compile_condition(cond: Any, ctx: SqlContext) -> ColumnElement[bool]:
    """The SQL predicate of a spec condition."""
    if isinstance(cond, AllOf):
        return and_(true(), *(compile_condition(c, ctx) for c in cond.all))
    if isinstance(cond, AnyOf):
        return or_(false(), *(compile_condition(c, ctx) for c in cond.any))
    if isinstance(cond, NotOf):
        return not_(compile_condition(cond.not_, ctx))
    if isinstance(cond, EventsCondition):
        return _events_at_least(ctx, cond.events.name, ctx.now - cond.events.within, cond.events.at_least)
    if isinstance(cond, NoEventsCondition):
        return not_(_events_at_least(ctx, cond.no_events.name, ctx.now - cond.no_events.within, 1))
    if isinstance(cond, FieldCondition):
        parts: list[ColumnElement[bool]] = []
        for name, test in cond.root.items():
            column = ctx.column(name)
            if isinstance(test, FieldOps):
                parts.extend(_OPS[op](column, getattr(test, op)) for op in sorted(test.model_fields_set))
            else:
                parts.append(column == test)
        return and_(*parts)
    raise TypeError(f"not a condition: {cond!r}")


def _events_at_least(ctx: SqlContext, name: str, since: datetime, count: int) -> ColumnElement[bool]:
    owner, subject_id = ctx.event_owner()
    in_window = and_(events.c.name == name, events.c.occurred_at > since, events.c.occurred_at <= ctx.now)
    if count == 1:
        return exists().where(owner == subject_id, in_window)
    counted = select(owner).where(in_window).group_by(owner).having(func.count() >= count)
    return subject_id.in_(counted)


def describe_condition(cond: Any) -> str:
    """A short English rendering for the audit: why a subject matched."""
    if isinstance(cond, AllOf):
        return " and ".join(_paren(describe_condition(c), c) for c in cond.all)
    if isinstance(cond, AnyOf):
        return " or ".join(_paren(describe_condition(c), c) for c in cond.any)
    if isinstance(cond, NotOf):
        return f"not ({describe_condition(cond.not_)})"
    if isinstance(cond, EventsCondition):
        w = cond.events
        return f"{w.at_least}+ {w.name} in {format_duration(w.within)}"
    if isinstance(cond, NoEventsCondition):
        return f"no {cond.no_events.name} in {format_duration(cond.no_events.within)}"
    if isinstance(cond, FieldCondition):
        parts = []
        for name, test in cond.root.items():
            if isinstance(test, FieldOps):
                for op in sorted(test.model_fields_set):
                    parts.append(f"{name} {op.rstrip('_')} {getattr(test, op)!r}")
            else:
                parts.append(f"{name} = {test!r}")
        return " and ".join(parts)
    return repr(cond)


def _paren(text: str, cond: Any) -> str:
    return f"({text})" if isinstance(cond, AllOf | AnyOf) else text
