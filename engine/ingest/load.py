"""Checking import rows against the contract and upserting them on the customer's own ids.

Each chunk of rows is validated, its references (a contact's account, an account's CSM, an
event's account and contact) resolved against the store, compared with the rows already stored
under the same keys, and written: new keys inserted, changed rows updated, identical rows left
alone — so importing a file twice changes nothing. The whole import is one transaction: with
`on_error="stop"` any bad row rolls it all back; a dry run always does."""

from __future__ import annotations

import difflib
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Connection, Engine, MetaData, Table, bindparam, select, true

from engine.ingest.contract import CONTRACT, BadValue, Kind, bag_value, converter
from engine.ingest.parse import ROW_ERROR, FileProblem, Position, RawRow, read_rows
from engine.ingest.seen import SeenKeys
from engine.store import models
from engine.store.bulk import bulk_insert, clear_tables, conflict_insert
from engine.store.freshness import Arrival, event_source, record_arrivals

# Rows validated, resolved and written together: bounded memory, few round trips.
CHUNK = 1000
# New rows staged before they move into their table together.
_STAGED = 50_000
# References remembered per column before the memory is emptied (a few MB at most).
_LOOKUPS = 200_000
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


@dataclass(slots=True)
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
    on_progress: Callable[[int, int], None] = lambda rows, done: None,
    now: datetime,
) -> Summary:
    """Import `paths` as rows of `kind`; `on_reject` hears of each bad row as it is found,
    `on_progress` of the rows read and the bytes of the files read so far after each chunk.
    `now` (naive UTC, the wall clock) dates the suppressions it adds and the arrival of the data
    recorded for the freshness guardrail (`data_sources`, in the same transaction).

    Raises parse.FileProblem (nothing written) when a file cannot be read at all, or when a
    CSV file's header lacks a required column."""
    started = time.perf_counter()
    summary = Summary(kind, dry_run=dry_run)
    contract = CONTRACT[kind]
    arrivals: dict[str, list[Any]] = {}  # source → [rows, latest data time]
    rows_read = bytes_before = 0
    lookups, staging = _Lookups(), _Staging()
    with engine.connect() as conn:
        transaction = conn.begin()
        for path in paths:
            seen = SeenKeys()  # duplicates inside one file
            position = Position()
            try:
                rows = read_rows(path, fmt, on_header=_header_check(contract, str(path)), position=position)
                while chunk := list(islice(rows, CHUNK)):
                    checked = _checked(contract, str(path), chunk, seen, summary, on_reject)
                    _write(conn, contract, checked, summary, on_reject, now, arrivals, lookups, staging)
                    rows_read += len(chunk)
                    on_progress(rows_read, bytes_before + position.bytes)
                summary.inserted += staging.move(conn)  # a later file may name the same keys
            finally:
                seen.close()
            bytes_before += position.bytes
        staging.drop(conn)
        keep = not dry_run and not (on_error == "stop" and summary.rejected)
        if keep:
            record_arrivals(conn, {source: Arrival(n, latest) for source, (n, latest) in arrivals.items()}, now)
            transaction.commit()
        else:
            transaction.rollback()
        summary.written = keep
    if not keep and not dry_run:  # stopped: nothing happened but the rejections
        summary.inserted = summary.updated = summary.unchanged = 0
    summary.seconds = time.perf_counter() - started
    return summary


def _header_check(kind: Kind, path: str) -> Callable[[list[str]], None]:
    """A check of a CSV header: a required column it lacks is one problem for the whole file,
    said once, rather than the same message on every row."""

    def check(names: list[str]) -> None:
        missing = [c.name for c in kind.columns if c.required and c.name not in names]
        if not missing:
            return
        strays = [name for name in names if kind.column(name) is None and not name.startswith("_")]
        said = []
        for name in missing:
            close = difflib.get_close_matches(name, strays, n=1, cutoff=0.6)
            hint = f" (is '{close[0]}' a misspelling?)" if close else ""
            said.append(f"required column '{name}' is missing from the header{hint}")
        raise FileProblem(path, 1, "; ".join(said))

    return check


