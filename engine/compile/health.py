"""`health:` conditions → SQL over `health_history`: the latest score of each account at or before
today (one grouped pass, joined back on the table's key), its band, a component's points read from
the stored JSON, and the drop from the highest of a window.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select

from engine.compile.sql_functions import json_number
from engine.spec.base import format_duration
from engine.spec.conditions import HealthTest
from engine.store.models import health_history


def health_condition(h: HealthTest, subject_account: ColumnElement[Any], today: date) -> ColumnElement[bool]:
    """The subject's account's latest `health_history` row at or before `today` passes the test."""

    def measured(table: Any) -> ColumnElement[Any]:
        if h.component is None:
            score: ColumnElement[Any] = table.c.score
            return score
        return json_number(table.c.components[(h.component, "points")])

    days = health_history.alias("health_days")
    latest = (
        select(days.c.account_id.label("account_id"), func.max(days.c.computed_on).label("day"))
        .where(days.c.computed_on <= today)
        .group_by(days.c.account_id)
        .subquery("health_latest")
    )
    current = health_history.alias("health_now")
    source: Any = current.join(
        latest, and_(current.c.account_id == latest.c.account_id, current.c.computed_on == latest.c.day)
    )
    value = measured(current)
    tests: list[ColumnElement[bool]] = []
    if h.below is not None:
        tests.append(value < h.below)
    if h.above is not None:
        tests.append(value > h.above)
    if h.band is not None:
        tests.append(current.c.band.in_([h.band] if isinstance(h.band, str) else h.band))
    if h.dropped_by is not None and h.within is not None:
        past = health_history.alias("health_past")
        peak = (
            select(past.c.account_id.label("account_id"), func.max(measured(past)).label("peak"))
            .where(past.c.computed_on >= today - h.within, past.c.computed_on <= today)
            .group_by(past.c.account_id)
            .subquery("health_peak")
        )
        source = source.join(peak, peak.c.account_id == current.c.account_id)
        tests.append(value <= peak.c.peak - h.dropped_by)
    return subject_account.in_(select(current.c.account_id).select_from(source).where(*tests))


def describe_health(h: HealthTest) -> str:
    """The health test in words, for the audit."""
    what = f"health {h.component} points" if h.component else "health"
    parts = [f"below {h.below:g}" if h.below is not None else "", f"above {h.above:g}" if h.above is not None else ""]
    if h.band is not None:
        parts.append(f"band {h.band if isinstance(h.band, str) else ' or '.join(h.band)}")
    if h.dropped_by is not None and h.within is not None:
        parts.append(f"dropped {h.dropped_by:g}+ in {format_duration(h.within)}")
    return f"{what} " + " and ".join(p for p in parts if p)
