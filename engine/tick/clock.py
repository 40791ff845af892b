"""Time does not go backwards: the store's last live tick, and the guard a live tick passes first.

`start_live_tick` refuses a live tick earlier than the store's last one (kept in the `tick` row
of `locks`) unless forced: a tick in the past would send mail dated then and re-run journeys'
waits. Dry runs and simulations are not live ticks and neither check nor move the mark.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import Engine, or_, select, update

from engine.store.bulk import conflict_insert
from engine.store.models import locks

LAST_TICK = "tick"
"""The `locks` row whose `held_at` is the latest `now` a live tick ran at."""

log = logging.getLogger("touchflow.tick")


class TimeWentBackwards(Exception):
    """A live tick asked to run earlier than the store's last one (pass `force` to run anyway)."""

    def __init__(self, last: datetime, now: datetime) -> None:
        self.last, self.now = last, now
        super().__init__(
            f"the store's last tick ran at {last.isoformat(sep=' ')} UTC; this tick's now is "
            f"{now.isoformat(sep=' ')} UTC — refusing to go back in time; pass --force to run anyway"
        )


def last_tick(engine: Engine) -> datetime | None:
    """The latest `now` a live tick ran at on this store (None before the first one)."""
    with engine.connect() as conn:
        return conn.execute(select(locks.c.held_at).where(locks.c.name == LAST_TICK)).scalar_one_or_none()


def start_live_tick(engine: Engine, now: datetime, force: bool = False) -> None:
    """Record `now` as the store's last tick, or raise TimeWentBackwards when it is earlier than
    the last one: a tick in the past would send mail dated then and re-run journeys' waits.
    With `force` it runs anyway, and the mark stays at the latest tick. Commits."""
    mark = locks.c
    with engine.begin() as conn:
        conn.execute(
            conflict_insert(conn, locks)
            .values(name=LAST_TICK, held_at=None)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        # One conditional UPDATE: two ticks starting together cannot both see the old mark.
        later = or_(mark.held_at.is_(None), mark.held_at <= now)
        if conn.execute(update(locks).where(mark.name == LAST_TICK, later).values(held_at=now)).rowcount:
            return
        last = conn.execute(select(mark.held_at).where(mark.name == LAST_TICK)).scalar_one()
    if not force:
        raise TimeWentBackwards(last, now)
    log.warning("forced: a live tick at %s, before the store's last tick at %s", now, last)
