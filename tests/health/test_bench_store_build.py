"""The benchmarks' store builder (`benchmarks.evaluate.ensure_store`): it builds on connections
set for bulk loading a scratch store, yet loads exactly the rows `demo.data.generate` loads on the
product's own connections, and the timed runs after it see the product's settings again."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, text

from benchmarks.evaluate import ensure_store
from demo.data import generate
from engine.store import models

NOW = datetime(2026, 11, 23, 9, 0)
# Every table generate writes (tasks and suppressions too: they are derived from the loaded rows).
_TABLES = (models.csms, models.accounts, models.contacts, models.events, models.tasks, models.suppressions)


def _digests(engine: Engine) -> dict[str, tuple[int, str]]:
    """(rows, sha256 over the rows in key order) per table, as SQLAlchemy reads them back."""
    out = {}
    with engine.connect() as conn:
        for table in _TABLES:
            rows = conn.execute(select(table).order_by(*table.primary_key.columns)).all()
            out[table.name] = (len(rows), hashlib.sha256(repr(rows).encode()).hexdigest())
    return out


def _settings(conn: Connection) -> dict[str, Any]:
    """The connection settings the build changes, as the database reports them."""
    if conn.dialect.name == "sqlite":
        return {
            "journal_mode": conn.execute(text("PRAGMA journal_mode")).scalar_one(),
            "synchronous": conn.execute(text("PRAGMA synchronous")).scalar_one(),
        }
    return {"synchronous_commit": conn.execute(text("SHOW synchronous_commit")).scalar_one()}


def test_the_fast_build_loads_the_rows_generate_loads(db: Engine) -> None:
    seen: dict[str, Any] = {}

    def build(engine: Engine, n: int, seed: int, at: datetime) -> Any:
        with engine.connect() as conn:
            seen.update(_settings(conn))
        return generate(engine, accounts=n, seed=seed, now=at)

    with db.connect() as conn:
        before = _settings(conn)
    reused, seconds = ensure_store(db, 120, 5, NOW, build)
    assert (reused, seconds > 0) == (False, True)
    # The build ran without a journal and without waiting for the disk.
    if db.dialect.name == "sqlite":
        assert seen == {"journal_mode": "off", "synchronous": 0}
    else:
        assert seen == {"synchronous_commit": "off"}
    # The timed runs after it use the product's settings again (on SQLite: WAL, synchronous NORMAL).
    with db.connect() as conn:
        after = _settings(conn)
    assert after == before
    if db.dialect.name == "sqlite":
        assert after == {"journal_mode": "wal", "synchronous": 1}

    fast = _digests(db)
    assert fast["events"][0] > 1000 and fast["accounts"][0] == 120
    # The same seed loaded by generate itself on the product's connections: the same rows.
    generate(db, accounts=120, seed=5, now=NOW)
    assert _digests(db) == fast

    # A store of that size is reused, not rebuilt.
    calls: list[int] = []
    assert ensure_store(db, 120, 5, NOW, lambda *args: calls.append(1)) == (True, 0.0)
    assert calls == []
