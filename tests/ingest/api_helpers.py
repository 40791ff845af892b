"""What the ingestion API tests share: a store with one account and one contact keyed by the
customer's ids, a write key, and a client posting through the real Starlette app."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from starlette.testclient import TestClient

from engine.ingest.api.keys import create_key
from engine.store import models
from engine.webhooks.app import create_app
from tests.factories import Store

NOW = datetime(2026, 12, 5, 9, 0)


def basic(key: str) -> dict[str, str]:
    """The Authorization header a Segment library sends: the write key as user, no password."""
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def seeded(db: Engine) -> tuple[int, int]:
    """Account `acme` with contact `u1`; returns their internal ids."""
    store = Store(db, NOW)
    account = store.account(external_id="acme", name="Acme")
    contact = store.contact(account, external_id="u1", email="u1@acme.example")
    return account, contact


def new_key(db: Engine, name: str = "web") -> str:
    """A fresh write key named `name`."""
    with db.begin() as conn:
        return create_key(conn, name, NOW)


def client(db: Engine, key: str | None) -> Iterator[TestClient]:
    """A TestClient on the app of `touchflow serve`, authenticated with `key` when given."""
    app = create_app(db, None, clock=lambda: NOW)
    with TestClient(app, headers=basic(key) if key else {}) as http:
        yield http


def rows(db: Engine, table: Any) -> list[Any]:
    """Every row of `table`, in id order when it has one."""
    query = select(table)
    if "id" in table.c:
        query = query.order_by(table.c.id)
    with db.connect() as conn:
        return list(conn.execute(query))


def events(db: Engine) -> list[Any]:
    """Every stored event."""
    return rows(db, models.events)
