"""Health scores and a funnel for the console's report pages: the repo's health.yaml copied into
the test project, and days scored by the engine's own `compute_day`."""

from __future__ import annotations

import shutil
from datetime import timedelta

from sqlalchemy import select, update

from engine.health.compute import compute_day, latest_day, scores_on
from engine.health.load import load_health
from engine.store.models import accounts
from tests.conftest import REPO
from tests.console.conftest import ConsoleEnv

HOSTILE = '<script>alert("x")</script>\'"&' + "W" * 160
"""An account name that must render as text: markup, quotes, an ampersand and a long tail."""


def with_health_file(env: ConsoleEnv) -> None:
    """The repo's health model and funnel, in the console's project."""
    shutil.copy(REPO / "health.yaml", env.settings.project_dir / "health.yaml")


def score_days(env: ConsoleEnv, days: int) -> None:
    """Score every account on each of the last `days` days up to the console's now."""
    spec = load_health(env.settings.project_dir)
    assert spec is not None
    for back in range(days - 1, -1, -1):
        with env.engine.begin() as conn:
            compute_day(conn, spec, env.now[0] - timedelta(days=back), replace=True)


def name_the_lowest(env: ConsoleEnv, name: str = HOSTILE) -> int:
    """Give the lowest-scored account of the latest day `name`; its id."""
    with env.engine.begin() as conn:
        day = latest_day(conn, env.now[0])
        assert day is not None
        lowest = scores_on(conn, day, limit=1)[0].account_id
        conn.execute(update(accounts).where(accounts.c.id == lowest).values(name=name))
        assert conn.execute(select(accounts.c.name).where(accounts.c.id == lowest)).scalar() == name
    return lowest
