"""Where a tick's stages read and write: the store itself, or a rolled-back copy of it.

A live tick gives each stage its own transactions, committed as it goes (`LiveStore`). A dry run
runs the very same stages on one connection inside a transaction that is rolled back at the end,
each stage in a savepoint, so a failing playbook rolls back alone and nothing is ever written
(`dry_store`). Stages only ask for a `transaction()` (committed when it closes) or a `session()`
(a connection and the callable that commits what is done so far — None in a dry run).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from sqlalchemy import Connection, Engine

from engine.policy.ratelimit import DatabaseRateLimiter, PrefectRateLimiter, RateLimiter
from engine.spec.policy import Policy

Session = tuple[Connection, Callable[[], None] | None]
"""A connection and how to commit on it (None: nothing is ever committed)."""


class Store(Protocol):
    """What a stage may ask of the store it runs against."""

    dry: bool

    def transaction(self) -> AbstractContextManager[Connection]:
        """A connection whose work is committed (or, dry, kept until the rollback) when it closes."""
        ...

    def session(self) -> AbstractContextManager[Session]:
        """A connection for work that commits as it goes (dispatch commits each window)."""
        ...

    def limiter(self, policy: Policy) -> RateLimiter | None:
        """The keeper of the global send rate that `policy` sets, if any."""
        ...


class LiveStore:
    """Each stage in transactions of its own, committed as it goes."""

    dry = False

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.engine.connect() as conn:
            yield conn, conn.commit
            conn.commit()

    def limiter(self, policy: Policy) -> RateLimiter | None:
        return make_limiter(policy, self.engine)


class DryStore:
    """One connection inside a transaction the caller rolls back; each stage in a savepoint."""

    dry = True

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.conn.begin_nested():  # a failure rolls back to here, alone
            yield self.conn

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.conn.begin_nested():
            yield self.conn, None

    def limiter(self, policy: Policy) -> RateLimiter | None:
        # A dry run sends nothing: it takes no send slot and waits for none.
        return None


@contextmanager
def dry_store(engine: Engine) -> Iterator[DryStore]:
    """A `DryStore` on a new connection; everything done through it is rolled back on exit."""
    with engine.connect() as conn:
        trans = conn.begin()
        if conn.dialect.name == "sqlite":
            # pysqlite opens its transaction lazily, at the first write: the first SAVEPOINT
            # would be the outermost transaction, and releasing it would commit the dry run.
            conn.exec_driver_sql("BEGIN")
        try:
            yield DryStore(conn)
        finally:
            trans.rollback()


def make_limiter(policy: Policy, engine: Engine) -> RateLimiter | None:
    """The global send rate's keeper, when `policy` sets one (see engine/policy/ratelimit.py)."""
    if policy.rate_limit is None:
        return None
    use_prefect = policy.rate_limiter == "prefect" or (
        policy.rate_limiter == "auto" and bool(os.environ.get("PREFECT_API_URL"))
    )
    if use_prefect:
        # A missing Prefect limit falls back to the store's schedule, with a warning: no claim stranded.
        return PrefectRateLimiter(policy.rate_limit, fallback=DatabaseRateLimiter(engine, policy.rate_limit))
    return DatabaseRateLimiter(engine, policy.rate_limit)
