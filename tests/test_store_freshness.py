"""`record_arrivals`: data time only moves forward, arrival time and counts accumulate."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, select

from engine.store.freshness import Arrival, event_source, record_arrivals
from engine.store.models import data_sources


def test_arrivals_accumulate_and_data_time_never_moves_back(db: Engine) -> None:
    login = event_source("login")
    with db.begin() as conn:
        record_arrivals(
            conn,
            {login: Arrival(3, datetime(2026, 1, 2)), "accounts": Arrival(1, datetime(2026, 1, 1))},
            datetime(2026, 1, 5),
        )
    with db.begin() as conn:  # a backfill of older events, and an empty write
        record_arrivals(
            conn, {login: Arrival(2, datetime(2025, 1, 2)), "contacts": Arrival(0, None)}, datetime(2026, 1, 6)
        )
    with db.connect() as conn:
        rows = {row.source: row for row in conn.execute(select(data_sources))}
    assert set(rows) == {login, "accounts"}
    assert rows[login].last_data_at == datetime(2026, 1, 2)
    assert rows[login].last_arrived_at == datetime(2026, 1, 6)
    assert rows[login].arrivals == 5
    assert (rows["accounts"].arrivals, rows["accounts"].last_data_at) == (1, datetime(2026, 1, 1))
