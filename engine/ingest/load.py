"""Checking import rows against the contract and upserting them on the customer's own ids.

Each chunk of rows is validated, its references (a contact's account, an account's CSM, an
event's account and contact) resolved against the store, compared with the rows already stored
under the same keys, and written: new keys inserted, changed rows updated, identical rows left
alone — so importing a file twice changes nothing. The whole import is one transaction: with
`on_error="stop"` any bad row rolls it all back; a dry run always does."""

from __future__ import annotations

import difflib
import gc
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam, select, true

from engine.ingest.columns import checked_columns
from engine.ingest.contract import CONTRACT, BadValue, Kind, bag_value, converter
from engine.ingest.parse import ROW_ERROR, FileProblem, Position, RawRow, read_rows
from engine.ingest.seen import SeenKeys
from engine.ingest.tables import REFERENCE_IDS, REFERENCES, Lookups, Staging
from engine.store import models
from engine.store.bulk import one_of
from engine.store.freshness import Arrival, event_source, record_arrivals

# Rows validated, resolved and written together: bounded memory, few round trips.
CHUNK = 1000
_TABLES: dict[str, Table] = {
    "accounts": models.accounts,
    "contacts": models.contacts,
    "csms": models.csms,
    "events": models.events,
    "suppressions": models.suppressions,
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
    lookups, staging = Lookups(), Staging()
    with engine.connect() as conn, _collector_spared():
        transaction = conn.begin()
        for path in paths:
            seen = SeenKeys()  # duplicates inside one file
            position = Position()
            # Into an empty table nothing is stored to compare with: no lookup per chunk. (A
            # key twice in the file is a duplicate; a key another writer stores meanwhile is
            # skipped on conflict.)
            fresh = conn.execute(select(true()).select_from(_TABLES[kind]).limit(1)).first() is None
            try:
                rows = read_rows(path, fmt, on_header=_header_check(contract, str(path)), position=position)
                while chunk := list(islice(rows, CHUNK)):
                    checked = _checked(contract, str(path), chunk, seen, summary, on_reject)
                    _write(conn, contract, checked, summary, on_reject, now, arrivals, lookups, staging, fresh)
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


@contextmanager
def _collector_spared() -> Iterator[None]:
    """Keep Python's cycle collector off the objects that exist before the import (the modules,
    SQLAlchemy's caches): every chunk allocates thousands of short-lived containers, and each
    full collection would walk all of them again (~8 % of an import). `gc.freeze` moves them
    out of its sight until the import ends; nothing is frozen if something else already did."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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
    # The usual chunk is checked a column at a time; one that needs it, row by row.
    fast = checked_columns(kind, REFERENCE_IDS, [raw for _, raw in chunk]) if chunk else None
    if fast is not None:
        valid = [_Row(path, line, raw, values, refs) for (line, raw), values, refs in zip(chunk, *fast, strict=True)]
        # The chunk's rows give the same columns: all or none lack a key of their own.
        if kind.name == "suppressions" or kind.key not in valid[0].values:
            for row in valid:
                _complete(kind, row)
    else:
        for line, raw in chunk:
            row = _Row(path, line, raw)
            problems = _validate(kind, row)
            if problems:
                _reject(row, "; ".join(problems), summary, on_reject)
            else:
                _complete(kind, row)
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
    return {c.name: (converter(c.type), c.name in REFERENCES) for c in CONTRACT[kind_name].columns}


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
    return problems


def _complete(kind: Kind, row: _Row) -> None:
    """What a good row's values get beyond their columns: a suppression's address in lower
    case, an event without an id the key of its content."""
    if kind.name == "suppressions":
        row.values["email"] = row.values["email"].lower()
    elif kind.name == "events" and "event_id" not in row.values:
        row.values["event_id"] = _event_key(row)


def _absent(kind: Kind, row: _Row, bad: set[str]) -> list[str]:
    """Columns `row` does not give: required ones are problems, the others get their default."""
    problems = []
    for column in kind.columns:
        if column.name not in row.values and column.name not in row.refs and column.name not in bad:
            if column.required:
                problems.append(f"column '{column.name}' is required")
            elif column.name in REFERENCES:  # absent: the reference is cleared
                row.values[REFERENCES[column.name][1]] = None
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
    lookups: Lookups,
    staging: Staging,
    fresh: bool,
) -> None:
    rows = _resolved(conn, rows, summary, on_reject, lookups)
    if not rows:
        return
    _count_arrivals(kind, rows, at, arrivals)
    table = _TABLES[kind.name]
    key = table.c[kind.key]
    stored: dict[Any, Any] = {}
    if not fresh:
        keys = [row.values[kind.key] for row in rows]
        query = select(table).where(one_of(conn, key, keys))
        stored = {r._mapping[kind.key]: r._mapping for r in conn.execute(query)}
    inserts, updates = [], []
    extra = {"source": "import", "created_at": at} if kind.name == "suppressions" else None
    for row in rows:
        before = stored.get(row.values[kind.key])
        if before is None:
            inserts.append(row.values if extra is None else row.values | extra)
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
        names = [row.values["name"] for row in rows]
        # Sorted (name, time) pairs into a dict: the last, i.e. newest, time per name stays.
        newest = dict(sorted(zip(names, [row.values["occurred_at"] for row in rows], strict=True)))
        for name, n in Counter(names).items():
            entry = arrivals.setdefault(event_source(name), [0, None])
            entry[0] += n
            if entry[1] is None or newest[name] > entry[1]:
                entry[1] = newest[name]
    elif kind.name != "suppressions":
        entry = arrivals.setdefault(kind.name, [0, at])
        entry[0] += len(rows)


def _differs(stored: Any, value: Any) -> bool:
    if isinstance(stored, float) or isinstance(value, float):
        return stored is None or value is None or abs(float(stored) - float(value)) > 1e-9
    return bool(stored != value)


def _resolved(
    conn: Connection, rows: list[_Row], summary: Summary, on_reject: Callable[[Reject], None], lookups: Lookups
) -> list[_Row]:
    """Rows whose references name rows of the store, with their ids filled in; the rest rejected."""
    if _all_found(conn, rows, lookups):
        return rows
    for name in REFERENCES:
        wanted = sorted({row.refs[name] for row in rows if name in row.refs})
        if wanted:
            lookups.fetch(conn, name, wanted)
    ids = lookups.ids
    owners = lookups.owners
    kept = []
    # Once per row of every chunk: kept to dict lookups (a rejected row's values are not used).
    for row in rows:
        refs, values = row.refs, row.values
        missing = None
        for name, ref in refs.items():
            found = ids[name].get(ref)
            if found is None:
                missing = (missing or []) + [
                    f"{name} '{ref}': no such {REFERENCES[name][0].name[:-1]} in the store or earlier in this import"
                ]
            else:
                values[REFERENCE_IDS[name]] = found
        if (
            missing is None
            and "contact_external_id" in refs
            and "account_external_id" in refs
            and owners[refs["contact_external_id"]][0] != values["account_id"]
        ):
            missing = _other_account(row, ids, owners)
        if missing:
            _reject(row, "; ".join(missing), summary, on_reject)
            continue
        kept.append(row)
    return kept


def _all_found(conn: Connection, rows: list[_Row], lookups: Lookups) -> bool:
    """The usual chunk, a column at a time: when every row names the same reference columns,
    each reference is found and every event's contact is its account's, fill in the ids and say
    True; otherwise change nothing and say False (the row by row path names what is wrong)."""
    if not rows:
        return True
    names = rows[0].refs.keys()
    if any(row.refs.keys() != names for row in rows):
        return False
    found: dict[str, list[int | None]] = {}
    for name in names:
        refs = [row.refs[name] for row in rows]
        lookups.fetch(conn, name, sorted(set(refs)))
        found[name] = list(map(lookups.ids[name].__getitem__, refs))
        if None in found[name]:
            return False
    if "contact_external_id" in found and "account_external_id" in found:
        owners = lookups.owners
        contacts = [row.refs["contact_external_id"] for row in rows]
        if [owners[contact][0] for contact in contacts] != found["account_external_id"]:
            return False
    for name, column in found.items():
        id_column = REFERENCE_IDS[name]
        for row, value in zip(rows, column, strict=True):
            row.values[id_column] = value
    return True


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
