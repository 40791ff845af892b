"""Shared fixtures: a fresh, migrated store on SQLite and on PostgreSQL.

PostgreSQL runs when TOUCHFLOW_TEST_PG_URL points at a server; without it those tests skip with
the reason, unless TOUCHFLOW_REQUIRE_PG=1 (set by .ci/run), under which they fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from engine.store.db import connect, migrate

PG_URL = os.environ.get("TOUCHFLOW_TEST_PG_URL")
REQUIRE_PG = os.environ.get("TOUCHFLOW_REQUIRE_PG") == "1"
REPO = Path(__file__).resolve().parent.parent


def _pg_or_skip() -> str:
    if PG_URL:
        return PG_URL
    if REQUIRE_PG:
        pytest.fail("TOUCHFLOW_REQUIRE_PG=1 but TOUCHFLOW_TEST_PG_URL is not set")
    pytest.skip("PostgreSQL: set TOUCHFLOW_TEST_PG_URL (bash .ci/run starts a server) to run")


@contextmanager
def migrated_pg_schema(base: str, prefix: str) -> Iterator[str]:
    """A URL whose search_path is a new schema of `base`, migrated; dropped on exit."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = connect(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options=-csearch_path%3D{schema}"
    engine = connect(url)
    migrate(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty, migrated store: a SQLite file, or a fresh schema on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        engine = connect(url)
        migrate(engine)
        engine.dispose()
        yield url
        return
    with migrated_pg_schema(_pg_or_skip(), "t") as url:
        yield url


@pytest.fixture
def db(db_url: str) -> Iterator[Engine]:
    """An Engine on the fresh store of `db_url`."""
    engine = connect(db_url)
    yield engine
    engine.dispose()
