"""Checking a chunk of import rows a column at a time: the fast path of the usual chunk.

Row by row, every value of a million-row file costs a Python loop turn, a dict lookup, a
strip, a type check and a call. A chunk whose rows all give the same columns can instead be
checked column by column: each column's values stripped, measured, parsed and compared with a
few calls that loop in C (`map(str.strip, …)`, `datetime.fromisoformat`, a set of the
values), its converter chosen once.

The fast path only ever answers for a chunk it is sure about: it gives the values the row by
row check (`load._validate`) would give, or None — some value is empty, not text, bad, or a
column is unknown or missing — and the caller checks that chunk row by row, which says what is
wrong and where. So the messages are the row path's, and the fast path cannot accept a row
the row path would reject.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from functools import cache, lru_cache
from itertools import repeat
from operator import attrgetter, itemgetter, methodcaller
from typing import Any

from engine.ingest.contract import CONTRACT, BadValue, Kind, bag_value, converter
from engine.ingest.parse import ROW_ERROR, RawRow

# A column's values (stripped strings, none empty) → the stored values, or None: not sure.
_ColumnCheck = Callable[[list[str]], list[Any] | None]
_TZINFO = attrgetter("tzinfo")
_NAIVE = methodcaller("replace", tzinfo=None)
# Longest text a column takes (contract._TEXT_LIMIT).
_TEXT_LIMIT = 200
# Distinct bags (traits / properties) shared between the rows of one chunk that give the same.
_BAGS = 1_000


def checked_columns(
    kind: Kind, references: dict[str, str], raws: Sequence[RawRow]
) -> tuple[list[dict[str, Any]], list[dict[str, str]]] | None:
    """The values and references of each of `raws` (all giving the same columns), as the row by
    row check would fill them; None when any row needs that check to say what is wrong.

    `references`: each reference column → the column of the stored row taking the id it names
    (None when the column is not given)."""
    first = raws[0]
    names = tuple(first)
    if ROW_ERROR in first or any(raw.keys() != first.keys() for raw in raws):
        return None
    plan = _plan(kind.name, names, tuple(references.items()))
    if plan is None:
        return None
    columns, bag_columns, defaults = plan
    values_names: list[str] = []
    values_columns: list[list[Any]] = []
    ref_names: list[str] = []
    ref_columns: list[list[Any]] = []
    for name, check in columns:
        cells = list(map(itemgetter(name), raws))
        stored = _column(cells, check)
        if stored is None:
            return None
        if name in references:
            ref_names.append(name)
            ref_columns.append(stored)
        else:
            values_names.append(name)
            values_columns.append(stored)
    rows = [dict(zip(values_names, row, strict=True)) for row in zip(*values_columns, strict=True)]
    if not values_columns:
        rows = [{} for _ in raws]
    if defaults:
        for row in rows:
            row.update(defaults)
    if kind.bag:
        for row, bag in zip(rows, _bags(raws, bag_columns), strict=True):
            row[kind.bag] = bag
    refs = (
        [dict(zip(ref_names, row, strict=True)) for row in zip(*ref_columns, strict=True)]
        if ref_columns
        else [{} for _ in raws]
    )
    return rows, refs


@lru_cache(maxsize=64)
def _plan(
    kind_name: str, names: tuple[str, ...], references: tuple[tuple[str, str], ...]
) -> tuple[list[tuple[str, _ColumnCheck]], list[tuple[str, str]], dict[str, Any]] | None:
    """For a kind and the columns a chunk gives: each contract column's check, the bag columns
    (column, key), and the defaults of the columns not given; None when a column is unknown,
    the bag comes as one object, or a required column is missing (the row check names them)."""
    kind = CONTRACT[kind_name]
    columns: list[tuple[str, _ColumnCheck]] = []
    bag_columns: list[tuple[str, str]] = []
    for name in names:
        column = kind.column(name)
        if column is not None:
            columns.append((name, _check(column.type)))
        elif name.startswith("_"):
            continue
        elif kind.bag and name.startswith(kind.bag + ".") and len(name) > len(kind.bag) + 1:
            bag_columns.append((name, name[len(kind.bag) + 1 :]))
        else:
            return None
    defaults: dict[str, Any] = {}
    for column in kind.columns:
        if column.name in names:
            continue
        if column.required:
            return None
        ids = dict(references)
        if column.name in ids:  # a reference not given: cleared
            defaults[ids[column.name]] = None
        elif column.name != kind.key:
            defaults[column.name] = column.default
    return columns, bag_columns, defaults


def _column(cells: list[Any], check: _ColumnCheck) -> list[Any] | None:
    """One column's stored values; None when a cell is empty, not a string, or not sure."""
    if "" in cells:  # absent in that row: its defaults and messages are the row check's
        return None
    try:
        stripped = list(map(str.strip, cells))
    except TypeError:  # a JSON number, object or null: the row check converts or names it
        return None
    try:
        return check(stripped)
    except (BadValue, ValueError, TypeError):
        return None


@cache
def _check(column_type: str) -> _ColumnCheck:
    """The column-at-a-time check of a column type; the contract's converter, value by value,
    for the types with no faster form."""
    if column_type == "text":
        return _texts
    if column_type == "datetime":
        return _datetimes
    if column_type == "date":
        return _dates
    if "|" in column_type:
        return _one_of(frozenset(column_type.split("|")))
    convert = converter(column_type)
    return lambda values: list(map(convert, values))


def _texts(values: list[str]) -> list[Any] | None:
    return values if max(map(len, values)) <= _TEXT_LIMIT else None


def _one_of(choices: frozenset[str]) -> _ColumnCheck:
    def check(values: list[str]) -> list[Any] | None:
        return values if choices.issuperset(values) else None

    return check


def _datetimes(values: list[str]) -> list[Any] | None:
    # The row check refuses fewer than 10 characters (fromisoformat takes "20260101").
    if min(map(len, values)) < 10:
        return None
    parsed = list(map(datetime.fromisoformat, values))
    zones = set(map(_TZINFO, parsed))
    if zones == {None}:
        return parsed
    if zones == {UTC}:  # "…Z" / "+00:00", the common form: already UTC, the offset dropped
        return list(map(_NAIVE, parsed))
    return None  # other offsets: converted row by row


def _dates(values: list[str]) -> list[Any] | None:
    if set(map(len, values)) != {10}:
        return None
    return list(map(date.fromisoformat, values))


def _bags(raws: Sequence[RawRow], bag_columns: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Each row's bag from its `bag.<key>` cells. Rows giving the same cells share one dict
    (read only from here on), so it is built once and its JSON encoded once per chunk."""
    if not bag_columns:
        empty: dict[str, Any] = {}
        return list(repeat(empty, len(raws)))
    names = [name for name, _ in bag_columns]
    keys = [key for _, key in bag_columns]
    cells = zip(*(map(itemgetter(name), raws) for name in names), strict=True)
    made: dict[tuple[Any, ...], dict[str, Any]] = {}
    bags = []
    for given in cells:
        try:
            bag = made.get(given)
        except TypeError:  # a JSON object or list among the cells: not shared
            bag = None
        if bag is None:
            bag = {
                key: bag_value(value) if isinstance(value, str) else value
                for key, value in zip(keys, given, strict=True)
                if value not in ("", None)
            }
            if len(made) < _BAGS and all(isinstance(value, str) for value in given):
                made[given] = bag
        bags.append(bag)
    return bags
