"""Faster stores for the journey tests: one migration per session and database, then a cheap reset.

`db_url` overrides the repository-wide fixture with the same contract — an empty, migrated store,
on SQLite and on PostgreSQL — but copies a migrated SQLite file and truncates a session-wide
PostgreSQL schema instead of running the migrations for every test.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from engine.store.db import connect, migrate
from engine.store.models import Base
from tests.conftest import _pg_or_skip, migrated_pg_schema


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("journeys") / "template.db"
    engine = connect(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()  # the last connection closing checkpoints the WAL into the file
    return path


@pytest.fixture(scope="session")
def _pg_schema_url() -> Iterator[str]:
    with migrated_pg_schema(_pg_or_skip(), "tj") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated store: a copy of a migrated SQLite file, or a truncated PostgreSQL schema."""
    if request.param == "sqlite":
        path = tmp_path / "store.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("_pg_schema_url")
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    engine = connect(url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url
