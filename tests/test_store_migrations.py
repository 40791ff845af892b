"""The Alembic migrations create exactly what the models declare, on every dialect."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from engine.store.models import Base


def test_migrations_match_models(db: Engine) -> None:
    with db.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_evaluator_indexes_exist(db: Engine) -> None:
    indexes = {tuple(ix["column_names"]) for ix in inspect(db).get_indexes("events")}
    assert ("account_id", "name", "occurred_at") in indexes
    assert ("name", "occurred_at") in indexes
