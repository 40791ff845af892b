"""`touchflow bench evaluate`: one full evaluation of every example playbook, against the floor.

Both sides run in the same process on the same database, on a store where nobody is enrolled:
(a) the engine — `evaluate()` per playbook, enrollment and audit inserts included; (b) the floor
— the same predicates written by hand (`floor.py`), inserting matching subject ids into a scratch
table. Each side runs `repeat` times; the best time counts (the least disturbed by the machine).
After the last run the two sides' subjects are compared playbook by playbook: equal totals are
not enough, a floor that drops one subject and adds another would compare unequal work.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, func, select, text
from sqlalchemy.pool import NullPool

from benchmarks.floor import FLOOR, floor_params, floor_sql
from engine.compile import CompiledPlaybook, compile_playbook
from engine.plan import evaluate
from engine.store.db import migrate
from engine.store.models import accounts, audit_log, condition_state, enrollments
from engine.validate import validate_paths


@dataclass(frozen=True)
class EvaluateBench:
    """The figures `bench evaluate` prints."""

    engine_s: float
    floor_s: float
    peak_rss_mb: float
    accounts: int
    playbooks: int
    dialect: str
    enrolled: int
    floor_rows: int
    store_reused: bool
    build_s: float
    mismatched: dict[str, int]
    """Per playbook whose two sides differ: how many subjects only one side selected."""

    @property
    def ratio(self) -> float:
        return self.engine_s / self.floor_s if self.floor_s else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {
            "engine_s": round(self.engine_s, 3),
            "floor_s": round(self.floor_s, 3),
            "ratio": round(self.ratio, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "accounts": self.accounts,
            "playbooks": self.playbooks,
            "dialect": self.dialect,
            "enrolled": self.enrolled,
            "floor_rows": self.floor_rows,
            "store_reused": self.store_reused,
            "build_s": round(self.build_s, 1),
            "mismatched": dict(self.mismatched),
        }


def load_examples(playbooks_dir: Path, templates_dir: Path) -> list[CompiledPlaybook]:
    """The example playbooks that have a floor statement, compiled."""
    report = validate_paths([playbooks_dir], templates_dir)
    if report.problems:
        raise ValueError("\n".join(p.format() for p in report.problems))
    return [compile_playbook(p) for p in report.playbooks if p.spec.id in FLOOR]


def ensure_store(
    engine: Engine, n_accounts: int, seed: int, now: datetime, build: Callable[[Engine, int, int, datetime], Any]
) -> tuple[bool, float]:
    """Reuse a store of exactly `n_accounts` accounts, else build one. Returns (reused, seconds).

    The build runs on `build_engine`'s connections (the bench store is scratch: durability is
    traded for speed); the timed runs after it use `engine` with the product's own settings."""
    migrate(engine)
    with engine.connect() as conn:
        have = conn.execute(select(func.count()).select_from(accounts)).scalar_one()
    if have == n_accounts:
        return True, 0.0
    started = time.perf_counter()
    with build_engine(engine) as fast:
        build(fast, n_accounts, seed, now)
    return False, time.perf_counter() - started


# A scratch store's build: on SQLite no journal and no fsync — the store is written once, and
# under WAL every page of a multi-GB load is written to the log and again at the checkpoint (a
# build that dies half-way leaves a store `ensure_store` rebuilds, or a file to delete); on
# PostgreSQL no wait for the WAL flush at commit and room to sort the indexes. What is loaded is
# unchanged: these are the connections' settings, not the rows'. Most of a build is still the
# Python generation and the index sorts (300k accounts: ~60 s and ~50 s); a 512 MiB SQLite page
# cache made the index sorts slower, not faster.
_SQLITE_BUILD_PRAGMAS = ("PRAGMA journal_mode=OFF", "PRAGMA synchronous=OFF")
_POSTGRESQL_BUILD_SETTINGS = ("SET synchronous_commit = off", "SET maintenance_work_mem = '512MB'")


