"""Time does not go backwards: a live tick earlier than the store's last one is refused, unless forced.

The store keeps the latest `now` a live tick ran at (the `tick` row of `locks`); dry runs and
simulations neither check nor move it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from engine import tick
from engine.cli import app
from engine.store.models import audit_log, enrollments, ledger
from tests.factories import Store, project

NOW = datetime(2026, 11, 23, 9, 0)
WEEK_AGO = NOW - timedelta(days=7)
REFUSAL = (
    "the store's last tick ran at 2026-11-23 09:00:00 UTC; this tick's now is 2026-11-16 09:00:00 UTC — "
    "refusing to go back in time; pass --force to run anyway"
)


def test_a_live_tick_earlier_than_the_last_one_is_refused(db: Engine) -> None:
    assert tick.last_tick(db) is None  # a store that never ticked
    tick.start_live_tick(db, NOW)
    tick.start_live_tick(db, NOW)  # the same moment again: a rerun, allowed
    assert tick.last_tick(db) == NOW

    with pytest.raises(tick.TimeWentBackwards) as refused:
        tick.start_live_tick(db, WEEK_AGO)
    assert str(refused.value) == REFUSAL
    assert (refused.value.last, refused.value.now) == (NOW, WEEK_AGO)
    assert tick.last_tick(db) == NOW

    tick.start_live_tick(db, WEEK_AGO, force=True)  # forced: runs, and the latest tick stays the mark
    assert tick.last_tick(db) == NOW
    with pytest.raises(tick.TimeWentBackwards):
        tick.start_live_tick(db, NOW - timedelta(seconds=1))

    tick.start_live_tick(db, NOW + timedelta(hours=1))
    assert tick.last_tick(db) == NOW + timedelta(hours=1)


def test_dry_runs_and_stage_runs_neither_check_nor_move_the_mark(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    acc = store.account(renewal_date=(WEEK_AGO + timedelta(days=90)).date())
    store.contact(acc, "admin")
    proj = project(tmp_path, db_url)
    tick.start_live_tick(db, NOW)

    preview = {s.playbook: s for s in tick.dry_run(db, proj, ["renewal-90d"], WEEK_AGO, "dry")}
    assert preview["renewal-90d"].enrolled == 1
    assert tick.last_tick(db) == NOW


def _invoke_run(monkeypatch: pytest.MonkeyPatch, db_url: str, tmp_path: Path, *args: str) -> tuple[int, str]:
    proj = project(tmp_path, db_url)
    for name, value in {
        "TOUCHFLOW_PROJECT_DIR": str(proj.settings.project_dir),
        "TOUCHFLOW_DATABASE_URL": db_url,
        "TOUCHFLOW_OUTBOX": str(proj.settings.outbox_dir),
        # `run` sets these for Prefect; set here so the test leaves the process as it found it.
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["run", *args])
    return result.exit_code, result.stderr


def test_touchflow_run_refuses_to_go_back_in_time(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(db, WEEK_AGO)
    acc = store.account(renewal_date=(WEEK_AGO + timedelta(days=90)).date())
    store.contact(acc, "admin")
    tick.start_live_tick(db, NOW)

    code, stderr = _invoke_run(monkeypatch, db_url, tmp_path, "--now", WEEK_AGO.isoformat())

    assert code == 1
    assert stderr.replace("\n", " ").strip() == f"error: {REFUSAL}"
    with db.connect() as conn:
        written = [conn.execute(select(func.count()).select_from(t)).scalar_one() for t in (enrollments, ledger)]
        audited = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
    assert written == [0, 0] and audited == 0


def test_demo_data_replaces_the_store_and_its_clock(db: Engine) -> None:
    """A regenerated store has no history: `make demo` may tick at its fixed date again."""
    from demo.data import generate

    tick.start_live_tick(db, NOW + timedelta(days=30))
    generate(db, accounts=3, seed=1, now=WEEK_AGO)

    assert tick.last_tick(db) is None
    tick.start_live_tick(db, WEEK_AGO)
