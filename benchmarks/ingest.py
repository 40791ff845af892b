"""`touchflow bench ingest`: events through the ingestion API against the same rows inserted
directly, in the same run, on the same store.

* the API — a real uvicorn server (its own process, so its work does not compete with the
  clients for the interpreter lock) and `clients` threads posting `/v1/batch` requests of 100
  track messages with httpx: authentication, JSON parsing and checking, resolving the contact,
  one transaction per batch with ON CONFLICT inserts and the arrivals in `data_sources`;
* the floor — `bulk_insert` of the very rows the API stored (sqlite3 executemany / psycopg
  COPY, one transaction): what writing the events costs with nothing around it.

The store holds one account and 100 contacts; the floor's rows are deleted afterwards, and the
API's rows before the floor runs, so both sides start from the same table.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import uvicorn
from sqlalchemy import Engine, delete, insert, select

from engine.ingest.api.keys import create_key, revoke_key
from engine.store.bulk import bulk_insert
from engine.store.db import connect, migrate
from engine.store.models import accounts, contacts, events
from engine.webhooks.app import create_app

BATCH = 100
CONTACTS = 100
_COLUMNS = ("account_id", "contact_id", "name", "occurred_at", "properties", "event_id", "write_key_id")


@dataclass(frozen=True)
class IngestResult:
    """Events per second each way, and their ratio (API / floor)."""

    database: str
    events: int
    clients: int
    api_s: float
    floor_s: float

    @property
    def ratio(self) -> float:
        """The API's rate as a share of the floor's."""
        return self.floor_s / self.api_s if self.api_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready values."""
        return {
            "database": self.database,
            "events": self.events,
            "batch": BATCH,
            "clients": self.clients,
            "api_events_per_s": round(self.events / self.api_s, 1),
            "floor_events_per_s": round(self.events / self.floor_s, 1),
            "ratio": round(self.ratio, 3),
            "api_s": round(self.api_s, 3),
            "floor_s": round(self.floor_s, 3),
        }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_up(base: str, alive: Any, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the ingestion server stopped while starting")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"the ingestion server did not answer on {base} within {deadline_s:.0f} s")


@contextmanager
def running_server(engine: Engine) -> Iterator[str]:
    """`touchflow serve`'s app over `engine`, served by uvicorn in a thread; yields its base URL."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(engine, None), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="ingest-server", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, thread.is_alive)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def server_process(url: str) -> Iterator[str]:
    """The same app over the store at `url`, in a child process (killed on exit); its base URL."""
    port = _free_port()
    child = subprocess.Popen([sys.executable, "-m", "benchmarks.ingest", url, str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, lambda: child.poll() is None)
        yield base
    finally:
        child.terminate()
        child.wait(timeout=10)


def _messages(run: str, n: int, start: datetime, tag: str = "api-") -> Iterator[list[dict[str, Any]]]:
    for first in range(0, n, BATCH):
        yield [
            {
                "type": "track",
                "userId": f"{run}-u{i % CONTACTS}",
                "event": "Feature Used",
                "properties": {"feature": f"report-{i % 7}", "i": i},
                "timestamp": (start + timedelta(seconds=i)).isoformat() + "Z",
                "messageId": f"{run}-{tag}{i}",
            }
            for i in range(first, min(n, first + BATCH))
        ]


def run(url: str, n: int, clients: int = 4) -> IngestResult:
    """Post `n` events through the API of a server on `url`'s store, then bulk-insert the same
    rows; both timed. The store is migrated; the rows this run wrote are removed at the end."""
    engine = connect(url)
    migrate(engine)
    run_id = "bench-" + uuid.uuid4().hex[:8]
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        key = create_key(conn, run_id, now)
        account = conn.execute(
            insert(accounts).values(
                name="Bench", tier="tech_touch", plan="pro", arr=1.0, seats_purchased=1, lifecycle_stage="adoption",
                contract_start=date(2026, 1, 1), renewal_date=date(2027, 1, 1), status="active",
                timezone="UTC", locale="en", traits={}, external_id=f"{run_id}-acme",
            ).returning(accounts.c.id)
        ).scalar_one()  # fmt: skip
        conn.execute(
            insert(contacts),
            [
                {"account_id": account, "email": f"u{i}@bench.example", "name": f"U{i}", "role": "user",
                 "traits": {}, "external_id": f"{run_id}-u{i}"}
                for i in range(CONTACTS)
            ],
        )  # fmt: skip
    ours = events.c.event_id.like(f"segment:{run_id}-api-%") | events.c.event_id.like(f"{run_id}-floor-%")
    try:
        auth = (key, "")
        with server_process(url) as base:

            def post(batch: list[dict[str, Any]], http: httpx.Client) -> None:
                answer = http.post("/v1/batch", json={"batch": batch})
                if answer.status_code != 200 or answer.json() != {"success": True}:
                    raise RuntimeError(f"the API refused a batch: {answer.status_code} {answer.text[:300]}")

            local = threading.local()

            def client() -> httpx.Client:
                if not hasattr(local, "http"):
                    local.http = httpx.Client(base_url=base, auth=auth, timeout=120)
                return local.http  # type: ignore[no-any-return]

            post(next(_messages(run_id, 1, now, "warm-")), client())  # connection and first-request costs
            started = time.perf_counter()
            with ThreadPoolExecutor(clients, thread_name_prefix="ingest-client") as pool:
                list(pool.map(lambda batch: post(batch, client()), _messages(run_id, n, now)))
            api_s = time.perf_counter() - started
        with engine.connect() as conn:
            rows = [tuple(r) for r in conn.execute(select(*[events.c[c] for c in _COLUMNS]).where(ours))]
        if len(rows) != n:
            raise RuntimeError(f"the API stored {len(rows)} events of {n}")
        with engine.begin() as conn:
            conn.execute(delete(events).where(ours))
        floor_rows = [(*row[:5], f"{run_id}-floor-{i}", row[6]) for i, row in enumerate(rows)]
        started = time.perf_counter()
        with engine.begin() as conn:
            bulk_insert(conn, events, _COLUMNS, floor_rows)
        floor_s = time.perf_counter() - started
    finally:
        with engine.begin() as conn:
            conn.execute(delete(events).where(ours | events.c.event_id.like(f"segment:{run_id}-warm-%")))
            revoke_key(conn, run_id, now)
        engine.dispose()
    return IngestResult(engine.dialect.name, n, clients, api_s, floor_s)


def _serve(url: str, port: int) -> None:
    uvicorn.run(create_app(connect(url), None), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":  # the server process of `server_process`
    _serve(sys.argv[1], int(sys.argv[2]))
