"""The journey tests' fast stores (a migrated SQLite file copied, a PostgreSQL schema truncated)."""

from tests.journeys.conftest import _pg_schema_url, _sqlite_template, db_url

__all__ = ["_pg_schema_url", "_sqlite_template", "db_url"]
