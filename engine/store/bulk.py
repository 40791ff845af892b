"""Bulk loading through each driver's fast path.

This is the one module allowed to reach under SQLAlchemy to the DBAPI connection: a Core
`insert()` of millions of rows spends most of its time building parameter dicts and processing
values one by one, while sqlite3's `executemany` and PostgreSQL's `COPY` take plain tuples.
Everything else in the engine goes through SQLAlchemy.

The fast paths skip SQLAlchemy's statement machinery but not its value formats: on SQLite each
column goes through SQLAlchemy's own bind processor (with a faster, identical path for JSON,
Date and DateTime), so dates and datetimes are stored as the same text the ORM writes
("YYYY-MM-DD", "YYYY-MM-DD HH:MM:SS.ffffff") and read back and compare like ORM-written rows.
On PostgreSQL psycopg adapts dates and numbers itself and JSON goes as `json.dumps` text.
Conversions run a column at a time over small chunks of rows, which keeps the per-value work
in C.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from itertools import islice, repeat
from operator import attrgetter
from typing import Any, cast

import psycopg
from sqlalchemy import JSON, ColumnElement, Connection, Date, DateTime, Table, any_, bindparam, func, select, text
from sqlalchemy.dialects import postgresql, sqlite

Row = tuple[Any, ...]
# Turns one column of a batch (Python values) into what the driver should bind.
_ColumnConverter = Callable[[Sequence[Any]], list[Any]]
# (position of the column in the row, its converter)
_Conversion = tuple[int, _ColumnConverter]
_TZINFO = attrgetter("tzinfo")
# Rows converted together; small on purpose, see _converted_rows.
_CONVERT_CHUNK = 1_000


def conflict_insert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT on `table` that can say ON CONFLICT (DO NOTHING / DO UPDATE): both dialects spell
    it the same, but each on its own Insert class."""
    return postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)


