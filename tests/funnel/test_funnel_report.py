"""The weekly funnel on SQLite and PostgreSQL: cohorts by contract_start week, cumulative stages,
conversion between stages, the bottleneck, `--by`, the three formats, and hostile traits."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from engine.cli import app
from engine.cli import funnel as funnel_cli
from engine.funnel.load import load_funnel_text
from engine.funnel.report import funnel_report
from tests.factories import Store

NOW = datetime(2026, 6, 15, 9)  # a Monday
THIS_WEEK, LAST_WEEK = date(2026, 6, 15), date(2026, 6, 8)

FUNNEL = """\
funnel:
  stages:
    - id: signed
      condition: {contract_start: {exists: true}}
    - id: onboarded
      condition: {events: {name: go_live, within: 365d}}
    - id: activated
      condition: {events: {name: feature_used, within: 365d}}
      playbooks: [activation-30d]
"""


def seed(db: Engine) -> None:
    """Week of 8 June: five accounts — onboarded 3 of 5, activated 1 of 3 (the bottleneck); one
    used a feature without going live, so it is not counted as activated. Week of 1 June: two
    accounts, onboarded 1 of 2 (the bottleneck), activated 1 of 1. One older account is outside."""
    store = Store(db, NOW)
    week = {
        "a": (date(2026, 6, 9), ["go_live", "feature_used"], "tech_touch"),
        "b": (date(2026, 6, 10), ["go_live"], "tech_touch"),
        "c": (date(2026, 6, 11), [], "tech_touch"),
        "d": (date(2026, 6, 12), ["feature_used"], "tech_touch"),
        "e": (date(2026, 6, 14), ["go_live"], "high_touch"),
        "f": (date(2026, 6, 1), ["go_live", "feature_used"], "tech_touch"),
        "g": (date(2026, 6, 7), [], "tech_touch"),
        "old": (date(2025, 1, 1), ["go_live", "feature_used"], "tech_touch"),
    }
    for name, (start, happened, tier) in week.items():
        account = store.account(name=name, contract_start=start, tier=tier, traits={"segment": "smb"})
        for event in happened:
            store.events(account, event, [1.0])


def rows(db: Engine, weeks: int = 2, by: str | None = None) -> list[dict[str, object]]:
    funnel = load_funnel_text(FUNNEL, "health.yaml")
    assert funnel is not None
    with db.connect() as conn:
        return [r.as_dict() for r in funnel_report(conn, funnel, NOW, weeks, by)]


def test_counts_conversion_and_bottleneck_per_week(db: Engine) -> None:
    seed(db)
    got = [(r["week"], r["stage"], r["count"], r["conversion"], r["bottleneck"]) for r in rows(db, weeks=3)]
    assert got == [
        ("2026-06-15", "signed", 0, None, False),
        ("2026-06-15", "onboarded", 0, None, False),
        ("2026-06-15", "activated", 0, None, False),
        ("2026-06-08", "signed", 5, 1.0, False),
        ("2026-06-08", "onboarded", 3, 0.6, False),
        ("2026-06-08", "activated", 1, pytest.approx(1 / 3), True),
        ("2026-06-01", "signed", 2, 1.0, False),
        ("2026-06-01", "onboarded", 1, 0.5, True),
        ("2026-06-01", "activated", 1, 1.0, False),
    ]


def test_by_tier_splits_each_week(db: Engine) -> None:
    seed(db)
    got = {(r["week"], r["tier"], r["stage"]): r["count"] for r in rows(db, by="tier")}
    assert got[("2026-06-08", "high_touch", "onboarded")] == 1
    assert got[("2026-06-08", "high_touch", "activated")] == 0
    assert got[("2026-06-08", "tech_touch", "signed")] == 4
    assert got[("2026-06-08", "tech_touch", "onboarded")] == 2
    assert ("2026-06-15", "tech_touch", "signed") not in got  # no cohort, no rows


def test_by_segment_reads_the_trait_and_survives_a_row_that_is_not_json(db: Engine) -> None:
    seed(db)
    if db.dialect.name == "sqlite":
        with db.begin() as conn:
            conn.execute(text("UPDATE accounts SET traits = 'not json' WHERE name = 'c'"))
    got = {(r["week"], r["segment"], r["stage"]): r["count"] for r in rows(db, by="segment")}
    unreadable = 1 if db.dialect.name == "sqlite" else 0
    assert got[("2026-06-08", "smb", "signed")] == 5 - unreadable
    assert got.get(("2026-06-08", "(none)", "signed"), 0) == unreadable


def _cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    (tmp_path / "health.yaml").write_text(FUNNEL, encoding="utf-8")
    (tmp_path / "playbooks").mkdir(exist_ok=True)
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    result = CliRunner().invoke(app, ["funnel", "--now", NOW.isoformat(), *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_json_lines_one_object_per_week_and_stage(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(db)
    code, out, err = _cli(db_url, tmp_path, monkeypatch, "--weeks", "3", "--format", "json")
    assert code == 0, err
    objects = [json.loads(line) for line in out.splitlines()]
    assert len(objects) == 9
    assert [o["bottleneck"] for o in objects].count(True) == 2
    assert objects[5] == {
        "week": "2026-06-08",
        "stage": "activated",
        "count": 1,
        "conversion": pytest.approx(1 / 3),
        "bottleneck": True,
    }


def test_cli_csv_and_a_table_that_fits_80_columns(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(db)
    code, out, err = _cli(db_url, tmp_path, monkeypatch, "--weeks", "2", "--format", "csv", "--by", "tier")
    assert code == 0, err
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert parsed[0].keys() == {"week", "tier", "stage", "count", "conversion", "bottleneck"}
    console = Console(width=80, record=True, file=io.StringIO(), highlight=False, color_system=None)
    monkeypatch.setattr(funnel_cli, "out", console)
    code, _, err = _cli(db_url, tmp_path, monkeypatch, "--weeks", "2")
    assert code == 0, err
    printed = console.export_text()
    assert max(len(line) for line in printed.splitlines()) <= 80
    assert "bottleneck: activated (33%)" in printed
    assert "activation-30d" in printed  # the playbook that acts on the stage, beside its effect


def test_cli_without_a_funnel_says_how_to_declare_one(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    result = CliRunner().invoke(app, ["funnel"])
    assert result.exit_code == 1
    assert "declares no funnel" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_reports_problems_in_the_file_at_line_and_column(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "health.yaml").write_text(FUNNEL.replace("go_live, within: 365d", "go_live, within: 3dd"))
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    result = CliRunner().invoke(app, ["funnel"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{tmp_path / 'health.yaml'}:6:") or "health.yaml:6:" in result.stderr
