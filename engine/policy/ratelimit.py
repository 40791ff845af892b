"""The global send rate, shared by every dispatcher.

A limiter hands out *send times*: `reserve(n)` returns n wall-clock moments (unix seconds), one
per message, spaced `1 / rate` apart after every moment handed out before, to any dispatcher.
The sending threads wait for their moment, so the messages leave evenly paced rather than in
bursts, and the rate holds in any window, not just on average.

* `DatabaseRateLimiter`: the schedule lives in the `rate_limits` row of the store; the row is
  locked for the few microseconds of a reservation (an UPDATE first, which locks on SQLite and
  PostgreSQL alike). Used when no Prefect server is configured.
* `PrefectRateLimiter`: Prefect's global concurrency limit with slot decay (`rate_limit`), for
  deployments that run on a Prefect server: `prefect gcl create touchflow-send --limit N
  --slot-decay-per-second R`. Prefect grants a slot per message; its decay sets the pace (a
  burst of up to N after a pause, then R a second).

Reservations are not refunded: a dispatcher that dies leaves a gap of at most its window.

Pacing needs the real wall clock (send times are shared between processes, so unix seconds, not
a monotonic clock): it is injected as `clock` (default `time.time`) and waiting as `sleep`
(default `time.sleep`), so tests drive both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import Engine, select, update

from engine.store.bulk import conflict_insert
from engine.store.models import rate_limits

DEFAULT_NAME = "touchflow-send"


class RateLimiter(Protocol):
    """Hands out send times (unix seconds) at a fixed rate across processes."""

    rate: float

    def reserve(self, n: int) -> list[float]: ...


class DatabaseRateLimiter:
    """A send-time schedule kept in the store's `rate_limits` table."""

    def __init__(
        self, engine: Engine, rate: float, name: str = DEFAULT_NAME, clock: Callable[[], float] = time.time
    ) -> None:
        if rate <= 0:
            raise ValueError("the rate must be positive")
        self.engine, self.rate, self.name, self.clock = engine, rate, name, clock

    def reserve(self, n: int) -> list[float]:
        """Reserve `n` consecutive send times; returns them (the first may be now)."""
        if n <= 0:
            return []
        gap = 1.0 / self.rate
        with self.engine.begin() as conn:
            conn.execute(
                conflict_insert(conn, rate_limits)
                .values(name=self.name, next_free_at=0.0)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            # Lock the row before reading it: the read and the write are one step for everyone.
            conn.execute(update(rate_limits).where(rate_limits.c.name == self.name).values(name=self.name))
            next_free = conn.execute(
                select(rate_limits.c.next_free_at).where(rate_limits.c.name == self.name)
            ).scalar_one()
            # Idle time is not banked: after a pause the schedule restarts at now, never in a burst.
            start = max(float(next_free), self.clock())
            conn.execute(
                update(rate_limits).where(rate_limits.c.name == self.name).values(next_free_at=start + n * gap)
            )
        return [start + i * gap for i in range(n)]


class PrefectRateLimiter:
    """Prefect's global concurrency limit `name` (with slot decay) grants one slot per message;
    each message may go the moment its slot is granted, so the server's decay is the pace for
    every dispatcher together. (One slot at a time: asking for more than the limit's size at once
    is refused by the server.)"""

    def __init__(self, rate: float, name: str = DEFAULT_NAME, clock: Callable[[], float] = time.time) -> None:
        self.rate, self.name, self.clock = rate, name, clock

    def reserve(self, n: int) -> list[float]:
        """Wait for a slot per message, one after the other; returns the moments they were granted."""
        from prefect.concurrency.sync import rate_limit

        granted: list[float] = []
        for _ in range(max(0, n)):
            rate_limit(self.name, occupy=1, strict=True)  # strict: a missing limit is an error, not a no-op
            granted.append(self.clock())
        return granted


class Unlimited:
    """No rate at all: simulations and dry runs send nothing, so they wait for nothing."""

    rate = float("inf")

    def reserve(self, n: int) -> list[float]:
        """Send times that have all passed already."""
        return [0.0] * max(0, n)


UNLIMITED = Unlimited()


def wait_until(
    moment: float, sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time
) -> None:
    """Sleep until `clock` (the wall clock, unix seconds) reaches `moment`."""
    delay = moment - clock()
    if delay > 0:
        sleep(delay)