def bulk_insert(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Iterable[Row],
    batch_size: int = 50_000,
    *,
    skip_conflicts_on: str | None = None,
) -> int:
    """Insert `rows` (tuples ordered like `columns`) into `table` on `conn`; return the count.

    `skip_conflicts_on` (SQLite only): a unique column; a row whose value there is taken is
    left out (`ON CONFLICT DO NOTHING`) and not counted.

    Runs inside the caller's transaction. JSON columns take Python values (dicts, lists), Date
    and DateTime columns take `date` / naive `datetime`. `rows` is consumed `batch_size` rows
    at a time (SQLite: one executemany per batch; PostgreSQL: all batches through one COPY),
    so a generator of any length loads in constant memory.

    On PostgreSQL, when the table's autoincrement key is among `columns`, its sequence is moved
    past the largest loaded id so later inserts that let the database pick ids do not collide.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    names = list(columns)
    unknown = [name for name in names if name not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {', '.join(unknown)}")
    dialect = conn.dialect.name
    if dialect == "sqlite":
        return _insert_sqlite(conn, table, names, rows, batch_size, skip_conflicts_on)
    if skip_conflicts_on is not None:
        raise ValueError(f"skip_conflicts_on is for SQLite only, not {dialect}")
    if dialect == "postgresql" and conn.dialect.driver == "psycopg":
        return _copy_postgresql(conn, table, names, rows, batch_size)
    return _insert_generic(conn, table, names, rows, batch_size)


def skips_conflicts(conn: Connection) -> bool:
    """Whether `bulk_insert` takes `skip_conflicts_on` on `conn` (SQLite's executemany does;
    PostgreSQL's COPY cannot skip a row)."""
    return conn.dialect.name == "sqlite"


def one_of(conn: Connection, column: ColumnElement[Any], values: list[Any]) -> ColumnElement[bool]:
    """`column IN values` with the whole list as one bound value (PostgreSQL `= ANY(array)`,
    SQLite `IN (SELECT value FROM json_each(…))`): `in_()` binds a parameter per value, and
    for a thousand values SQLAlchemy spends longer expanding them than the query takes."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam("values", values, type_=postgresql.ARRAY(column.type)))
    if conn.dialect.name == "sqlite":
        listed = func.json_each(bindparam("values", json.dumps(values))).table_valued("value")
        return column.in_(select(listed.c.value))
    return column.in_(values)


@contextmanager
def deferred_indexes(conn: Connection, table: Table) -> Iterator[None]:
    """Drop `table`'s declared indexes for the duration of a bulk load, then rebuild them.

    Building an index once over the loaded rows is much cheaper than maintaining it row by row
    (3M events on SQLite: ~80 s with the three indexes in place, ~30 s + 12 s to build them
    after). The indexes come from the table's metadata, i.e. the names and columns the
    migrations create. DDL is transactional on SQLite and PostgreSQL, so if the load fails and
    the transaction rolls back, the indexes come back too — but Python's sqlite3 only opens the
    transaction at the first INSERT/UPDATE/DELETE, so on SQLite write something first (as
    `clear_tables` does).
    """
    indexes = sorted(table.indexes, key=lambda index: index.name or "")
    for index in indexes:
        index.drop(conn)
    yield
    for index in indexes:
        index.create(conn)


def clear_tables(conn: Connection, tables: Sequence[Table]) -> None:
    """Delete every row of `tables` (children before parents) inside the caller's transaction.

    PostgreSQL gets one `TRUNCATE ... RESTART IDENTITY`: deleting millions of event rows one by
    one would take longer than loading them, and restarting the sequences makes ids of a fresh
    load independent of what was there before. Elsewhere a plain DELETE (SQLite turns an
    unqualified DELETE into a truncate, and reuses ids from 1 once a table is empty).
    """
    if not tables:
        return
    if conn.dialect.name == "postgresql":
        preparer = conn.dialect.identifier_preparer
        names = ", ".join(preparer.format_table(table) for table in tables)
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
        return
    for table in tables:
        conn.execute(table.delete())


# --- SQLite -------------------------------------------------------------------------------------


def _insert_sqlite(
    conn: Connection, table: Table, columns: list[str], rows: Iterable[Row], batch_size: int, conflict: str | None
) -> int:
    raw = cast(sqlite3.Connection, conn.connection.driver_connection)
    statement = _insert_statement(conn, table, columns)
    if conflict is not None:
        statement += f" ON CONFLICT ({conn.dialect.identifier_preparer.quote(conflict)}) DO NOTHING"
    conversions = _sqlite_conversions(conn, table, columns)
    cursor = raw.cursor()
    total = 0
    try:
        for batch in _converted_batches(rows, len(columns), conversions, batch_size):
            cursor.executemany(statement, batch)
            # rowcount: the rows executemany inserted, those skipped on a conflict not among them.
            total += cursor.rowcount if conflict is not None else len(batch)
    finally:
        cursor.close()
    return total


def _sqlite_conversions(conn: Connection, table: Table, columns: list[str]) -> list[_Conversion]:
    """SQLAlchemy's own bind processors, so values are stored exactly as the ORM stores them;
    the common types get a column-at-a-time fast path with the same output."""
    dialect = conn.dialect
    conversions: list[_Conversion] = []
    for index, name in enumerate(columns):
        column_type = table.c[name].type
        process = column_type.dialect_impl(dialect).bind_processor(dialect)
        if process is None:
            continue
        if isinstance(column_type, JSON):
            conversions.append((index, _per_object(process)))
        elif isinstance(column_type, DateTime):
            conversions.append((index, _sqlite_datetimes(process)))
        elif isinstance(column_type, Date):
            conversions.append((index, _sqlite_dates(process)))
        else:
            conversions.append((index, _mapped(process)))
    return conversions


def _sqlite_datetimes(process: Callable[[Any], Any]) -> _ColumnConverter:
    def convert(values: Sequence[Any]) -> list[Any]:
        # SQLAlchemy stores "YYYY-MM-DD HH:MM:SS.ffffff" — the fraction always present, as
        # SQLite compares datetimes as text. For naive datetimes that is exactly isoformat with
        # timespec="microseconds", formatted in C; anything else (None, dates, aware
        # datetimes, whose offset SQLAlchemy drops) goes through SQLAlchemy's processor.
        try:
            if not any(map(_TZINFO, values)):
                return list(map(datetime.isoformat, values, repeat(" "), repeat("microseconds")))
        except (AttributeError, TypeError):
            pass
        return list(map(process, values))

    return convert


def _sqlite_dates(process: Callable[[Any], Any]) -> _ColumnConverter:
    def convert(values: Sequence[Any]) -> list[Any]:
        # "YYYY-MM-DD"; date.isoformat called unbound gives that for datetimes too.
        try:
            return list(map(date.isoformat, values))
        except TypeError:
            return list(map(process, values))

    return convert


# --- PostgreSQL ---------------------------------------------------------------------------------


def _copy_postgresql(conn: Connection, table: Table, columns: list[str], rows: Iterable[Row], batch_size: int) -> int:
    raw = cast(psycopg.Connection[Any], conn.connection.driver_connection)
    preparer = conn.dialect.identifier_preparer
    target = preparer.format_table(table)
    column_list = ", ".join(preparer.quote(name) for name in columns)
    # psycopg adapts dates, datetimes and numbers itself; only JSON needs help, as psycopg has
    # no dumper for a bare dict: its text goes through COPY and the server parses it into JSONB.
    conversions = [
        (index, _per_object(_json_dumper(table.c[name].type)))
        for index, name in enumerate(columns)
        if isinstance(table.c[name].type, JSON)
    ]
    total = 0
    with raw.cursor() as cursor:
        with cursor.copy(f"COPY {target} ({column_list}) FROM STDIN") as copy:
            for batch in _converted_batches(rows, len(columns), conversions, batch_size):
                for row in batch:
                    copy.write_row(row)
                total += len(batch)
        key = table.autoincrement_column
        if key is not None and key.name in columns:
            _advance_sequence(cursor, target, key.name, preparer.quote(key.name))
    return total


def _json_dumper(column_type: Any) -> Callable[[Any], str | None]:
    # Like SQLAlchemy's JSON: Python None is the JSON 'null' unless none_as_null is set.
    none_value = None if getattr(column_type, "none_as_null", False) else "null"

    def dump(value: Any) -> str | None:
        return none_value if value is None else json.dumps(value)

    return dump


def _advance_sequence(cursor: psycopg.Cursor[Any], target: str, key: str, key_sql: str) -> None:
    # pg_get_serial_sequence parses its first argument as a (quoted) table name but takes the
    # second as a literal column name; it yields NULL for a key without a sequence, and setval
    # of NULL is a no-op.
    cursor.execute(
        "SELECT setval(pg_get_serial_sequence(%s, %s), m) "
        f"FROM (SELECT max({key_sql}) AS m FROM {target}) AS loaded WHERE m IS NOT NULL",
        (target, key),
    )


# --- other dialects -----------------------------------------------------------------------------


def _insert_generic(conn: Connection, table: Table, columns: list[str], rows: Iterable[Row], batch_size: int) -> int:
    # No fast path known: let SQLAlchemy process the values, but still batch the rows.
    total = 0
    for batch in _converted_batches(rows, len(columns), [], batch_size):
        conn.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in batch])
        total += len(batch)
    return total


# --- shared -------------------------------------------------------------------------------------


def _insert_statement(conn: Connection, table: Table, columns: list[str]) -> str:
    preparer = conn.dialect.identifier_preparer
    column_list = ", ".join(preparer.quote(name) for name in columns)
    markers = ", ".join("?" for _ in columns)
    return f"INSERT INTO {preparer.format_table(table)} ({column_list}) VALUES ({markers})"


def _mapped(process: Callable[[Any], Any]) -> _ColumnConverter:
    def convert(values: Sequence[Any]) -> list[Any]:
        return list(map(process, values))

    return convert


def _per_object(process: Callable[[Any], Any]) -> _ColumnConverter:
    """Apply `process` once per distinct object of the column rather than once per row.

    Callers share property dicts between rows (one {"feature": "sso"} for every such event),
    and encoding JSON is the costliest conversion. Keying on id() is sound because the chunk
    is fully built and holds every object alive: no id is reused, and every row referring to
    an object would see its final state anyway.
    """

    def convert(values: Sequence[Any]) -> list[Any]:
        distinct = {id(value): value for value in values}
        processed = {key: process(value) for key, value in distinct.items()}
        return list(map(processed.__getitem__, map(id, values)))

    return convert


def _converted_batches(
    rows: Iterable[Row], width: int, conversions: list[_Conversion], size: int
) -> Iterator[list[Row]]:
    """`rows` in lists of up to `size`, each column converted for the driver."""
    converted = _converted_rows(rows, width, conversions) if conversions else iter(rows)
    while batch := list(islice(converted, size)):
        yield batch


def _converted_rows(rows: Iterable[Row], width: int, conversions: list[_Conversion]) -> Iterator[Row]:
    # Converted in small chunks, whatever the batch size: a tuple holding a dict is never
    # untracked by the garbage collector, so a large batch of unconverted rows lives long enough
    # to be promoted to the oldest generation and sets off full collections (~+25% time on 3M
    # events). Converted rows hold no containers, so the collector stops tracking them at once.
    iterator = iter(rows)
    while chunk := list(islice(iterator, _CONVERT_CHUNK)):
        yield from _convert_chunk(chunk, width, conversions)


def _convert_chunk(chunk: list[Row], width: int, conversions: list[_Conversion]) -> list[Row]:
    # Column at a time: transposing with zip and converting whole columns with map keeps the
    # per-value work in C — several times cheaper than rebuilding each row in Python.
    columns: list[Sequence[Any]] = list(zip(*chunk, strict=True))
    if len(columns) != width:
        raise ValueError(f"rows have {len(columns)} values, expected {width}")
    for index, convert in conversions:
        columns[index] = convert(columns[index])
    return list(zip(*columns, strict=True))