def _checked(
    kind: Kind,
    path: str,
    chunk: list[tuple[int, RawRow]],
    seen: SeenKeys,
    summary: Summary,
    on_reject: Callable[[Reject], None],
) -> list[_Row]:
    valid: list[_Row] = []
    for line, raw in chunk:
        row = _Row(path, line, raw)
        problems = _validate(kind, row)
        if problems:
            _reject(row, "; ".join(problems), summary, on_reject)
        else:
            valid.append(row)
    keyed = [row for row in valid if row.values.get(kind.key) is not None]
    firsts = seen.first_lines([str(row.values[kind.key]) for row in keyed], [row.line for row in keyed])
    duplicates: set[int] = set()
    for row, first in zip(keyed, firsts, strict=True):
        if first is not None:
            duplicates.add(id(row))
            _reject(row, f"duplicate {kind.key} '{row.values[kind.key]}' (first on line {first})", summary, on_reject)
    return [row for row in valid if id(row) not in duplicates] if duplicates else valid


def _reject(row: _Row, reason: str, summary: Summary, on_reject: Callable[[Reject], None]) -> None:
    summary.rejected += 1
    on_reject(Reject(row.path, row.line, row.raw, reason))


@cache
def _parsers(kind_name: str) -> dict[str, tuple[Callable[[Any], Any], bool]]:
    """Column name → (its converter, whether it is a reference): one dict lookup per value."""
    return {c.name: (converter(c.type), c.name in _REFERENCES) for c in CONTRACT[kind_name].columns}


def _validate(kind: Kind, row: _Row) -> list[str]:
    """Fill `row.values` / `row.refs` from `row.raw`; return what is wrong with it."""
    # The innermost loop of an import (once per value of every row): kept to dict lookups.
    if ROW_ERROR in row.raw:
        return [str(row.raw[ROW_ERROR])]
    problems: list[str] = []
    bag: dict[str, Any] = {}
    bad: set[str] = set()  # columns given but wrong: already reported, not "required" too
    parsers = _parsers(kind.name)
    values, refs = row.values, row.refs
    for name, value in row.raw.items():
        entry = parsers.get(name)
        if entry is not None:
            if value == "" or value is None:
                continue
            parse, is_reference = entry
            try:
                converted = parse(value.strip() if isinstance(value, str) else value)
            except BadValue as exc:
                problems.append(f"column '{name}': {exc}")
                bad.add(name)
                continue
            (refs if is_reference else values)[name] = converted
            continue
        if name.startswith("_"):  # e.g. the _reason column of a rejects file
            continue
        if kind.bag and name == kind.bag and isinstance(value, dict):
            bag.update(value)
            continue
        if kind.bag and name.startswith(kind.bag + ".") and len(name) > len(kind.bag) + 1:
            if value not in ("", None):
                bag[name[len(kind.bag) + 1 :]] = bag_value(value) if isinstance(value, str) else value
            continue
        problems.append(kind.unknown_column_message(name))
    # Every column given and good (the usual row): nothing is missing, nothing to default.
    if len(values) + len(refs) < len(kind.columns):
        problems += _absent(kind, row, bad)
    if kind.bag:
        row.values[kind.bag] = bag
    if kind.name == "suppressions" and "email" in row.values:
        row.values["email"] = row.values["email"].lower()
    if kind.name == "events" and not problems and "event_id" not in row.values:
        row.values["event_id"] = _event_key(row)
    return problems


