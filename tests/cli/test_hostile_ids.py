"""Ids no database can hold, and empty filters: a clear error (exit 2), never a traceback and
never "no filter" by accident."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from engine.cli import app
from tests.conftest import REPO
from tests.factories import Store

runner = CliRunner()
HUGE = "99999999999999999999"


@pytest.fixture
def store(db: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(REPO))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    from datetime import datetime

    made = Store(db, datetime(2026, 11, 23, 9, 0))
    made.contact(made.account(), "admin")
    return made


@pytest.mark.parametrize(
    "args",
    [
        ["timeline", HUGE],
        ["audit", "--contact", HUGE],
        ["audit", "--contact", "²"],
        ["audit", "--account", HUGE],
        ["tasks", "close", HUGE, "--outcome", "done"],
        ["health", "--account", HUGE],
        ["audit", "--contact", ""],
        ["portfolio", "--csm", ""],
        ["tasks", "list", "--csm", ""],
    ],
)
def test_an_id_no_store_holds_is_an_error_not_a_traceback(store: Store, args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (1, 2), result.output
    assert "Traceback" not in result.output
