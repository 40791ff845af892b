"""Triggers → where a subject's occurrence comes from, and its key.

Every trigger compiles to a `Source`: the FROM clause, the predicate that says a subject fires at
`now`, and the occurrence key that makes entering idempotent.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy import ColumnElement, Date, FromClause, String, and_, case, cast, extract, false, literal, or_, true

from engine.compile.conditions import SqlContext, compile_condition, property_filter
from engine.compile.sql_functions import date_key
from engine.spec.playbook import BecameTrueTrigger, DateTrigger, EventTrigger, Playbook, ScheduleTrigger
from engine.store.models import events


@dataclass(frozen=True)
class Source:
    """FROM clause, firing predicate, occurrence key and subject id column of a trigger at `now`."""

    from_: FromClause
    fires: ColumnElement[bool]
    key: ColumnElement[Any]
    subject_id: ColumnElement[Any]


def trigger_source(spec: Playbook, ctx: SqlContext, base: FromClause) -> Source:
    """The Source of `spec.trigger` over `base` (the subject table joined to accounts)."""
    trigger, now = spec.trigger, ctx.now
    subject_id = ctx.subject_table.c.id
    if isinstance(trigger, DateTrigger):
        column = ctx.column(trigger.date)
        if trigger.every_year:
            fires, key = _anniversary(column, trigger, now)
        else:
            key = date_key(column) if isinstance(column.type, Date) else cast(column, String)
            fires = _date_window(column, trigger, now)
        return Source(base, fires, key, subject_id)
    if isinstance(trigger, EventTrigger):
        e = trigger.event
        owner = events.c.contact_id if ctx.subject == "contact" else events.c.account_id
        fires = and_(
            events.c.name == e.name,
            events.c.occurred_at > now - e.within,
            events.c.occurred_at <= now,
            *property_filter(e.where, now),
        )
        return Source(base.join(events, owner == subject_id), fires, cast(events.c.id, String), subject_id)
    if isinstance(trigger, BecameTrueTrigger):
        # The edge (false → true) is found against condition_state by the evaluator; here: the level.
        return Source(base, compile_condition(trigger.became_true, ctx), literal(_minute(now), String), subject_id)
    if isinstance(trigger, ScheduleTrigger):
        fired = latest_fire(trigger, now)
        scheduled = true() if fired is not None else false()
        return Source(base, scheduled, literal(fired.isoformat() if fired else "", String), subject_id)
    key = literal(now.date().isoformat() if spec.entry.once_per is not None else "", String)
    return Source(base, compile_condition(trigger, ctx), key, subject_id)


def latest_fire(trigger: ScheduleTrigger, now: datetime) -> datetime | None:
    """The latest scheduled time at or before `now` (naive UTC), if within the catch-up window."""
    zone = ZoneInfo(trigger.schedule.timezone)
    local_now = now.replace(tzinfo=ZoneInfo("UTC")).astimezone(zone)
    it = croniter(trigger.schedule.cron, local_now + timedelta(seconds=1))
    fired_local: datetime = it.get_prev(datetime)
    fired = fired_local.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
    return fired if fired > now - trigger.schedule.window else None


def _minute(now: datetime) -> str:
    return now.replace(second=0, microsecond=0).isoformat(timespec="minutes")


def _date_window(column: ColumnElement[Any], trigger: DateTrigger, now: datetime) -> ColumnElement[bool]:
    # field + offset ∈ (now - window, now], rewritten so the column stands alone (index-friendly).
    if isinstance(column.type, Date):
        today: date = now.date()
        return and_(column > today - trigger.offset - trigger.window, column <= today - trigger.offset)
    return and_(column > now - trigger.offset - trigger.window, column <= now - trigger.offset)


def _anniversary(
    column: ColumnElement[Any], trigger: DateTrigger, now: datetime
) -> tuple[ColumnElement[bool], ColumnElement[Any]]:
    """The date's month and day fall on one of the window's days, at least a year later."""
    days = max(1, trigger.window.days)
    branches = []
    keys = []
    for back in range(days):
        target = (now - timedelta(days=back)).date() - trigger.offset
        same_day = and_(
            extract("month", column) == target.month,
            extract("day", column) == target.day,
            column < date(target.year, 1, 1),
        )
        if (target.month, target.day) == (2, 28) and not calendar.isleap(target.year):
            # A 29 February date has its anniversary on the 28th in common years.
            leap_day = and_(
                extract("month", column) == 2, extract("day", column) == 29, column < date(target.year, 1, 1)
            )
            same_day = or_(same_day, leap_day)
        branches.append(same_day)
        keys.append((same_day, literal(str(target.year), String)))
    return or_(*branches), case(*keys, else_=literal("", String))
