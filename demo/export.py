"""`touchflow demo-data --export DIR`: the store written as `touchflow import` files.

csms.csv, accounts.csv, contacts.csv, events.jsonl and suppressions.csv, in the data contract of
docs/data.md, so that importing them (in that order) into a fresh store gives the same customers:
a worked example of the files a team brings, and a round trip that keeps the import honest.

Rows are keyed by their `external_id` (the demo store sets one: `csm-N`, `acct-N`, `contact-N`);
a row without one gets that same form, and an event without an `event_id` gets `event-N`. The
few contacts whose address the contract refuses (the demo's deliberate CRM typos) are left out
with their events and suppressions, and counted: an import would reject them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, Engine, Table, func, select

from engine.addresses import email_problem
from engine.store import models

# Rows fetched from the store at a time: the export streams, whatever the store's size.
_FETCH = 5_000
_PREFIX = {"csms": "csm", "accounts": "acct", "contacts": "contact"}


@dataclass(frozen=True)
class ExportSummary:
    """What was written, and what was left out because an import would refuse it."""

    csms: int
    accounts: int
    contacts: int
    events: int
    suppressions: int
    left_out_contacts: int
    left_out_events: int


def export_store(engine: Engine, directory: Path) -> ExportSummary:
    """Write the store under `directory` (created if needed) as import files; see the module."""
    directory.mkdir(parents=True, exist_ok=True)
    with engine.connect() as conn:
        csm_ids = _external_ids(conn, models.csms)
        account_ids = _external_ids(conn, models.accounts)
        contact_ids = _external_ids(conn, models.contacts)
        refused = {
            r.id for r in _stream(conn, select(models.contacts.c.id, models.contacts.c.email)) if email_problem(r.email)
        }
        n_csms = _write_csv(
            directory / "csms.csv",
            ["external_id", "name", "email", "team"],
            ([csm_ids[r.id], r.name, r.email, r.team] for r in _stream(conn, select(models.csms))),
        )
        n_accounts = _write_table(conn, directory / "accounts.csv", models.accounts, account_ids, csm_ids, refused)
        n_contacts = _write_table(conn, directory / "contacts.csv", models.contacts, contact_ids, account_ids, refused)
        n_events, left_events = _write_events(conn, directory / "events.jsonl", account_ids, contact_ids, refused)
        n_suppressions = _write_csv(
            directory / "suppressions.csv",
            ["email", "reason", "detail"],
            (
                [r.email, r.reason, r.detail]
                for r in _stream(conn, select(models.suppressions).order_by(models.suppressions.c.email))
                if not email_problem(r.email)
            ),
        )
    return ExportSummary(n_csms, n_accounts, n_contacts, n_events, n_suppressions, len(refused), left_events)


def _external_ids(conn: Connection, table: Table) -> dict[int, str]:
    prefix = _PREFIX[table.name]
    return {r.id: r.external_id or f"{prefix}-{r.id}" for r in conn.execute(select(table.c.id, table.c.external_id))}


def _stream(conn: Connection, query: Any) -> Iterator[Any]:
    if not query._order_by_clauses:  # the first column (the id): files in a stable order
        query = query.order_by(*query.selected_columns[:1])
    yield from conn.execution_options(stream_results=True, yield_per=_FETCH).execute(query)


def _write_table(
    conn: Connection, path: Path, table: Table, own: dict[int, str], parents: dict[int, str], refused: set[int]
) -> int:
    """accounts (naming their CSM) or contacts (naming their account), traits as traits.<key>."""
    keys = sorted(_trait_keys(conn, table))
    if table is models.accounts:
        columns = ["name", "tier", "plan", "arr", "seats_purchased", "lifecycle_stage", "contract_start"]
        columns += ["renewal_date", "status", "timezone", "locale"]
        parent, parent_column = "csm_id", "csm_external_id"
    else:
        columns = ["email", "name", "role", "timezone", "locale"]
        parent, parent_column = "account_id", "account_external_id"
    header = ["external_id", parent_column, *columns, *(f"traits.{key}" for key in keys)]

    def rows() -> Iterator[list[Any]]:
        for r in _stream(conn, select(table)):
            if table is models.contacts and r.id in refused:
                continue
            link = r._mapping[parent]
            traits = r.traits if isinstance(r.traits, dict) else {}
            yield [
                own[r.id],
                parents[link] if link is not None else "",
                *(_cell(r._mapping[c]) for c in columns),
                *(_cell(traits.get(key)) for key in keys),
            ]

    return _write_csv(path, header, rows())


def _trait_keys(conn: Connection, table: Table) -> set[str]:
    keys: set[str] = set()
    for r in _stream(conn, select(table.c.id, table.c.traits)):
        if isinstance(r.traits, dict):
            keys.update(r.traits)
    return keys


def _write_events(
    conn: Connection, path: Path, accounts: dict[int, str], contacts: dict[int, str], refused: set[int]
) -> tuple[int, int]:
    written = left = 0
    with path.open("w", encoding="utf-8") as out:
        for r in _stream(conn, select(models.events)):
            if r.contact_id in refused or r.account_id not in accounts:
                left += 1
                continue
            row = {
                "event_id": r.event_id or f"event-{r.id}",
                "account_external_id": accounts[r.account_id],
                "contact_external_id": contacts.get(r.contact_id) if r.contact_id is not None else None,
                "name": r.name,
                "occurred_at": r.occurred_at.isoformat() + "Z",
                "properties": r.properties if isinstance(r.properties, dict) else {},
            }
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += 1
    return written, left


def _cell(value: Any) -> Any:
    """A value as a CSV cell the import reads back the same: dates ISO, booleans true/false."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


def _write_csv(path: Path, header: Sequence[str], rows: Iterator[Sequence[Any]]) -> int:
    count = 0
    stream: IO[str]
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def count_rows(engine: Engine, table: Table) -> int:
    """Rows in `table` (for the command's summary)."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
