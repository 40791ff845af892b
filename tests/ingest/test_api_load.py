"""The ingestion API under load on PostgreSQL (a real uvicorn server, four concurrent clients that
retry), and the `touchflow keys` commands."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner, Result

from benchmarks.ingest import running_server
from engine.cli import app
from engine.store import models
from engine.store.db import connect
from tests.conftest import _pg_or_skip, migrated_pg_schema
from tests.factories import Store
from tests.ingest.api_helpers import NOW, basic, new_key

CLIENTS = 4
BATCHES = 15
PER_BATCH = 40


def _batches(client: int) -> list[list[dict[str, object]]]:
    """Client `client`'s batches: its own events, plus some messages of its neighbour's (the same
    messageIds another client also sends, as two relays of one source would)."""
    out = []
    for b in range(BATCHES):
        batch: list[dict[str, object]] = [
            {
                "type": "track",
                "userId": f"u{(client + i) % 3}",
                "event": f"Feature Used {i % 4}",
                "messageId": f"c{client}-b{b}-{i}",
                "timestamp": f"2026-12-0{1 + b % 4}T10:{i:02d}:00Z",
                "properties": {"client": client, "i": i},
            }
            for i in range(PER_BATCH)
        ]
        neighbour = (client + 1) % CLIENTS
        batch += [{**m, "messageId": f"c{neighbour}-b{b}-{i}"} for i, m in enumerate(batch[:5])]
        batch.append({"type": "identify", "userId": f"u{client % 3}", "traits": {"last_client": client}})
        out.append(batch)
    return out


def _post_all(url: str, key: str, client: int) -> int:
    """Post every batch; retry each third one (as a client does after a timeout); return the posts."""
    posted = 0
    rng = random.Random(client)
    with httpx.Client(base_url=url, headers=basic(key), timeout=60) as http:
        for number, batch in enumerate(_batches(client)):
            for _ in range(2 if number % 3 == 0 else 1):
                rng.shuffle(batch)
                answer = http.post("/v1/batch", json={"batch": batch})
                assert answer.status_code == 200, answer.text
                assert answer.json() == {"success": True}, answer.text
                posted += 1
    return posted


def test_four_concurrent_clients_lose_nothing_and_double_nothing() -> None:
    with migrated_pg_schema(_pg_or_skip(), "load") as url:
        engine = connect(url)
        store = Store(engine, NOW)
        account = store.account(external_id="acme")
        for n in range(3):
            store.contact(account, external_id=f"u{n}")
        key = new_key(engine)
        try:
            with running_server(engine) as base, ThreadPoolExecutor(CLIENTS) as pool:
                posts = list(pool.map(lambda c: _post_all(base, key, c), range(CLIENTS)))
            assert sum(posts) == CLIENTS * (BATCHES + (BATCHES + 2) // 3)
            sent = {
                f"segment:{m['messageId']}" for c in range(CLIENTS) for b in _batches(c) for m in b if "messageId" in m
            }
            with engine.connect() as conn:
                stored = conn.execute(select(models.events.c.event_id, models.events.c.write_key_id)).all()
                arrivals = conn.execute(
                    select(func.sum(models.data_sources.c.arrivals)).where(models.data_sources.c.source.like("event:%"))
                ).scalar_one()
            ids = [row.event_id for row in stored]
            assert len(ids) == len(set(ids)) == CLIENTS * BATCHES * PER_BATCH
            assert set(ids) == sent
            assert {row.write_key_id for row in stored} != {None}
            assert arrivals == len(ids)  # arrivals count what was written, never a retry
        finally:
            engine.dispose()


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "200")
    return db_url


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_keys_commands(cli: str, db: Engine) -> None:
    created = invoke("keys", "create", "segment-prod")
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("tfk_") and len(key) > 30
    assert invoke("keys", "create", "segment-prod").exit_code == 1
    listed = [json.loads(line) for line in invoke("keys", "list", "--format", "json").stdout.splitlines()]
    assert [(k["name"], k["prefix"], k["revoked"]) for k in listed] == [("segment-prod", key[:12], None)]
    assert key not in invoke("keys", "list").stdout
    table = invoke("keys", "list").stdout
    assert "segment-prod" in table and key[:12] in table
    revoked = invoke("keys", "revoke", "segment-prod")
    assert revoked.exit_code == 0, revoked.output
    again = invoke("keys", "revoke", "segment-prd")
    assert again.exit_code == 1 and "segment-prod" in again.output  # did you mean
    [row] = json.loads("[" + invoke("keys", "list", "--format", "json").stdout.strip() + "]")
    assert row["revoked"] is not None
    with db.connect() as conn:
        [stored] = conn.execute(select(models.write_keys)).all()
    assert stored.revoked_at is not None
