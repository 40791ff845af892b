"""Checking import rows against the contract and upserting them on the customer's own ids.

Each chunk of rows is validated, its references (a contact's account, an account's CSM, an
event's account and contact) resolved against the store, compared with the rows already stored
under the same keys, and written: new keys inserted, changed rows updated, identical rows left
alone — so importing a file twice changes nothing. The whole import is one transaction: with
`on_error="stop"` any bad row rolls it all back; a dry run always does."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam, select

from engine.ingest.contract import CONTRACT, BadValue, Kind, bag_value, convert
from engine.ingest.parse import ROW_ERROR, RawRow, read_rows
from engine.store import models
from engine.store.bulk import conflict_insert

# Rows validated, resolved and written together: bounded memory, few round trips.
CHUNK = 1000
_TABLES: dict[str, Table] = {
    "accounts": models.accounts,
    "contacts": models.contacts,
    "csms": models.csms,
    "events": models.events,
    "suppressions": models.suppressions,
}
# Reference column → (table it names, the column of that table holding the id it gives).
_REFERENCES: dict[str, tuple[Table, str]] = {
    "csm_external_id": (models.csms, "csm_id"),
    "account_external_id": (models.accounts, "account_id"),
    "contact_external_id": (models.contacts, "contact_id"),
}


@dataclass(frozen=True)
class Reject:
    """A row not imported: where it is, what it held, and why."""

    path: str
    line: int
    row: RawRow
    reason: str

    def format(self) -> str:
        """`path:line: reason`."""
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class Summary:
    """What an import did (or, for a dry run, would do)."""

    kind: str
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    seconds: float = 0.0
    written: bool = False
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready totals, with the same figures per kind."""
        counts = {
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
        }
        return {
            **counts,
            "seconds": round(self.seconds, 3),
            "written": self.written,
            "dry_run": self.dry_run,
            "kinds": {self.kind: counts},
        }


@dataclass
class _Row:
    path: str
    line: int
    raw: RawRow
    values: dict[str, Any] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)


def import_files(
    engine: Engine,
    kind: str,
    paths: Iterable[Path],
    *,
    fmt: str | None = None,
    on_error: str = "stop",
    dry_run: bool = False,
    on_reject: Callable[[Reject], None] = lambda reject: None,
    now: datetime,
) -> Summary:
    """Import `paths` as rows of `kind`; `on_reject` hears of each bad row as it is found.
    `now` (naive UTC) dates the suppressions it adds.

    Raises parse.FileProblem (nothing written) when a file cannot be read at all."""
    started = time.perf_counter()
    summary = Summary(kind, dry_run=dry_run)
    with engine.connect() as conn:
        transaction = conn.begin()
        for path in paths:
            seen: dict[str, int] = {}  # key → line, for duplicates inside one file
            rows = read_rows(path, fmt)
            while chunk := list(islice(rows, CHUNK)):
                checked = _checked(CONTRACT[kind], str(path), chunk, seen, summary, on_reject)
                _write(conn, CONTRACT[kind], checked, summary, on_reject, now)
        keep = not dry_run and not (on_error == "stop" and summary.rejected)
        if keep:
            transaction.commit()
        else:
            transaction.rollback()
        summary.written = keep
    if not keep and not dry_run:  # stopped: nothing happened but the rejections
        summary.inserted = summary.updated = summary.unchanged = 0
    summary.seconds = time.perf_counter() - started
    return summary


def _checked(
    kind: Kind,
    path: str,
    chunk: list[tuple[int, RawRow]],
    seen: dict[str, int],
    summary: Summary,
    on_reject: Callable[[Reject], None],
) -> list[_Row]:
    good = []
    for line, raw in chunk:
        row = _Row(path, line, raw)
        problems = _validate(kind, row)
        key = row.values.get(kind.key)
        if not problems and key is not None:
            if key in seen:
                problems = [f"duplicate {kind.key} '{key}' (first on line {seen[key]})"]
            else:
                seen[key] = line
        if problems:
            _reject(row, "; ".join(problems), summary, on_reject)
        else:
            good.append(row)
    return good


def _reject(row: _Row, reason: str, summary: Summary, on_reject: Callable[[Reject], None]) -> None:
    summary.rejected += 1
    on_reject(Reject(row.path, row.line, row.raw, reason))


