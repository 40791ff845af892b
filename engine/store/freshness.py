"""When each source of customer data last received data: the `data_sources` table.

A source is a table of the customer store (`accounts`, `contacts`, `csms`) or one event name
(`event:login`). Whatever brings data in — `touchflow import`, the ingestion API — records what
it wrote in the same transaction, so the freshness guardrail and `touchflow status` can tell a
feed that stopped from a quiet week.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, case, func

from engine.store.bulk import conflict_insert
from engine.store.models import data_sources


def event_source(name: str) -> str:
    """The source name of the events called `name`."""
    return f"event:{name}"


@dataclass(frozen=True)
class Arrival:
    """What one write brought for one source: how many rows, and the newest data time among
    them (an event's `occurred_at`; for a table, when the rows were written)."""

    rows: int
    latest: datetime | None


def record_arrivals(conn: Connection, arrivals: Mapping[str, Arrival], arrived_at: datetime) -> None:
    """Add `arrivals` (source → what arrived) to `data_sources`, inside the caller's transaction.

    `last_data_at` only moves forward (a backfill of old events does not make a feed look
    stale), `last_arrived_at` is `arrived_at` (naive UTC), and `arrivals` counts rows. One
    upsert per source, in a stable order so concurrent writers take row locks alike.
    """
    table = data_sources
    for source in sorted(arrivals):
        arrival = arrivals[source]
        if arrival.rows <= 0:
            continue
        insert = conflict_insert(conn, table).values(
            source=source, last_data_at=arrival.latest, last_arrived_at=arrived_at, arrivals=arrival.rows
        )
        newer = insert.excluded.last_data_at
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=[table.c.source],
                set_={
                    "last_data_at": case(
                        (table.c.last_data_at.is_(None), newer),
                        (newer.is_(None), table.c.last_data_at),
                        (newer > table.c.last_data_at, newer),
                        else_=table.c.last_data_at,
                    ),
                    "last_arrived_at": func.coalesce(insert.excluded.last_arrived_at, table.c.last_arrived_at),
                    "arrivals": table.c.arrivals + insert.excluded.arrivals,
                },
            )
        )
