"""`touchflow setup prefect` against a real (temporary) Prefect server: it creates the work pool and
the `touchflow-send` limit from touchflow.yaml's rate, updates the limit when the rate changes,
changes nothing the second time, and checks the Secret block; `touchflow status` says what is missing."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from engine.cli import app
from tests.flows.test_tick_flow import _small_project

pytestmark = pytest.mark.prefect
REPO = Path(__file__).resolve().parents[2]

SENDGRID = "channel: sendgrid\nsendgrid: {{api_key_block: {block}}}\npolicy: {{rate_limit: {rate}}}\n"


def _limit() -> tuple[int, float]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        found = client.read_global_concurrency_limit_by_name("touchflow-send")
    return found.limit, found.slot_decay_per_second


def _delete_limit() -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectNotFound):
        client.delete_global_concurrency_limit_by_name("touchflow-send")


def test_setup_prefect_creates_updates_and_is_idempotent(
    harness: None, db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.system import Secret

    _delete_limit()
    pool, block = f"pool-{uuid.uuid4().hex[:8]}", f"sendgrid-{uuid.uuid4().hex[:8]}"
    proj = _small_project(tmp_path, db, db_url, monkeypatch, SENDGRID.format(block=block, rate=20))
    config = proj.settings.project_dir / "touchflow.yaml"
    runner = CliRunner()

    status = json.loads(runner.invoke(app, ["status", "--format", "json"]).stdout)["prefect"]
    missing = {c["item"]: c["detail"] for c in status if not c["ok"]}
    assert {"limit 'touchflow-send'", f"Secret block '{block}'"} <= missing.keys(), missing
    assert "touchflow setup prefect" in missing["limit 'touchflow-send'"]

    first = runner.invoke(app, ["setup", "prefect", "--pool", pool])
    assert first.exit_code == 1  # the Secret block is missing: said, not created
    assert f"work pool '{pool}': created (type process)" in first.stdout
    assert "limit 'touchflow-send': created, 40 slots decaying at 20/s" in first.stdout
    assert f"Secret block '{block}': missing: create it with" in first.stdout
    assert "Traceback" not in first.output
    assert _limit() == (40, 20.0)

    Secret(value="SG.test").save(block, overwrite=True)
    again = runner.invoke(app, ["setup", "prefect", "--pool", pool])
    assert again.exit_code == 0, again.output
    assert f"work pool '{pool}': exists (type process)" in again.stdout
    assert "limit 'touchflow-send': up to date, 40 slots decaying at 20/s" in again.stdout
    assert f"Secret block '{block}': present" in again.stdout

    config.write_text(SENDGRID.format(block=block, rate=7.5), encoding="utf-8")
    changed = runner.invoke(app, ["setup", "prefect", "--pool", pool])
    assert "limit 'touchflow-send': updated to 15 slots decaying at 7.5/s" in changed.stdout, changed.output
    assert _limit() == (15, 7.5)

    status = json.loads(runner.invoke(app, ["status", "--format", "json"]).stdout)["prefect"]
    assert [c["item"] for c in status if not c["ok"]] == ["work pool 'touchflow'"]  # only the default pool
    table = runner.invoke(app, ["status"]).stdout
    assert "prefect: limit 'touchflow-send': ok (15 slots decaying at 7.5/s)" in table
    _delete_limit()


def test_setup_prefect_without_a_server_says_so(tmp_path: Path) -> None:
    """No PREFECT_API_URL: nothing to set up, one line and exit 1 (a process of its own, since
    this session's harness configures an API)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect"), "TOUCHFLOW_PROJECT_DIR": str(REPO)}
    env["TOUCHFLOW_DATABASE_URL"] = f"sqlite:///{tmp_path / 'store.db'}"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "touchflow"), "setup", "prefect"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 1, done
    assert "PREFECT_API_URL is not set" in done.stderr and "Traceback" not in done.stderr + done.stdout
