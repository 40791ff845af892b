"""Alembic environment: runs against the Engine handed over in config.attributes["engine"]."""

from __future__ import annotations

from alembic import context

from engine.store.models import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # invoked from the alembic CLI: sqlalchemy.url, else TOUCHFLOW_DATABASE_URL
    from engine.config import load_settings
    from engine.store.db import connect

    engine = connect(config.get_main_option("sqlalchemy.url") or load_settings().database_url)

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
