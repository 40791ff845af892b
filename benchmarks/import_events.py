"""`touchflow bench import`: `touchflow import events FILE` against the fastest bare load.

One run generates N events (and the accounts and contacts they name) as a CSV file, then loads
them twice, each time into a fresh store holding only those accounts and contacts:

* the floor — the same rows, already parsed (ids resolved, times and properties typed), through
  `engine.store.bulk.bulk_insert` in one transaction: PostgreSQL COPY, SQLite executemany. No
  reading, no checks, no keys compared: what writing the rows costs with nothing around it;
* the engine — `import_files(…, "events", [FILE])`, the code path of the command: reading the
  CSV, checking every value against the contract, keys and duplicates, references, the upsert.

Both load into an events table with its indexes in place, as an import into a live store does.
On PostgreSQL each side gets its own schema of the given database, dropped afterwards.
"""

from __future__ import annotations

import csv
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from benchmarks.scratch import scratch_store
from engine.ingest.load import import_files
from engine.store.bulk import bulk_insert
from engine.store.models import events

NOW = datetime(2026, 12, 5, 9, 0)
_NAMES = ("login", "feature_used", "support_ticket_opened", "invoice_overdue", "nps_submitted")
_FEATURES = ("sso", "reports", "api", "exports", "alerts")
# Events per account, and contacts per account: about the demo store's proportions.
_EVENTS_PER_ACCOUNT = 30
_CONTACTS = 3


@dataclass(frozen=True)
class ImportBench:
    """The figures of one run."""

    events: int
    database: str
    floor_seconds: float
    import_seconds: float
    floor_rows_per_s: float
    import_rows_per_s: float
    ratio: float
    inserted: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def _event(i: int, accounts: int) -> tuple[int, int, str, datetime, dict[str, str]]:
    """Event i: (account number, contact number within it, name, time, properties)."""
    account = i % accounts
    name = _NAMES[(i * 7) % len(_NAMES)]
    props = {"feature": _FEATURES[i % len(_FEATURES)]} if name == "feature_used" else {}
    return account, (i // accounts) % _CONTACTS, name, NOW - timedelta(seconds=(i * 37) % (180 * 86400)), props


def write_files(directory: Path, n: int) -> tuple[Path, Path, Path, int]:
    """accounts.csv, contacts.csv and events.csv for `n` events; also the number of accounts."""
    accounts = max(1, n // _EVENTS_PER_ACCOUNT)
    paths = directory / "accounts.csv", directory / "contacts.csv", directory / "events.csv"
    with paths[0].open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(
            ["external_id", "name", "tier", "plan", "arr", "seats_purchased", "lifecycle_stage"]
            + ["contract_start", "renewal_date", "timezone", "locale"]
        )
        for a in range(accounts):
            out.writerow(
                [f"a{a}", f"Account {a}", "tech_touch", "pro", 1200, 10, "adopting"]
                + ["2026-01-01", "2027-01-01", "Europe/Paris", "en"]
            )
    with paths[1].open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["external_id", "account_external_id", "email", "name", "role"])
        for a in range(accounts):
            for c in range(_CONTACTS):
                out.writerow(
                    [f"a{a}-c{c}", f"a{a}", f"p{c}@a{a}.example", f"Person {c}", "admin" if c == 0 else "user"]
                )
    with paths[2].open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(
            ["event_id", "account_external_id", "contact_external_id", "name", "occurred_at"] + ["properties.feature"]
        )
        for i in range(n):
            account, contact, name, at, props = _event(i, accounts)
            out.writerow(
                [f"e{i}", f"a{account}", f"a{account}-c{contact}", name, at.isoformat() + "Z", props.get("feature", "")]
            )
    return *paths, accounts


def _floor_rows(n: int, accounts: int, ids: dict[str, int]) -> Iterator[tuple[Any, ...]]:
    # Store ids: accounts and contacts were imported in file order into an empty store.
    for i in range(n):
        account, contact, name, at, props = _event(i, accounts)
        yield account + 1, account * _CONTACTS + contact + 1, name, at, props, f"e{i}"


def run(n: int, url: str | None) -> ImportBench:
    """Generate `n` events and time both sides; `url` None means SQLite files in a temp dir."""
    with tempfile.TemporaryDirectory(prefix="touchflow-bench-import-") as tmp:
        directory = Path(tmp)
        accounts_csv, contacts_csv, events_csv, accounts = write_files(directory, n)
        columns = ("account_id", "contact_id", "name", "occurred_at", "properties", "event_id")
        with scratch_store(url, directory, "import_floor") as store:
            _setup(store, accounts_csv, contacts_csv)
            started = time.perf_counter()
            with store.begin() as conn:
                bulk_insert(conn, events, columns, _floor_rows(n, accounts, {}))
            floor = time.perf_counter() - started
        with scratch_store(url, directory, "import_engine") as store:
            _setup(store, accounts_csv, contacts_csv)
            started = time.perf_counter()
            summary = import_files(store, "events", [events_csv], now=NOW)
            engine_seconds = time.perf_counter() - started
            database = store.dialect.name
    return ImportBench(
        events=n,
        database=database,
        floor_seconds=round(floor, 3),
        import_seconds=round(engine_seconds, 3),
        floor_rows_per_s=round(n / floor),
        import_rows_per_s=round(n / engine_seconds),
        ratio=round(floor / engine_seconds, 3),
        inserted=summary.inserted,
    )


def _setup(store: Engine, accounts_csv: Path, contacts_csv: Path) -> None:
    for kind, path in (("accounts", accounts_csv), ("contacts", contacts_csv)):
        summary = import_files(store, kind, [path], now=NOW)
        if summary.rejected or not summary.written:
            raise RuntimeError(f"bench setup: {kind} not imported ({summary.as_dict()})")
