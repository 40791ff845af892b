"""`touchflow catalog`: a table that fits 80 columns, JSON for scripts, `--write` for the snapshot
(which `touchflow schema` then offers for completion), and an error when there is no store."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from engine.catalog.snapshot import read_snapshot
from engine.cli import app
from tests.conftest import REPO
from tests.factories import Store

NOW = datetime(2026, 11, 1, 9, 0)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> Path:
    root = tmp_path / "proj"
    shutil.copytree(REPO / "templates", root / "templates")
    (root / "playbooks").mkdir()
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(root))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    monkeypatch.chdir(root)
    return root


def _seed(db: Engine) -> None:
    store = Store(db, NOW)
    for i in range(6):
        account = store.account(
            plan="enterprise" if i % 2 else "starter",
            traits={"industry": "retail", "a_rather_long_trait_key_name_for_wrapping": "x" * 40},
        )
        store.contact(account, role="champion")
        store.events(account, "login", [1, 2])
        store.events(account, "a_very_long_event_name_that_needs_its_own_line_here", [3])


def test_the_table_fits_80_columns_and_names_everything(db: Engine, project: Path) -> None:
    _seed(db)
    result = CliRunner().invoke(app, ["catalog"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(line for line in lines if len(line) > 80)
    text = result.stdout
    assert lines[0].startswith("6 accounts · 6 contacts · 18 events")
    assert "  plan" in text and "enterprise, starter" in text
    assert "  industry" in text and "retail" in text
    login = next(line for line in lines if line.startswith("  login "))
    assert "12" in login and "2026-10-31 09:00" in login
    assert "a_very_long_event_name_that_needs_its_own_line_here" in text


def test_json_is_the_whole_catalogue(db: Engine, project: Path) -> None:
    _seed(db)
    result = CliRunner().invoke(app, ["catalog", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["rows"] == {"accounts": 6, "contacts": 6, "events": 18}
    assert {e["name"]: e["count"] for e in data["events"]}["login"] == 12
    bad = CliRunner().invoke(app, ["catalog", "--format", "yaml"])
    assert bad.exit_code == 2 and "--format must be table or json, not 'yaml'" in bad.output


def test_write_saves_the_snapshot_and_schema_offers_its_names(db: Engine, project: Path) -> None:
    _seed(db)
    plain = json.loads(CliRunner().invoke(app, ["schema"]).stdout)
    result = CliRunner().invoke(app, ["catalog", "--write"])
    assert result.exit_code == 0, result.output
    snapshot = read_snapshot(project / "catalog.json")
    assert snapshot.event_names() == ["a_very_long_event_name_that_needs_its_own_line_here", "login"]
    schema = json.loads(CliRunner().invoke(app, ["schema"]).stdout)
    name = schema["$defs"]["EventWindow"]["properties"]["name"]
    assert name["anyOf"][0] == {"enum": snapshot.event_names()}
    assert name["anyOf"][1] == {"type": "string", "minLength": 1}  # any other name stays valid
    assert schema["$defs"]["Goal"]["properties"]["event"]["examples"] == snapshot.event_names()
    offered = schema["$defs"]["FieldCondition"]["propertyNames"]["examples"]
    assert "renewal_date" in offered and "traits.industry" in offered
    assert "anyOf" not in plain["$defs"]["EventWindow"]["properties"]["name"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_no_store_is_an_error_and_none_is_created(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = project / "typo.db"
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", f"sqlite:///{missing}")
    result = CliRunner().invoke(app, ["catalog"])
    assert result.exit_code == 1
    assert "error: no store at sqlite:///" in result.stderr
    assert not missing.exists()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_hostile_rows_are_notes_not_tracebacks(db: Engine, project: Path) -> None:
    _seed(db)
    with db.begin() as conn:
        conn.exec_driver_sql("UPDATE accounts SET traits = 'nope' WHERE id IN (SELECT min(id) FROM accounts)")
        conn.exec_driver_sql("UPDATE contacts SET role = CAST(X'FFFE' AS TEXT)")
    result = CliRunner().invoke(app, ["catalog"])
    assert result.exit_code == 0, result.output
    assert "note: accounts.traits: of 6 sampled, 1 not readable JSON" in result.stdout
    assert "note: contacts.role: some values cannot be read" in result.stdout
