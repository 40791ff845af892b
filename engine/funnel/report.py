"""The weekly funnel: per weekly cohort (accounts by the week their contract started), how many
reached each stage, the conversion from the stage before, and the bottleneck.

One statement for the whole report, set-based like a playbook's segment: every stage's condition
is compiled with the playbook language's compiler over `accounts`, summed per contract-start day
(and group); the days are folded into Monday-based weeks here (at most 7 × weeks × groups rows),
so no dialect-specific week arithmetic is needed. Stages are cumulative: an account counts at a
stage only when it also meets every earlier stage's condition, so counts never grow down the funnel.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, Integer, Label, and_, case, func, literal, select

from engine.compile.conditions import SqlContext, compile_condition, json_value
from engine.funnel.spec import Funnel
from engine.spec.traits import NO_TRAITS, TraitTypes
from engine.store.models import accounts

By = Literal["tier", "segment"]
NO_GROUP = "(none)"
"""The group of an account whose tier or segment is empty or unreadable."""


@dataclass(frozen=True)
class StageCount:
    """One week's (and group's) count at one stage."""

    week: date
    stage: str
    count: int
    conversion: float | None
    """count / the previous stage's count (the first stage: / the cohort); None when that is 0 or
    when the stage is not yet due for the cohort."""
    bottleneck: bool
    """The stage with the lowest conversion of its week and group (the earliest on a tie)."""
    previous: int = 0
    """The count conversion is measured against: the stage before's, or the cohort's."""
    by: By | None = None
    group: str | None = None
    due: bool = True
    """Whether the cohort is old enough to have reached the stage (its and every earlier stage's
    `due_after`); a stage not yet due is counted but not measured."""

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON lines and CSV print it: week, [tier|segment], stage, count, conversion, bottleneck."""
        row: dict[str, Any] = {"week": self.week.isoformat()}
        if self.by is not None:
            row[self.by] = self.group
        row.update(stage=self.stage, count=self.count, conversion=self.conversion, bottleneck=self.bottleneck)
        return row


def week_of(day: date) -> date:
    """The Monday of `day`'s week."""
    return day - timedelta(days=day.weekday())


def funnel_report(
    conn: Connection, funnel: Funnel, now: datetime, weeks: int, by: By | None = None, traits: TraitTypes = NO_TRAITS
) -> list[StageCount]:
    """Per cohort week (newest first; the current week included), group and stage, its count,
    conversion and whether it is the bottleneck. Weeks without accounts are listed with zero
    counts when not grouped; grouped, only the groups that have accounts that week appear."""
    if weeks < 1:
        raise ValueError(f"weeks must be at least 1, got {weeks}")
    first = week_of(now.date()) - timedelta(weeks=weeks - 1)
    ctx = SqlContext("account", accounts, accounts, now, traits=traits)
    reached: list[ColumnElement[bool]] = []
    sums: list[Label[Any]] = []
    for stage in funnel.stages:
        reached.append(compile_condition(stage.condition, ctx))
        sums.append(func.sum(case((and_(*reached), 1), else_=0)).label(f"s{len(sums)}"))
    group = _group_column(by)
    query = (
        select(accounts.c.contract_start, group, func.count().label("cohort"), *sums)
        .where(accounts.c.contract_start >= first, accounts.c.contract_start <= now.date())
        .group_by(accounts.c.contract_start, group)
    )
    totals: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0] * (len(funnel.stages) + 1))
    for row in conn.execute(query):
        start = row[0] if isinstance(row[0], date) else date.fromisoformat(str(row[0]))
        bucket = totals[(week_of(start), row[1] or NO_GROUP if by else "")]
        for i, value in enumerate(row[2:]):
            bucket[i] += int(value or 0)
    out: list[StageCount] = []
    stage_ids = [s.id for s in funnel.stages]
    for index in range(weeks):
        week = first + timedelta(weeks=weeks - 1 - index)
        due = _due(funnel, now.date() - week)
        groups = sorted(g for (w, g) in totals if w == week) if by else [""]
        for name in groups:
            counts = totals.get((week, name), [0] * (len(stage_ids) + 1))
            out.extend(_week_rows(week, stage_ids, counts, by, name if by else None, due))
    return out


def _due(funnel: Funnel, age: timedelta) -> list[bool]:
    """Per stage, whether a cohort of `age` (from its Monday) can have reached it: it is old
    enough for that stage's `due_after` and every earlier stage's (stages are cumulative)."""
    due, out = True, []
    for stage in funnel.stages:
        due = due and (stage.due_after is None or age >= stage.due_after)
        out.append(due)
    return out


def _group_column(by: By | None) -> ColumnElement[Any]:
    """The column a report is split by; a constant when it is not."""
    if by == "tier":
        return accounts.c.tier
    if by == "segment":
        # The customer's own segmentation, a trait; unreadable JSON reads as NULL, never an error.
        return json_value(accounts.c.traits, "segment", "")
    return literal(0, Integer)


def _week_rows(
    week: date, stages: Sequence[str], counts: Sequence[int], by: By | None, group: str | None, due: Sequence[bool]
) -> list[StageCount]:
    """One week's rows: `counts` is the cohort size followed by each stage's count; `due` says
    per stage whether the cohort can have reached it (a stage not yet due has no conversion)."""
    conversions = [counts[i + 1] / counts[i] if counts[i] and due[i] else None for i in range(len(stages))]
    known = [(c, i) for i, c in enumerate(conversions) if c is not None]
    # The slowest machine (seed 000's Theory of Constraints); a cohort of nobody has none.
    worst = min(known)[1] if known and counts[0] else None
    return [
        StageCount(week, stage, counts[i + 1], conversions[i], i == worst, counts[i], by, group, due[i])
        for i, stage in enumerate(stages)
    ]


@dataclass(frozen=True)
class StageTotal:
    """One stage over every week and group of a report."""

    stage: str
    reached: int
    """The accounts at the stage over every cohort shown, old enough for it or not."""
    measured: int
    """Of those, the ones in cohorts old enough to have reached the stage (`due`)."""
    previous: int
    """In those same cohorts, the accounts at the stage before (the first stage: the cohorts)."""

    @property
    def conversion(self) -> float | None:
        """measured / previous: the share of the accounts at the stage before that reached this
        one, over the cohorts due for it; None when no such cohort had anyone."""
        return self.measured / self.previous if self.previous else None


def stage_totals(rows: Sequence[StageCount], stages: Sequence[str]) -> list[StageTotal]:
    """Each stage of `stages`, in order, summed over every week and group of `rows`: how many
    reached it, and its conversion read only over the cohorts old enough to have reached it (a
    young cohort's zero is not a failure to convert). The console's funnel chart draws these and
    `bottleneck_totals` picks from them, so both say the same numbers."""
    reached = dict.fromkeys(stages, 0)
    measured = dict.fromkeys(stages, 0)
    previous = dict.fromkeys(stages, 0)
    for row in rows:
        reached[row.stage] += row.count
        if row.due:
            measured[row.stage] += row.count
            previous[row.stage] += row.previous
    return [StageTotal(s, reached[s], measured[s], previous[s]) for s in stages]


def bottleneck_totals(rows: Sequence[StageCount], stages: Sequence[str]) -> tuple[str, float] | None:
    """The stage with the lowest conversion over every week and group of `rows` together
    (`stage_totals`), and that conversion (the earliest on a tie); None when every cohort is
    empty. A stage is read only over the cohorts old enough to have reached it."""
    known = [(t.conversion, i) for i, t in enumerate(stage_totals(rows, stages)) if t.conversion is not None]
    if not known:
        return None
    rate, index = min(known)
    return stages[index], rate
