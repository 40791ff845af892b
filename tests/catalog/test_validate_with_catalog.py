"""`validate` with a data catalogue: event names and values never seen are warnings with a
"did you mean", never errors; the catalogue comes from `catalog.json`, else an existing store,
else there are no catalogue checks (said once)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner, Result

from engine.catalog.profile import profile_store
from engine.catalog.snapshot import snapshot_text
from engine.cli import app
from engine.validate import validate_paths
from tests.conftest import REPO
from tests.factories import Store

NOW = datetime(2026, 11, 1, 9, 0)

TYPOS = """\
id: trial-nudge
name: Trial nudge
subject: account
segment:
  status: activ
  tier: {in: [tech_touch, tech_tuch]}
trigger:
  events: {name: loginn, at_least: 1, within: 3d}
goal:
  event: renewal_signed
steps:
  - task:
      title: "Call {{ account.name }}"
"""


def _seed(db: Engine) -> None:
    store = Store(db, NOW)
    for i in range(4):
        account = store.account(status="churned" if i == 0 else "active", tier="tech_touch" if i else "low_touch")
        store.events(account, "login", [1, 2])


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> Path:
    root = tmp_path / "proj"
    (root / "playbooks").mkdir(parents=True)
    shutil.copytree(REPO / "templates", root / "templates")
    (root / "playbooks" / "trial.yaml").write_text(TYPOS, encoding="utf-8")
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(root))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    monkeypatch.chdir(root)
    return root


def _warnings(result: Result) -> dict[tuple[int, int], str]:
    found = {}
    for line in result.stdout.splitlines():
        if line.startswith("ok: "):
            continue
        _path, row, col, rest = line.split(":", 3)
        assert rest.startswith(" warning: "), line
        found[(int(row), int(col))] = rest.removeprefix(" warning: ")
    return found


def test_unseen_event_values_and_goal_event_are_warnings_with_did_you_mean(db: Engine, project: Path) -> None:
    _seed(db)
    with db.connect() as conn:
        catalog = profile_store(conn)
    report = validate_paths([project / "playbooks"], project / "templates" / "email", project, catalog=catalog)
    assert report.ok and report.errors == []
    shown = {(p.line, p.col): p.format() for p in report.problems}
    assert set(shown) == {(5, 3), (6, 27), (8, 12), (10, 3)}, shown
    assert shown[(5, 3)].endswith("warning: 'status' is never 'activ' in the store (its values: active, churned) "
                                   "(did you mean 'active'?)")  # fmt: skip
    assert "'tier' is never 'tech_tuch'" in shown[(6, 27)] and "did you mean 'tech_touch'" in shown[(6, 27)]
    assert shown[(8, 12)].endswith("warning: event 'loginn' never occurs in the store (did you mean 'login'?)")
    assert "goal event 'renewal_signed' never occurs" in shown[(10, 3)]
    assert all(p.severity == "warning" for p in report.problems)
    # Valid playbooks are still loaded: warnings never stop them.
    assert [p.spec.id for p in report.playbooks] == ["trial-nudge"]


def test_validate_uses_the_snapshot_and_warnings_do_not_fail_it(db: Engine, project: Path) -> None:
    _seed(db)
    with db.connect() as conn:
        (project / "catalog.json").write_text(snapshot_text(profile_store(conn)), encoding="utf-8")
    with db.begin() as conn:  # the snapshot is what counts, not the store as it is now
        conn.exec_driver_sql("DELETE FROM events")
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    warnings = _warnings(result)
    assert "did you mean 'login'" in warnings[(8, 12)]
    assert "catalogue: catalog.json" in result.stderr


def test_validate_uses_an_existing_store_without_a_snapshot(db: Engine, project: Path) -> None:
    _seed(db)
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    assert "did you mean 'active'" in _warnings(result)[(5, 3)]
    assert "catalogue: the store at" in result.stderr


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_without_snapshot_or_store_there_are_no_catalogue_checks_and_no_store_is_created(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = project / "nowhere.db"
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", f"sqlite:///{missing}")
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: 1 playbooks valid")
    assert result.stderr.count("no data catalogue") == 1
    assert not missing.exists()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_broken_snapshot_is_an_error_naming_the_file(project: Path) -> None:
    (project / "catalog.json").write_text(json.dumps({"format": 1}), encoding="utf-8")
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 1
    assert "catalog.json:1:1: error: not a catalogue snapshot" in result.stdout
    assert "Traceback" not in result.output