def _absent(kind: Kind, row: _Row, bad: set[str]) -> list[str]:
    """Columns `row` does not give: required ones are problems, the others get their default."""
    problems = []
    for column in kind.columns:
        if column.name not in row.values and column.name not in row.refs and column.name not in bad:
            if column.required:
                problems.append(f"column '{column.name}' is required")
            elif column.name in _REFERENCES:  # absent: the reference is cleared
                row.values[_REFERENCES[column.name][1]] = None
            elif column.name != kind.key:  # absent: the default, or cleared
                row.values[column.name] = column.default
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
    conn: Connection,
    kind: Kind,
    rows: list[_Row],
    summary: Summary,
    on_reject: Callable[[Reject], None],
    at: datetime,
    arrivals: dict[str, list[Any]],
    lookups: _Lookups,
    staging: _Staging,
) -> None:
    rows = _resolved(conn, rows, summary, on_reject, lookups)
    if not rows:
        return
    _count_arrivals(kind, rows, at, arrivals)
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
        summary.inserted += staging.insert(conn, table, key.name, inserts)
    if updates:
        conn.execute(table.update().where(key == bindparam("b_key")), updates)
        summary.updated += len(updates)


def _count_arrivals(kind: Kind, rows: list[_Row], at: datetime, arrivals: dict[str, list[Any]]) -> None:
    """Add `rows` (accepted, written or unchanged: either way the feed is alive) to `arrivals`:
    per event name with its newest `occurred_at`; per table, with the time they arrived."""
    if kind.name == "events":
        for row in rows:
            entry = arrivals.setdefault(event_source(row.values["name"]), [0, None])
            entry[0] += 1
            occurred = row.values["occurred_at"]
            if entry[1] is None or occurred > entry[1]:
                entry[1] = occurred
    elif kind.name != "suppressions":
        entry = arrivals.setdefault(kind.name, [0, at])
        entry[0] += len(rows)


def _differs(stored: Any, value: Any) -> bool:
    if isinstance(stored, float) or isinstance(value, float):
        return stored is None or value is None or abs(float(stored) - float(value)) > 1e-9
    return bool(stored != value)


class _Staging:
    """New rows reach their table through a temporary staging table: loaded by the driver's
    fast path (`bulk_insert`: SQLite executemany, PostgreSQL COPY) chunk after chunk, then moved
    every _STAGED rows (and at the end of each file) with one `INSERT … SELECT … ON CONFLICT DO
    NOTHING` — so a key another writer stored meanwhile is neither doubled nor an error, at a
    fraction of the cost of SQLAlchemy binding every row. The staged rows wait in the database
    (a temporary table spills to disk), not in memory."""

    def __init__(self) -> None:
        self.table: Table | None = None
        self.target: Table | None = None
        self.key = ""
        self.staged = 0

    def insert(self, conn: Connection, target: Table, key: str, rows: list[dict[str, Any]]) -> int:
        """Stage `rows` (dicts with the same keys) for `target`; return how many rows went into
        `target` (those of a move, when this call made one)."""
        names = list(rows[0])
        staging = self.table
        if staging is None or [c.name for c in staging.c] != names:
            moved = self.move(conn)
            self.drop(conn)
            staging = Table(
                f"import_{target.name}",
                MetaData(),
                *(Column(name, target.c[name].type) for name in names),
                prefixes=["TEMPORARY"],
            )
            # A left-over one is possible on SQLite, whose DDL may run outside the transaction.
            staging.drop(conn, checkfirst=True)
            staging.create(conn)
            self.table, self.target, self.key = staging, target, key
        else:
            moved = 0
        self.staged += bulk_insert(conn, staging, names, map(itemgetter(*names), rows))
        return moved + (self.move(conn) if self.staged >= _STAGED else 0)

    def move(self, conn: Connection) -> int:
        """Move the staged rows into their table, unless their key is taken; return how many went in."""
        if self.table is None or self.target is None or not self.staged:
            return 0
        names = [c.name for c in self.table.c]
        # WHERE true: SQLite reads `INSERT … SELECT … ON CONFLICT` as a join's ON without it.
        moved = conflict_insert(conn, self.target).from_select(names, select(*self.table.c).where(true()))
        result = conn.execute(moved.on_conflict_do_nothing(index_elements=[self.target.c[self.key]]))
        count = int(result.rowcount) if result.rowcount >= 0 else self.staged
        # TRUNCATE on PostgreSQL: a temporary table is never vacuumed, and dead rows would make
        # every later move scan them.
        clear_tables(conn, [self.table])
        self.staged = 0
        return count

    def drop(self, conn: Connection) -> None:
        """Drop the staging table, if one was made (inside the import's transaction)."""
        if self.table is not None:
            self.table.drop(conn)
            self.table = None


