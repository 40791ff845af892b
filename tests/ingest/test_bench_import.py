"""`touchflow bench import`: both sides load the same generated events and the ratio is printed."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from engine.cli import app


def test_bench_import_runs_both_sides_and_prints_a_ratio() -> None:
    result = CliRunner().invoke(app, ["bench", "import", "--events", "2000"])
    assert result.exit_code == 0, result.output
    assert "ratio" in result.stdout and "floor" in result.stdout and "import" in result.stdout
    figures = json.loads(CliRunner().invoke(app, ["bench", "import", "--events", "2000", "--json"]).stdout)
    assert figures["events"] == figures["inserted"] == 2000 and figures["database"] == "sqlite"
    assert figures["ratio"] == pytest.approx(figures["import_rows_per_s"] / figures["floor_rows_per_s"], rel=0.01)


def test_bench_import_on_postgresql() -> None:
    url = os.environ.get("TOUCHFLOW_TEST_PG_URL")
    if not url:
        pytest.skip("PostgreSQL: set TOUCHFLOW_TEST_PG_URL to run")
    result = CliRunner().invoke(app, ["bench", "import", "--events", "2000", "--db", url, "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["database"] == "postgresql" and figures["inserted"] == 2000 and figures["ratio"] > 0
