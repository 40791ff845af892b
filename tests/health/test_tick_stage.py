"""The tick scores every account once a day before the playbooks run; a broken model costs the
scores, never the tick."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, func, select

import engine.tick as api
from engine.dispatch import OutboxChannel
from engine.store.models import health_history
from tests.factories import Store, project
from tests.health.helpers import MODEL, NOW

PLAYBOOK = """
id: at-risk-watch
name: At-risk watch
segment: {health: {band: [at_risk, unhealthy]}}
trigger: {status: active}
steps:
  - task: {title: "Health check"}
"""


def _rows(db: Engine) -> list[tuple[int, str]]:
    with db.connect() as conn:
        q = select(health_history.c.account_id, health_history.c.computed_on).order_by(health_history.c.computed_on)
        return [(r.account_id, r.computed_on.isoformat()) for r in conn.execute(q)]


def test_the_tick_scores_today_once_and_playbooks_read_it(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    acct = store.account(seats_purchased=10)  # nobody active: adoption 10 points → unhealthy
    proj = project(tmp_path, db_url, playbooks={"at-risk-watch": PLAYBOOK})
    (proj.settings.project_dir / "health.yaml").write_text(MODEL, encoding="utf-8")
    channel = OutboxChannel(tmp_path / "out")
    summaries = api.run_stages(db, proj, ["at-risk-watch"], NOW, "run-1", channel)
    assert _rows(db) == [(acct, NOW.date().isoformat())]
    assert summaries["at-risk-watch"].enrolled == 1  # the score written this tick is the one read
    api.run_stages(db, proj, ["at-risk-watch"], NOW + timedelta(hours=3), "run-2", channel)
    assert len(_rows(db)) == 1  # once a day
    api.run_stages(db, proj, ["at-risk-watch"], NOW + timedelta(days=1), "run-3", channel)
    assert len(_rows(db)) == 2


def test_a_broken_model_leaves_the_tick_running(db: Engine, db_url: str, tmp_path: Path) -> None:
    Store(db, NOW).account()
    proj = project(tmp_path, db_url, playbooks={"at-risk-watch": PLAYBOOK})
    (proj.settings.project_dir / "health.yaml").write_text("health: {components: {}}\n", encoding="utf-8")
    summaries = api.run_stages(db, proj, ["at-risk-watch"], NOW, "run-1", OutboxChannel(tmp_path / "out"))
    assert summaries["at-risk-watch"].error is None
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(health_history)).scalar() == 0


def test_no_model_no_scores(db: Engine, db_url: str, tmp_path: Path) -> None:
    Store(db, NOW).account()
    proj = project(tmp_path, db_url, playbooks={"at-risk-watch": PLAYBOOK})
    api.run_stages(db, proj, ["at-risk-watch"], NOW, "run-1", OutboxChannel(tmp_path / "out"))
    assert _rows(db) == []