class _Lookups:
    """The store ids of the references met so far in this import (a miss kept as None).

    Events name the same accounts and contacts over and over: one query per new name rather
    than per chunk. Sound because an import never writes the tables it references (events
    reference accounts and contacts, contacts accounts, accounts CSMs). Bounded: emptied when
    it grows past _LOOKUPS entries, so memory stays flat."""

    def __init__(self) -> None:
        self.ids: dict[str, dict[str, int | None]] = {name: {} for name in _REFERENCES}
        # A contact's account: (its id, its external id).
        self.owners: dict[str, tuple[int, str | None]] = {}

    def fetch(self, conn: Connection, name: str, wanted: list[str]) -> None:
        """Look up the `wanted` references of column `name` not already known."""
        known = self.ids[name]
        if len(known) > _LOOKUPS:
            known.clear()
            if name == "contact_external_id":
                self.owners.clear()
        wanted = [ref for ref in wanted if ref not in known]
        if not wanted:
            return
        table = _REFERENCES[name][0]
        if table is models.contacts:
            owner = models.accounts
            query = (
                select(table.c.external_id, table.c.id, table.c.account_id, owner.c.external_id.label("owner"))
                .join(owner, owner.c.id == table.c.account_id)
                .where(table.c.external_id.in_(wanted))
            )
            for r in conn.execute(query):
                known[r.external_id] = r.id
                self.owners[r.external_id] = (r.account_id, r.owner)
        else:
            query = select(table.c.external_id, table.c.id).where(table.c.external_id.in_(wanted))
            known.update((r.external_id, r.id) for r in conn.execute(query))
        for ref in wanted:
            known.setdefault(ref, None)


def _resolved(
    conn: Connection, rows: list[_Row], summary: Summary, on_reject: Callable[[Reject], None], lookups: _Lookups
) -> list[_Row]:
    """Rows whose references name rows of the store, with their ids filled in; the rest rejected."""
    for name in _REFERENCES:
        wanted = sorted({row.refs[name] for row in rows if name in row.refs})
        if wanted:
            lookups.fetch(conn, name, wanted)
    ids = lookups.ids
    kept = []
    for row in rows:
        missing = [
            f"{name} '{ref}': no such {_REFERENCES[name][0].name[:-1]} in the store or earlier in this import"
            for name, ref in row.refs.items()
            if ids[name].get(ref) is None
        ]
        if not missing and _names_both(row):
            missing = _other_account(row, ids, lookups.owners)
        if missing:
            _reject(row, "; ".join(missing), summary, on_reject)
            continue
        for name, ref in row.refs.items():
            row.values[_REFERENCES[name][1]] = ids[name][ref]
        kept.append(row)
    return kept


def _names_both(row: _Row) -> bool:
    """Whether `row` names both an account and a contact (an event's, as contacts name no contact)."""
    return "contact_external_id" in row.refs and "account_external_id" in row.refs


def _other_account(
    row: _Row, ids: dict[str, dict[str, int | None]], owners: dict[str, tuple[int, str | None]]
) -> list[str]:
    """An event's contact must be one of its account's people: a row saying otherwise is wrong
    about one of the two, and the playbooks would count it for the wrong customer."""
    contact, account = row.refs["contact_external_id"], row.refs["account_external_id"]
    owner_id, owner = owners[contact]
    if owner_id == ids["account_external_id"][account]:
        return []
    shown = f"'{owner}'" if owner is not None else f"#{owner_id} (no external_id)"
    return [f"contact_external_id '{contact}' belongs to account {shown}, not '{account}'"]
