"""Bulk loading through each driver's fast path.

This is the one module allowed to reach under SQLAlchemy to the DBAPI connection: a Core
`insert()` of millions of rows spends most of its time building parameter dicts and processing
values one by one, while sqlite3's `executemany` and PostgreSQL's `COPY` take plain tuples.
Everything else in the engine goes through SQLAlchemy.

Because the fast paths bypass SQLAlchemy's type processing, this module re-does the parts of it
that matter for the store: JSON columns are serialized with `json.dumps`, and on SQLite dates
and datetimes are written in exactly the text format SQLAlchemy's SQLite `Date`/`DateTime` use,
so rows loaded here read back and compare like rows written through the ORM.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime
from itertools import islice
from typing import Any, cast

import psycopg
from sqlalchemy import JSON, Connection, Date, DateTime, Table, text

Row = tuple[Any, ...]
# (position in the row, function turning the Python value into what the driver should bind)
_Conversion = tuple[int, Callable[[Any], Any]]


def bulk_insert(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Iterable[Row],
    batch_size: int = 50_000,
) -> int:
    """Insert `rows` (tuples ordered like `columns`) into `table` on `conn`; return the count.

    Runs inside the caller's transaction. JSON columns take Python values (dicts, lists), Date
    and DateTime columns take `date` / naive `datetime`. `rows` is consumed lazily — on SQLite
    and other dialects `batch_size` rows at a time, on PostgreSQL streamed through one COPY —
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
        return _insert_sqlite(conn, table, names, rows, batch_size)
    if dialect == "postgresql" and conn.dialect.driver == "psycopg":
        return _copy_postgresql(conn, table, names, rows)
    return _insert_generic(conn, table, names, rows, batch_size)


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
    conn: Connection, table: Table, columns: list[str], rows: Iterable[Row], batch_size: int
) -> int:
    raw = cast(sqlite3.Connection, conn.connection.driver_connection)
    statement = _insert_statement(conn, table, columns, "?")
    converted = _converted(rows, _sqlite_conversions(table, columns))
    cursor = raw.cursor()
    total = 0
    try:
        for batch in _batches(converted, batch_size):
            cursor.executemany(statement, batch)
            total += len(batch)
    finally:
        cursor.close()
    return total


def _sqlite_conversions(table: Table, columns: list[str]) -> list[_Conversion]:
    conversions: list[_Conversion] = []
    for index, name in enumerate(columns):
        column_type = table.c[name].type
        if isinstance(column_type, JSON):
            conversions.append((index, _json_converter(column_type)))
        elif isinstance(column_type, DateTime):
            conversions.append((index, _sqlite_datetime))
        elif isinstance(column_type, Date):
            conversions.append((index, _sqlite_date))
    return conversions


def _sqlite_datetime(value: datetime | None) -> str | None:
    # SQLAlchemy stores "YYYY-MM-DD HH:MM:SS.ffffff" (microseconds always present) and compares
    # datetimes as text, so a value without the fraction would sort and match wrongly.
    # Like SQLAlchemy's DateTime (no timezone), an offset is dropped, not converted.
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def _sqlite_date(value: date | None) -> str | None:
    # date.isoformat called unbound gives "YYYY-MM-DD" for datetime instances too, as
    # SQLAlchemy's Date does.
    return None if value is None else date.isoformat(value)


# --- PostgreSQL ---------------------------------------------------------------------------------


def _copy_postgresql(
    conn: Connection, table: Table, columns: list[str], rows: Iterable[Row]
) -> int:
    raw = cast(psycopg.Connection[Any], conn.connection.driver_connection)
    preparer = conn.dialect.identifier_preparer
    target = preparer.format_table(table)
    column_list = ", ".join(preparer.quote(name) for name in columns)
    # psycopg adapts dates, datetimes and numbers itself; only JSON needs text (the server
    # parses it into JSONB), since psycopg has no dumper for a bare dict.
    conversions = [
        (index, _json_converter(table.c[name].type))
        for index, name in enumerate(columns)
        if isinstance(table.c[name].type, JSON)
    ]
    total = 0
    with raw.cursor() as cursor:
        with cursor.copy(f"COPY {target} ({column_list}) FROM STDIN") as copy:
            for row in _converted(rows, conversions):
                copy.write_row(row)
                total += 1
        key = table.autoincrement_column
        if key is not None and key.name in columns:
            _advance_sequence(cursor, target, key.name, preparer.quote(key.name))
    return total


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


def _insert_generic(
    conn: Connection, table: Table, columns: list[str], rows: Iterable[Row], batch_size: int
) -> int:
    # No fast path known: let SQLAlchemy process the values, but still batch the rows.
    total = 0
    for batch in _batches(iter(rows), batch_size):
        conn.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in batch])
        total += len(batch)
    return total


# --- shared -------------------------------------------------------------------------------------


def _insert_statement(conn: Connection, table: Table, columns: list[str], marker: str) -> str:
    preparer = conn.dialect.identifier_preparer
    column_list = ", ".join(preparer.quote(name) for name in columns)
    markers = ", ".join(marker for _ in columns)
    return f"INSERT INTO {preparer.format_table(table)} ({column_list}) VALUES ({markers})"


def _json_converter(column_type: Any) -> Callable[[Any], str | None]:
    # SQLAlchemy's JSON writes Python None as the JSON 'null' unless none_as_null is set.
    none_value = None if getattr(column_type, "none_as_null", False) else "null"
    dumps = json.dumps

    def convert(value: Any) -> str | None:
        if value is None:
            return none_value
        # Most rows of wide tables carry an empty dict; skip the encoder for them.
        if not value and isinstance(value, dict):
            return "{}"
        return dumps(value)

    return convert


def _converted(rows: Iterable[Row], conversions: list[_Conversion]) -> Iterator[Sequence[Any]]:
    if not conversions:
        yield from rows
        return
    for row in rows:
        values = list(row)
        for index, convert in conversions:
            values[index] = convert(values[index])
        yield values


def _batches(rows: Iterable[Sequence[Any]], size: int) -> Iterator[list[Sequence[Any]]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch
