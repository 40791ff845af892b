"""Profiling the customer store into a `Catalog`, with queries whose cost stays bounded.

On a store of a million accounts every query here is either one aggregate pass over a table or
an index (row counts and fill rates in one statement per table; events counted per name over the
`(name, occurred_at)` index; the few distinct values of a low-cardinality column by GROUP BY), or
reads a bounded sample: traits from at most `sample` rows picked by id across the whole table,
property keys from the latest `sample // 10` events of each name.

The store is written by other systems, so every value read may be hostile: traits that are not
JSON or not an object, text that is not UTF-8. Such a value costs only itself (counted in the
catalogue's notes), never the catalogue.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from sqlalchemy import Column, Connection, String, Table, Text, cast, func, select, type_coerce

from engine.catalog.snapshot import Catalog, EventProfile, FieldProfile, TraitProfile
from engine.store.catalogue import ACCOUNT_FIELDS, CONTACT_FIELDS, FieldInfo
from engine.store.models import accounts, contacts, events
from engine.store.readable import is_read_error

SAMPLE = 2000
"""Rows per table the traits are read from."""
LOW_CARDINALITY = 50
"""A text column with at most this many distinct values has them listed."""
MAX_EVENT_NAMES = 500
"""Event names whose property keys are sampled (the most frequent first)."""
EXAMPLES = 3
_CHUNK = 500  # ids per IN (…): well under every driver's limit on bound parameters


def profile_store(conn: Connection, sample: int = SAMPLE) -> Catalog:
    """The catalogue of the store behind `conn`: fields, traits, events. Only reads."""
    notes: list[str] = []
    rows: dict[str, int] = {}
    fields: list[FieldProfile] = []
    traits: list[TraitProfile] = []
    for table, owner, infos in ((accounts, "account", ACCOUNT_FIELDS), (contacts, "contact", CONTACT_FIELDS)):
        total, filled = _fill(conn, table)
        rows[table.name] = total
        ids = _sample_ids(conn, table, total, sample)
        for name, info in infos.items():
            values = _few_values(conn, table, info, ids, notes) if info.kind == "string" else None
            fill = filled[name] / total if total else 0.0
            fields.append(FieldProfile(owner, name, info.kind, round(fill, 4), values))
        docs = _json_values(conn, table.c.traits, table.c.id.in_, ids, notes, f"{table.name}.traits")
        traits.extend(_traits(owner, docs, len(ids)))
    found, total_events = _events(conn, sample // 10 or 1, notes)
    rows["events"] = total_events
    return Catalog(rows, sample, tuple(fields), tuple(traits), tuple(found), tuple(notes))


def _fill(conn: Connection, table: Table) -> tuple[int, dict[str, int]]:
    """Row count and non-null count per column: one pass, no value is decoded."""
    columns = list(table.columns)
    counts = conn.execute(select(func.count(), *(func.count(c) for c in columns))).one()
    return int(counts[0]), {c.name: int(n) for c, n in zip(columns, counts[1:], strict=True)}


def _sample_ids(conn: Connection, table: Table, total: int, sample: int) -> list[int]:
    """Up to `sample` ids spread over the whole id range (index lookups, never a scan)."""
    if total <= sample:
        return list(conn.execute(select(table.c.id).order_by(table.c.id)).scalars())
    low, high = conn.execute(select(func.min(table.c.id), func.max(table.c.id))).one()
    step = (int(high) - int(low)) / (sample - 1)
    pivots = sorted({int(low) + round(i * step) for i in range(sample)})
    found: list[int] = []
    for chunk in _chunks(pivots):
        found.extend(conn.execute(select(table.c.id).where(table.c.id.in_(chunk))).scalars())
    if len(found) < sample // 2:  # ids with large gaps: the first ones are a sample too
        found = list(conn.execute(select(table.c.id).order_by(table.c.id).limit(sample)).scalars())
    return sorted(found)


def _few_values(
    conn: Connection, table: Table, info: FieldInfo, ids: list[int], notes: list[str]
) -> tuple[str, ...] | None:
    """Every distinct value of a text column that has few of them, or None.

    The sample decides whether a column is worth grouping (a name or an email is not: its values
    hardly repeat); then one GROUP BY over the table lists them all, so a rare value is not
    reported as unseen by `validate`.
    """
    column: Column[Any] = table.c[info.name]
    where = f"{table.name}.{info.name}"
    try:
        seen = [
            v for chunk in _chunks(ids) for v in conn.execute(select(column).where(table.c.id.in_(chunk))).scalars()
        ]
        present = [v for v in seen if v is not None]
        distinct = set(present)
        if not present or len(distinct) > LOW_CARDINALITY or len(distinct) > len(present) / 2:
            return None
        grouped = conn.execute(select(column).where(column.is_not(None)).group_by(column).limit(LOW_CARDINALITY + 1))
        values = [str(v) for v in grouped.scalars()]
    except Exception as exc:
        if not is_read_error(conn, exc):
            raise
        notes.append(f"{where}: some values cannot be read (not valid UTF-8 text); its values are not listed")
        return None
    return None if len(values) > LOW_CARDINALITY else tuple(sorted(values))


def _json_values(
    conn: Connection, column: Column[Any], where_in: Any, keys: list[Any], notes: list[str], where: str
) -> list[Any]:
    """The JSON documents of `column` for the rows `where_in(keys)` selects, parsed here rather
    than by the driver, so that a document that is not JSON costs only itself."""
    raw: list[Any] = []
    unreadable = 0
    # As JSON text on every database (psycopg would decode JSONB itself; a JSON string would then
    # look like text that is not JSON).
    raw_column = cast(column, Text)
    for chunk in _chunks(keys):
        try:
            raw.extend(conn.execute(select(raw_column).where(where_in(chunk))).scalars())
        except Exception as exc:
            if not is_read_error(conn, exc):
                raise
            for key in chunk:  # one at a time: only the bad rows are lost
                try:
                    raw.extend(conn.execute(select(raw_column).where(where_in([key]))).scalars())
                except Exception as one:
                    if not is_read_error(conn, one):
                        raise
                    unreadable += 1
    docs: list[Any] = []
    read = len(raw) + unreadable
    for value in raw:
        if isinstance(value, bytes | bytearray | memoryview):
            value = bytes(value).decode("utf-8", errors="replace")
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                unreadable += 1
                continue
        docs.append(value)
    not_objects = sum(1 for d in docs if d is not None and not isinstance(d, dict))
    if unreadable or not_objects:
        notes.append(
            f"{where}: of {read:,} sampled, {unreadable:,} not readable JSON and "
            f"{not_objects:,} not a JSON object (skipped)"
        )
    return [d for d in docs if isinstance(d, dict)]


def _traits(owner: str, docs: list[dict[str, Any]], sampled: int) -> list[TraitProfile]:
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    examples: dict[str, list[str]] = defaultdict(list)
    for doc in docs:
        for key, value in doc.items():
            kind = json_kind(value)
            if kind is None:
                continue
            kinds[key][kind] += 1
            shown = _shown(value)
            if len(examples[key]) < EXAMPLES and shown not in examples[key]:
                examples[key].append(shown)
    return [
        TraitProfile(
            owner,
            str(key),
            " | ".join(k for k, _ in counts.most_common()),
            round(sum(counts.values()) / sampled, 4) if sampled else 0.0,
            tuple(examples[key]),
        )
        for key, counts in sorted(kinds.items())
    ]


def json_kind(value: Any) -> str | None:
    """The kind of a JSON value as an author would use it; None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    text = str(value)
    if len(text) == 10:
        try:
            date.fromisoformat(text)
            return "date"
        except ValueError:
            pass
    if 16 <= len(text) <= 32 and text[10:11] in ("T", " "):
        try:
            datetime.fromisoformat(text)
            return "datetime"
        except ValueError:
            pass
    return "text"


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= 24 else text[:23] + "…"


def _events(conn: Connection, per_name: int, notes: list[str]) -> tuple[list[EventProfile], int]:
    """Events counted per name (the `(name, occurred_at)` index), property keys sampled per name."""
    # The latest time is read as text: a value that is not a date must not fail the statement.
    latest = type_coerce(func.max(events.c.occurred_at), String)
    try:
        counted = conn.execute(select(events.c.name, func.count(), latest).group_by(events.c.name)).all()
    except Exception as exc:
        if not is_read_error(conn, exc):
            raise
        notes.append("events.name: some names cannot be read (not valid UTF-8 text); events are not listed")
        return [], int(conn.execute(select(func.count()).select_from(events)).scalar_one())
    counted = sorted(counted, key=lambda r: (-int(r[1]), str(r[0])))
    found: list[EventProfile] = []
    for n, (name, count, last) in enumerate(counted):
        keys: tuple[str, ...] = ()
        if n < MAX_EVENT_NAMES:
            recent = select(events.c.id).where(events.c.name == name).order_by(events.c.occurred_at.desc())
            ids = list(conn.execute(recent.limit(per_name)).scalars())
            docs = _json_values(conn, events.c.properties, events.c.id.in_, ids, notes, f"events '{name}' properties")
            keys = tuple(sorted({str(k) for d in docs for k in d}))
        found.append(EventProfile(str(name), int(count), _moment(last), keys))
    return sorted(found, key=lambda e: e.name), sum(e.count for e in found)


def _moment(value: Any) -> str | None:
    """A stored time as `YYYY-MM-DD HH:MM:SS`, whatever the driver returned; text as it is."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    try:
        return datetime.fromisoformat(str(value)).isoformat(sep=" ", timespec="seconds")
    except ValueError:
        return str(value)


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
