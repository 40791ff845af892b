"""The `renewed` stage: a renewal is a `renewal_signed` event, and a stage a cohort is too young
to have reached (`due_after`) is counted but never measured — its conversion is unknown and it is
never the bottleneck, so a renewal a year out does not hide this quarter's real bottleneck. The
project's funnel declares it; the demo's year of history signs renewals, so `funnel --weeks 52`
shows it on both databases."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from demo.data import generate
from engine.cli import app
from engine.funnel.load import load_funnel, load_funnel_text
from engine.funnel.report import bottleneck_totals, funnel_report
from engine.problems import ProblemsFound
from engine.store.models import accounts, events
from tests.conftest import REPO
from tests.factories import Store

NOW = datetime(2026, 6, 15, 9)  # a Monday
OLD_WEEK = date(2025, 6, 23)  # 357 days before NOW: old enough to have renewed
YOUNG_WEEK = date(2026, 6, 8)

FUNNEL = """\
funnel:
  stages:
    - id: signed
      condition: {contract_start: {exists: true}}
    - id: activated
      condition: {events: {name: feature_used, within: 365d}}
    - id: renewed
      condition: {events: {name: renewal_signed, within: 730d}}
      due_after: 335d
    - id: advocate
      condition: {events: {name: review_submitted, within: 365d}}
"""


def _seed(db: Engine) -> None:
    store = Store(db, NOW)
    cohorts = {
        "r1": (OLD_WEEK, ["feature_used", "renewal_signed", "review_submitted"]),
        "r2": (OLD_WEEK + timedelta(days=2), ["feature_used", "renewal_signed"]),
        "r3": (OLD_WEEK + timedelta(days=4), ["feature_used"]),
        "y1": (YOUNG_WEEK, ["feature_used"]),
        # An advocate that cannot have renewed yet is not counted past the renewal stage.
        "y2": (YOUNG_WEEK + timedelta(days=1), ["feature_used", "review_submitted"]),
    }
    for name, (start, happened) in cohorts.items():
        account = store.account(name=name, contract_start=start)
        for event in happened:
            store.events(account, event, [3.0])


def _report(db: Engine) -> list[tuple[str, str, int, float | None, bool]]:
    funnel = load_funnel_text(FUNNEL, "health.yaml")
    assert funnel is not None
    with db.connect() as conn:
        rows = funnel_report(conn, funnel, NOW, 52)
    return [(r.week.isoformat(), r.stage, r.count, r.conversion, r.bottleneck) for r in rows if r.count or r.previous]


def test_a_stage_is_measured_only_in_cohorts_old_enough_to_reach_it(db: Engine) -> None:
    _seed(db)
    assert _report(db) == [
        ("2026-06-08", "signed", 2, 1.0, True),
        ("2026-06-08", "activated", 2, 1.0, False),
        # Counted (0) but not measured: the cohort is a week old; the renewal is a year out.
        ("2026-06-08", "renewed", 0, None, False),
        ("2025-06-23", "signed", 3, 1.0, False),
        ("2025-06-23", "activated", 3, 1.0, False),
        ("2025-06-23", "renewed", 2, pytest.approx(2 / 3), False),
        ("2025-06-23", "advocate", 1, 0.5, True),
    ]


def test_the_bottleneck_over_all_weeks_reads_only_the_cohorts_a_stage_was_due_in(db: Engine) -> None:
    _seed(db)
    funnel = load_funnel_text(FUNNEL, "health.yaml")
    assert funnel is not None
    with db.connect() as conn:
        rows = funnel_report(conn, funnel, NOW, 52)
    # Over every cohort, renewed would read 2 of 5 (40 %) and be named; over the due ones, 2 of 3.
    assert bottleneck_totals(rows, [s.id for s in funnel.stages]) == ("advocate", 0.5)


def test_due_after_is_a_duration() -> None:
    with pytest.raises(ProblemsFound) as caught:
        load_funnel_text(FUNNEL.replace("due_after: 335d", "due_after: a year"), "health.yaml")
    assert "health.yaml:9:" in str(caught.value)


def test_the_projects_funnel_declares_renewed_after_adopted() -> None:
    funnel = load_funnel(REPO / "health.yaml")
    assert funnel is not None
    ids = [s.id for s in funnel.stages]
    assert ids.index("adopted") + 1 == ids.index("renewed") < ids.index("advocate")
    renewed = funnel.stages[ids.index("renewed")]
    assert renewed.due_after is not None and renewed.due_after >= timedelta(days=300)
    assert "renewal-90d" in renewed.playbooks


def test_the_demo_signs_renewals_and_funnel_52_weeks_shows_them(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime(2026, 11, 23)
    generate(db, accounts=400, seed=3, now=now)
    with db.connect() as conn:
        signed = conn.execute(
            select(events.c.account_id, events.c.occurred_at, accounts.c.status, accounts.c.contract_start)
            .join(accounts, accounts.c.id == events.c.account_id)
            .where(events.c.name == "renewal_signed")
        ).all()
        active = conn.execute(select(func.count()).select_from(accounts).where(accounts.c.status == "active")).scalar()
    assert signed, "the demo's year of history signs no renewal"
    for row in signed:
        assert row.status == "active"  # a churned account left at a renewal it did not sign
        assert now - timedelta(days=365) < row.occurred_at <= now
        assert row.occurred_at.date() > row.contract_start
    # Most active accounts that started over a year ago renewed in the year; not every account did.
    assert len({row.account_id for row in signed}) < int(active or 0)

    (tmp_path / "health.yaml").write_text((REPO / "health.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "playbooks").mkdir()
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    result = CliRunner().invoke(app, ["funnel", "--weeks", "52", "--now", now.isoformat(), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    renewed = [r for r in map(json.loads, result.stdout.splitlines()) if r["stage"] == "renewed"]
    assert len(renewed) == 52
    measured = [r for r in renewed if r["conversion"] is not None]
    assert measured and sum(r["count"] for r in measured) > 0  # the oldest cohorts have renewed
    assert all(r["count"] == 0 and not r["bottleneck"] for r in renewed[:40])  # the young ones cannot have
    table = CliRunner().invoke(app, ["funnel", "--weeks", "52", "--now", now.isoformat()], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.stderr
    assert "renewed" in table.stdout


def test_the_documented_funnel_is_the_projects() -> None:
    doc = (REPO / "docs" / "health.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- funnel: project -->\n```yaml\n(.*?)```", doc, re.S)
    assert block is not None
    assert load_funnel_text(block[1], "docs/health.md") == load_funnel(REPO / "health.yaml")
