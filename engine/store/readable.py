"""Reading customer rows that are not what the model says they are.

The customer store is written by other systems. SQLite keeps whatever a writer gave it: bytes
that are not UTF-8 in a TEXT column (the sqlite3 driver refuses to decode them), a JSON column
that is not JSON, a date column that is not a date. Any database can hold valid JSON of the wrong
shape (an array where traits are an object). Read naively, one such row raises, and the statement
that read it — a batch of enrollments, a dispatch window — fails for every row in it.

`read_rows` runs the query as it is. Only when that fails does it split the rows in halves until
it has found the bad ones, then reads each of those column by column: what can be read is kept,
what cannot is None, and the row's problem says which column and why. The caller decides what a
bad row costs (the delivery that needs it, never the batch).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Connection, Row, Select, Table, null
from sqlalchemy.exc import DBAPIError


@dataclass(frozen=True)
class ReadRows:
    """Every row a query selects, in its order, and what is wrong with the bad ones."""

    rows: list[Row[Any]]
    """Unreadable columns of a bad row read as None."""
    problems: dict[int, str]
    """Row id → "contact 42: name is not valid UTF-8 text; traits is not valid JSON (…)"."""


def read_rows(conn: Connection, stmt: Select[Any], table: Table) -> ReadRows:
    """Run `stmt` (a SELECT of `table`'s columns, its `id` among them), tolerating bad rows.

    Costs one statement when every row reads; a few more per bad row otherwise.
    """
    try:
        rows = list(conn.execute(stmt).all())
    except Exception as exc:
        if not is_read_error(conn, exc):
            raise
        ids = list(conn.execute(stmt.with_only_columns(table.c.id)).scalars())
        return _in_order(table, ids, *_bisect(conn, stmt, table, ids))
    if not any(_shape_problems(stmt, r) for r in rows):
        return ReadRows(rows, {})  # the common case: one statement, one pass over the rows
    return _in_order(table, [r.id for r in rows], *_checked(conn, stmt, table, rows))


def is_read_error(conn: Connection, exc: BaseException) -> bool:
    """True when `exc` is a value the driver or SQLAlchemy could not turn into Python, rather than
    a failing statement: only those are a row's fault."""
    if isinstance(exc, ValueError | TypeError):  # JSON, dates, numbers processed in Python
        return True
    return conn.dialect.name == "sqlite" and isinstance(exc, DBAPIError) and "decode" in str(exc.orig)


def describe_read_error(exc: BaseException) -> str:
    """What is wrong with one column's value, in words (the column name goes before it)."""
    if isinstance(exc, DBAPIError):
        return "is not valid UTF-8 text"
    if isinstance(exc, json.JSONDecodeError):
        return f"is not valid JSON ({exc})"
    return f"cannot be read ({exc})"


def _bisect(
    conn: Connection, stmt: Select[Any], table: Table, ids: Sequence[int]
) -> tuple[dict[int, Row[Any]], dict[int, list[str]]]:
    """Read `ids` in halves until the failing rows are single; read those column by column."""
    try:
        rows = conn.execute(stmt.where(table.c.id.in_(list(ids)))).all()
    except Exception as exc:
        if not is_read_error(conn, exc):
            raise
        if len(ids) == 1:
            row, found = _read_one(conn, stmt, table, ids[0], [])
            return {ids[0]: row}, {ids[0]: found}
        half = len(ids) // 2
        first, first_problems = _bisect(conn, stmt, table, ids[:half])
        second, second_problems = _bisect(conn, stmt, table, ids[half:])
        return first | second, first_problems | second_problems
    return _checked(conn, stmt, table, rows)


def _checked(
    conn: Connection, stmt: Select[Any], table: Table, rows: Sequence[Row[Any]]
) -> tuple[dict[int, Row[Any]], dict[int, list[str]]]:
    """`rows` by id, the ones holding JSON of the wrong shape re-read with those columns NULL."""
    good: dict[int, Row[Any]] = {r.id: r for r in rows}
    problems: dict[int, list[str]] = {}
    for row in rows:
        if found := _shape_problems(stmt, row):
            good[row.id], problems[row.id] = _read_one(conn, stmt, table, row.id, found)
    return good, problems


def _read_one(
    conn: Connection, stmt: Select[Any], table: Table, row_id: int, known: list[tuple[str, str]]
) -> tuple[Row[Any], list[str]]:
    """One bad row: each column read on its own; the unreadable ones (and `known`: columns read but
    of the wrong shape) replaced by NULL in the row returned."""
    bad = dict(known)
    columns = list(stmt.selected_columns)
    one = stmt.where(table.c.id == row_id)
    for column in columns:
        if _name(column) in bad:
            continue
        try:
            conn.execute(one.with_only_columns(column)).all()
        except Exception as exc:
            if not is_read_error(conn, exc):
                raise
            bad[_name(column)] = describe_read_error(exc)
    kept = [null().label(_name(c)) if _name(c) in bad else c for c in columns]
    row = conn.execute(one.with_only_columns(*kept)).one()
    return row, [f"{_name(c)} {bad[_name(c)]}" for c in columns if _name(c) in bad]


def _name(column: Any) -> str:
    return str(column.key)


def _shape_problems(stmt: Select[Any], row: Row[Any]) -> list[tuple[str, str]]:
    """JSON columns (traits, properties) that read but are not an object: the engine looks keys up."""
    found = []
    for column in stmt.selected_columns:
        if isinstance(column.type, JSON):
            value = row._mapping[_name(column)]
            if value is not None and not isinstance(value, dict):
                found.append((_name(column), f"is a JSON {_json_kind(value)}, not an object"))
    return found


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    return "number"


def _in_order(table: Table, ids: Sequence[int], rows: dict[int, Row[Any]], problems: dict[int, list[str]]) -> ReadRows:
    entity = table.name.removesuffix("s")  # accounts → "account 7", csms → "csm 3"
    said = {i: f"{entity} {i}: " + "; ".join(p) for i, p in problems.items() if p}
    return ReadRows([rows[i] for i in ids if i in rows], said)
