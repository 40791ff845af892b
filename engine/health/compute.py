"""Scoring days into `health_history`, and reading the scores back.

A day is scored once: `health_history`'s key is (account_id, computed_on), so the tick's daily
stage writes the day's scores the first time it runs that day and leaves them alone after (the
scores of a day do not move under a playbook halfway through it). `replace=True` recomputes a
day (past days for the backtest, a changed model).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, exists, func, select

from engine.health.spec import HealthSpec
from engine.health.sql import insert_scores
from engine.store.models import health_history


def compute_day(conn: Connection, spec: HealthSpec, now: datetime, *, replace: bool = False) -> int | None:
    """Score every account on `now`'s day (what happened up to `now`); the rows written, or None
    when the day was already scored and `replace` is false."""
    day = now.date()
    if replace:
        conn.execute(delete(health_history).where(health_history.c.computed_on == day))
    elif conn.execute(select(exists().where(health_history.c.computed_on == day))).scalar():
        return None
    conn.execute(insert_scores(spec, now))
    # Counted, not the cursor's rowcount: drivers do not all report it for INSERT … SELECT.
    written: int = conn.execute(
        select(func.count()).select_from(health_history).where(health_history.c.computed_on == day)
    ).scalar_one()
    return written


def past_days(start: date, end: date, every: timedelta) -> Iterator[datetime]:
    """The moments to score past days at: the end of each day from `start` to `end`, `every` apart."""
    day = start
    step = max(1, every.days)
    while day <= end:
        yield datetime.combine(day, datetime.max.time()).replace(microsecond=0)
        day += timedelta(days=step)


@dataclass(frozen=True)
class Score:
    """An account's latest score: the day, the score, the band, and each component's value,
    points and why."""

    account_id: int
    computed_on: date
    score: float
    band: str
    components: dict[str, Any]

    def points(self) -> dict[str, float | None]:
        """Component name → its points."""
        return {name: _number(part, "points") for name, part in self.components.items()}


def latest_day(conn: Connection, now: datetime) -> date | None:
    """The latest scored day at or before `now`."""
    day: date | None = conn.execute(
        select(func.max(health_history.c.computed_on)).where(health_history.c.computed_on <= now.date())
    ).scalar()
    return day


def scores_on(
    conn: Connection, day: date, *, account_id: int | None = None, limit: int | None = None, offset: int = 0
) -> list[Score]:
    """The scores of `day`, lowest first (those to act on), or one account's."""
    h = health_history
    query = select(h.c.account_id, h.c.computed_on, h.c.score, h.c.band, h.c.components).where(h.c.computed_on == day)
    if account_id is not None:
        query = query.where(h.c.account_id == account_id)
    query = query.order_by(h.c.score, h.c.account_id).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return [
        Score(
            r.account_id, r.computed_on, float(r.score), r.band, r.components if isinstance(r.components, dict) else {}
        )
        for r in conn.execute(query)
    ]


@dataclass(frozen=True)
class DayBands:
    """One scored day of a trend: the mean score and the count of each band."""

    day: date
    mean: float
    bands: dict[str, int]


def daily_trend(conn: Connection, last: date, days: int) -> list[DayBands]:
    """The scored days from `days` before `last` (excluded) to `last`, oldest first: each day's
    mean score over every account scored that day and the count of each band.

    One grouped query (day × band), folded per day here: a day never scored is absent, not a day
    of zeros, so a chart does not draw a cliff where the tick did not run."""
    h = health_history
    rows = conn.execute(
        select(h.c.computed_on, h.c.band, func.count(), func.sum(h.c.score))
        .where(h.c.computed_on > last - timedelta(days=days), h.c.computed_on <= last)
        .group_by(h.c.computed_on, h.c.band)
        .order_by(h.c.computed_on)
    )
    counts: dict[date, dict[str, int]] = defaultdict(dict)
    sums: dict[date, float] = defaultdict(float)
    for day, band, n, total in rows:
        counts[day][band] = int(n)
        sums[day] += float(total or 0)
    return [DayBands(d, sums[d] / sum(c.values()), c) for d, c in sorted(counts.items())]


def explain(score: Score, spec: HealthSpec | None) -> list[str]:
    """One line per component: its value, points, weight and why; then the score and band."""
    lines = []
    for name, part in score.components.items():
        component = spec.components.get(name) if spec else None
        label = (component.label if component and component.label else name.replace("_", " ").capitalize()) + ":"
        value, points = _number(part, "value"), _number(part, "points")
        why = part.get("why") if isinstance(part, dict) else None
        shown = "no value" if value is None else f"value {value:g}"
        rule = f"value {why}" if why and why not in ("no value", "no rule met") else why or ""
        lines.append(f"{label:<16} {shown:<14} → {_show(points):>5} points  ({rule})")
    lines.append(f"{'score:':<16} {score.score:.1f} ({score.band}) on {score.computed_on.isoformat()}")
    return lines


def _number(part: Any, key: str) -> float | None:
    value = part.get(key) if isinstance(part, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _show(points: float | None) -> str:
    return "-" if points is None else f"{points:g}"