@contextmanager
def build_engine(engine: Engine) -> Iterator[Engine]:
    """An Engine on `engine`'s database whose connections are set for bulk-building a scratch
    store (see `_SQLITE_BUILD_PRAGMAS`); `engine` itself when the database has no such settings
    (an in-memory SQLite database, another dialect)."""
    url = engine.url
    dialect = engine.dialect.name
    if dialect == "sqlite" and url.database not in (None, "", ":memory:"):
        settings = _SQLITE_BUILD_PRAGMAS
        # Leaving WAL needs the only connection to the file: the timed engine's pooled ones go.
        engine.dispose()
    elif dialect == "postgresql":
        settings = _POSTGRESQL_BUILD_SETTINGS
    else:
        yield engine
        return
    fast = create_engine(url, poolclass=NullPool)

    @event.listens_for(fast, "connect")
    def _build_settings(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        for statement in settings:
            cursor.execute(statement)
        cursor.close()
        if dialect == "postgresql":
            dbapi_conn.commit()  # psycopg opened a transaction for the SETs: keep them

    try:
        yield fast
    finally:
        fast.dispose()
        # The next connection of `engine` sets WAL again (engine.store.db.connect).
        engine.dispose()


def _reset(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in (enrollments, audit_log, condition_state):
            conn.execute(delete(table))


def _time_engine(engine: Engine, playbooks: list[CompiledPlaybook], now: datetime) -> tuple[float, int]:
    _reset(engine)
    enrolled = 0
    started = time.perf_counter()
    for playbook in playbooks:
        with engine.begin() as conn:
            enrolled += evaluate(conn, playbook, now, "bench").enrolled
    return time.perf_counter() - started, enrolled


def _time_floor(engine: Engine, playbooks: list[CompiledPlaybook], now: datetime) -> tuple[float, int]:
    dialect = engine.dialect.name
    params = floor_params(now)
    rows = 0
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS bench_floor"))
        conn.execute(text("CREATE TABLE bench_floor (playbook_id VARCHAR(100), subject_id INTEGER)"))
    started = time.perf_counter()
    for playbook in playbooks:
        body = floor_sql(playbook.id, dialect)
        sql = f"INSERT INTO bench_floor (playbook_id, subject_id) SELECT '{playbook.id}', x.* FROM ({body}) x"
        with engine.begin() as conn:
            rows += conn.execute(text(sql).execution_options(preserve_rowcount=True), params).rowcount
    # bench_floor stays until `run` has compared it with the engine's enrollments.
    return time.perf_counter() - started, rows


def _mismatched(engine: Engine) -> dict[str, int]:
    """Subjects only one side selected, per playbook: enrollments against bench_floor, both ways."""
    pairs = ("SELECT playbook_id, subject_id FROM enrollments", "SELECT playbook_id, subject_id FROM bench_floor")
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        for left, right in (pairs, pairs[::-1]):
            only = f"SELECT d.playbook_id, count(*) FROM ({left} EXCEPT {right}) d GROUP BY d.playbook_id"
            for playbook_id, n in conn.execute(text(only)):
                counts[playbook_id] = counts.get(playbook_id, 0) + n
    return dict(sorted(counts.items()))


def run(
    engine: Engine,
    n_accounts: int,
    seed: int,
    now: datetime,
    playbooks: list[CompiledPlaybook],
    build: Callable[[Engine, int, int, datetime], Any],
    repeat: int = 3,
) -> EvaluateBench:
    """Build or reuse the store, then time the engine and the floor `repeat` times each."""
    reused, build_s = ensure_store(engine, n_accounts, seed, now, build)
    engine_times, floor_times = [], []
    enrolled = floor_rows = 0
    for _ in range(repeat):
        elapsed, floor_rows = _time_floor(engine, playbooks, now)
        floor_times.append(elapsed)
        elapsed, enrolled = _time_engine(engine, playbooks, now)
        engine_times.append(elapsed)
    mismatched = _mismatched(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS bench_floor"))
    _reset(engine)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return EvaluateBench(
        engine_s=min(engine_times),
        floor_s=min(floor_times),
        peak_rss_mb=peak_kb / 1024,
        accounts=n_accounts,
        playbooks=len(playbooks),
        dialect=engine.dialect.name,
        enrolled=enrolled,
        floor_rows=floor_rows,
        store_reused=reused,
        build_s=build_s,
        mismatched=mismatched,
    )