def _validate(kind: Kind, row: _Row) -> list[str]:
    """Fill `row.values` / `row.refs` from `row.raw`; return what is wrong with it."""
    if ROW_ERROR in row.raw:
        return [str(row.raw[ROW_ERROR])]
    problems: list[str] = []
    bag: dict[str, Any] = {}
    bad: set[str] = set()  # columns given but wrong: already reported, not "required" too
    for name, value in row.raw.items():
        if name.startswith("_"):  # e.g. the _reason column of a rejects file
            continue
        if kind.bag and name == kind.bag and isinstance(value, dict):
            bag.update(value)
            continue
        if kind.bag and name.startswith(kind.bag + ".") and len(name) > len(kind.bag) + 1:
            if value not in ("", None):
                bag[name[len(kind.bag) + 1 :]] = bag_value(value) if isinstance(value, str) else value
            continue
        column = kind.column(name)
        if column is None:
            problems.append(kind.unknown_column_message(name))
            continue
        if value in ("", None):
            continue
        try:
            converted = convert(column, value.strip() if isinstance(value, str) else value)
        except BadValue as exc:
            problems.append(f"column '{name}': {exc}")
            bad.add(name)
            continue
        (row.refs if name in _REFERENCES else row.values)[name] = converted
    for column in kind.columns:
        if column.name not in row.values and column.name not in row.refs and column.name not in bad:
            if column.required:
                problems.append(f"column '{column.name}' is required")
            elif column.name in _REFERENCES:  # absent: the reference is cleared
                row.values[_REFERENCES[column.name][1]] = None
            elif column.name != kind.key:  # absent: the default, or cleared
                row.values[column.name] = column.default
    if kind.bag:
        row.values[kind.bag] = bag
    if kind.name == "suppressions" and "email" in row.values:
        row.values["email"] = row.values["email"].lower()
    if kind.name == "events" and not problems and "event_id" not in row.values:
        row.values["event_id"] = _event_key(row)
    return problems


def _event_key(row: _Row) -> str:
    """A key from the event's content, so a file of events without ids imports idempotently."""
    content = [
        row.refs.get("account_external_id"),
        row.refs.get("contact_external_id"),
        row.values["name"],
        row.values["occurred_at"].isoformat(),
        row.values["properties"],
    ]
    return "sha256:" + hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:40]


def _write(
    conn: Connection, kind: Kind, rows: list[_Row], summary: Summary, on_reject: Callable[[Reject], None], at: datetime
) -> None:
    rows = _resolved(conn, rows, summary, on_reject)
    if not rows:
        return
    table = _TABLES[kind.name]
    key = table.c[kind.key]
    keys = [row.values[kind.key] for row in rows]
    stored = {r._mapping[kind.key]: r._mapping for r in conn.execute(select(table).where(key.in_(keys)))}
    inserts, updates = [], []
    for row in rows:
        before = stored.get(row.values[kind.key])
        if before is None:
            inserts.append(row.values | ({"source": "import", "created_at": at} if kind.name == "suppressions" else {}))
        elif any(_differs(before[name], value) for name, value in row.values.items()):
            updates.append(row.values | {"b_key": row.values[kind.key]})
        else:
            summary.unchanged += 1
    if inserts:
        # DO NOTHING on a key another writer stored meanwhile: never a duplicate, never an error.
        conn.execute(conflict_insert(conn, table).on_conflict_do_nothing(index_elements=[key]), inserts)
        summary.inserted += len(inserts)
    if updates:
        conn.execute(table.update().where(key == bindparam("b_key")), updates)
        summary.updated += len(updates)


def _differs(stored: Any, value: Any) -> bool:
    if isinstance(stored, float) or isinstance(value, float):
        return stored is None or value is None or abs(float(stored) - float(value)) > 1e-9
    return bool(stored != value)


def _resolved(conn: Connection, rows: list[_Row], summary: Summary, on_reject: Callable[[Reject], None]) -> list[_Row]:
    """Rows whose references name rows of the store, with their ids filled in; the rest rejected."""
    ids: dict[str, dict[str, int]] = {}
    for name, (table, _) in _REFERENCES.items():
        wanted = sorted({row.refs[name] for row in rows if name in row.refs})
        if wanted:
            query = select(table.c.external_id, table.c.id).where(table.c.external_id.in_(wanted))
            ids[name] = {r.external_id: r.id for r in conn.execute(query)}
    kept = []
    for row in rows:
        missing = [
            f"{name} '{ref}': no such {_REFERENCES[name][0].name[:-1]} in the store or earlier in this import"
            for name, ref in row.refs.items()
            if ref not in ids.get(name, {})
        ]
        if missing:
            _reject(row, "; ".join(missing), summary, on_reject)
            continue
        for name, ref in row.refs.items():
            row.values[_REFERENCES[name][1]] = ids[name][ref]
        kept.append(row)
    return kept
