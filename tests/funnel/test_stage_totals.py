"""`stage_totals`: each stage over every week and group of a report, the numbers the console's
funnel chart draws and the bottleneck (`bottleneck_totals`, `touchflow funnel`) is read from."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import Engine

from engine.funnel.load import load_funnel_text
from engine.funnel.report import StageCount, StageTotal, bottleneck_totals, funnel_report, stage_totals
from tests.funnel.test_funnel_report import FUNNEL, NOW, seed

STAGES = ["signed", "live", "renewed"]


def _row(week: date, stage: str, count: int, previous: int, due: bool = True) -> StageCount:
    conversion = count / previous if previous and due else None
    return StageCount(week, stage, count, conversion, False, previous, due=due)


def test_totals_sum_every_week_and_measure_only_cohorts_due_for_the_stage() -> None:
    old, young = date(2025, 6, 2), date(2026, 6, 1)
    rows = [
        _row(old, "signed", 10, 10),
        _row(old, "live", 8, 10),
        _row(old, "renewed", 2, 8),
        _row(young, "signed", 5, 5),
        _row(young, "live", 4, 5),
        # Too young to have renewed: counted as reached, never measured.
        _row(young, "renewed", 0, 4, due=False),
    ]
    got = stage_totals(rows, STAGES)
    assert got == [
        StageTotal("signed", reached=15, measured=15, previous=15),
        StageTotal("live", reached=12, measured=12, previous=15),
        StageTotal("renewed", reached=2, measured=2, previous=8),
    ]
    assert [t.conversion for t in got] == [1.0, 0.8, 0.25]
    assert bottleneck_totals(rows, STAGES) == ("renewed", 0.25)


def test_a_stage_no_cohort_is_due_for_has_no_conversion_and_is_never_the_bottleneck() -> None:
    rows = [_row(date(2026, 6, 1), "signed", 5, 5), _row(date(2026, 6, 1), "live", 1, 5)]
    rows.append(_row(date(2026, 6, 1), "renewed", 0, 1, due=False))
    got = stage_totals(rows, STAGES)
    assert got[2] == StageTotal("renewed", reached=0, measured=0, previous=0)
    assert got[2].conversion is None
    assert bottleneck_totals(rows, STAGES) == ("live", 0.2)
    assert [t.reached for t in stage_totals([], STAGES)] == [0, 0, 0]
    assert bottleneck_totals([], STAGES) is None


def test_totals_of_a_real_report_on_both_databases(db: Engine) -> None:
    seed(db)
    declared = load_funnel_text(FUNNEL, "health.yaml")
    assert declared is not None
    with db.connect() as conn:
        rows = funnel_report(conn, declared, NOW, 3)
    got = stage_totals(rows, ["signed", "onboarded", "activated"])
    # Weeks of 8 and 1 June: 5 + 2 signed, 3 + 1 onboarded, 1 + 1 activated.
    assert [(t.stage, t.reached, t.previous) for t in got] == [
        ("signed", 7, 7),
        ("onboarded", 4, 7),
        ("activated", 2, 4),
    ]
    assert got[2].conversion == pytest.approx(0.5)
    assert bottleneck_totals(rows, [s.id for s in declared.stages]) == ("activated", pytest.approx(0.5))
