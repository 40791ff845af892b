"""`touchflow status` and `touchflow resume` against a real store, and the `freshness:` settings
checked against the sources the playbooks read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert
from typer.testing import CliRunner

from engine.cli import app
from engine.store.models import playbook_holds
from tests.factories import Store
from tests.guard.test_guardrails import INACTIVE

runner = CliRunner()


def _setup(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, settings: str = "channel: outbox\n") -> Path:
    root = tmp_path / "project"
    (root / "playbooks").mkdir(parents=True)
    (root / "playbooks" / "inactive.yaml").write_text(INACTIVE.replace("{limits}", ""), encoding="utf-8")
    (root / "touchflow.yaml").write_text(settings, encoding="utf-8")
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(root))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    return root


def test_status_shows_sources_their_age_and_held_playbooks(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _setup(tmp_path, db_url, monkeypatch, "freshness: {login: 48h}\n")
    now = datetime.now(UTC).replace(tzinfo=None)
    store = Store(db, now)
    store.events(store.account(), "login", [3.5])
    with db.begin() as conn:
        conn.execute(
            insert(playbook_holds),
            [{"playbook_id": "inactive", "status": "held", "tripped_at": now, "detail": {"text": "would enroll 9"}}],
        )
    result = runner.invoke(app, ["status", "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["channel"] == "outbox" and report["revision"]
    (login,) = [s for s in report["sources"] if s["source"] == "login"]
    assert (login["age"], login["limit"], login["stale"], login["read_by"]) == ("3d", "2d", True, ["inactive"])
    assert [(h["playbook"], h["status"]) for h in report["held"]] == [("inactive", "held")]
    assert report["messages"] == {"planned": 0, "claimed": 0, "sending": 0, "unknown": 0}
    table = runner.invoke(app, ["status"])
    assert table.exit_code == 0 and "STALE" in table.stdout and "held: inactive" in table.stdout
    # Resume: audited with who; a second resume says the playbook is not held, exit 0.
    first = runner.invoke(app, ["resume", "inactive", "--as", "mina"])
    assert first.exit_code == 0 and "resumed inactive (by mina)" in first.stdout
    again = runner.invoke(app, ["resume", "inactive"])
    assert again.exit_code == 0 and "inactive is not held" in again.stdout


def test_resume_of_an_unknown_playbook_lists_the_known_ones(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _setup(tmp_path, db_url, monkeypatch)
    result = runner.invoke(app, ["resume", "inactiv"])
    assert result.exit_code == 2, result.output
    assert "no playbook 'inactiv' (did you mean 'inactive'?); known: inactive" in result.stderr


def test_an_unknown_freshness_source_is_named_with_did_you_mean(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _setup(tmp_path, db_url, monkeypatch, "channel: outbox\nfreshness:\n  logins: 48h\n  accounts: 7d\n")
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 1
    assert "touchflow.yaml:3:3: error: freshness: no source 'logins' (did you mean 'login'?)" in result.stderr


def test_status_on_the_projects_own_playbooks(db: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several playbooks reading one source, some with a limit and some without (the first one
    seen may have none): the tightest limit is shown, never a comparison with nothing."""
    from tests.conftest import REPO

    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(REPO))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    for fmt in ("table", "json"):
        result = runner.invoke(app, ["status", "--format", fmt])
        assert result.exit_code == 0, result.output
    report = json.loads(runner.invoke(app, ["status", "--format", "json"]).stdout)
    assert any(s["limit"] is not None for s in report["sources"])
