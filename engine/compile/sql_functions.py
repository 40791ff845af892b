"""The few SQL expressions that differ between SQLite and PostgreSQL, each compiled per dialect.

Everything else in the compiler is dialect-neutral SQLAlchemy; these are pinned by the golden
files of both dialects and exercised by the language tests on both databases.

Every read of a JSON column goes through `json_text`, `json_number` or `json_boolean`: SQLite
stores any text in a JSON column and its JSON functions raise "malformed JSON" on a row that is
not JSON, which would fail the whole statement. There the read is guarded by `json_valid`, so a
bad row reads as NULL (the condition is simply not true for it). PostgreSQL validates jsonb on
write, so its SQL needs no guard.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Date, Float, String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import operators
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BinaryExpression
from sqlalchemy.sql.functions import FunctionElement

JSON_TYPES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "number": ("number", "FLOAT", ("integer", "real")),
    "boolean": ("boolean", "BOOLEAN", ("true", "false")),
}
"""A typed JSON read's accepted values: PostgreSQL's `jsonb_typeof`, the SQL cast, SQLite's
`json_type` names. Shared with `json_keys.py`, which reads keys a JSON path cannot name."""


class _JsonTyped(FunctionElement[Any]):
    """A JSON value read as one SQL type, or NULL when the JSON value is of another type.

    Never a cast error: PostgreSQL's `(doc ->> 'k')::float` raises on "n/a", and SQLite compares
    text above every number; both are wrong for `traits.employees: {gt: 100}`.
    """

    inherit_cache = True
    pg_type: str = ""  # jsonb_typeof() of the accepted values
    pg_cast: str = ""
    sqlite_types: tuple[str, ...] = ()  # json_type() of the accepted values

    def __init__(self, element: BinaryExpression[Any]) -> None:
        super().__init__(element)
        self.element = element


class json_number(_JsonTyped):
    """A JSON number as FLOAT, else NULL."""

    type = Float()
    inherit_cache = True
    pg_type, pg_cast, sqlite_types = JSON_TYPES["number"]


class json_boolean(_JsonTyped):
    """A JSON true/false as BOOLEAN, else NULL."""

    type = Boolean()
    inherit_cache = True
    pg_type, pg_cast, sqlite_types = JSON_TYPES["boolean"]


@compiles(_JsonTyped, "postgresql")
def _json_typed_pg(node: _JsonTyped, compiler: SQLCompiler, **kw: Any) -> str:
    d, k = compiler.process(node.element.left, **kw), compiler.process(node.element.right, **kw)
    # A path (`doc[("a", "b")]`, e.g. a health component's points) reads with #> / #>>.
    path = node.element.operator is operators.json_path_getitem_op
    get, get_text = ("#>", "#>>") if path else ("->", "->>")
    typed = f"CAST(({d} {get_text} {k}) AS {node.pg_cast})"
    return f"CASE WHEN jsonb_typeof({d} {get} {k}) = '{node.pg_type}' THEN {typed} END"


@compiles(_JsonTyped, "sqlite")
def _json_typed_sqlite(node: _JsonTyped, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLAlchemy's SQLite JSON index already binds the key as a JSON path ('$."score"').
    d, path = compiler.process(node.element.left, **kw), compiler.process(node.element.right, **kw)
    accepted = ", ".join(f"'{t}'" for t in node.sqlite_types)
    # Nested CASE, not AND: only CASE promises that json_type never sees a document json_valid rejected.
    typed = f"CASE WHEN json_type({d}, {path}) IN ({accepted}) THEN json_extract({d}, {path}) END"
    return f"CASE WHEN json_valid({d}) THEN {typed} END"


class json_string(_JsonTyped):
    """A JSON string as TEXT, else NULL (a trait declared `text`: the number 7 is not the text '7')."""

    type = String()
    inherit_cache = True
    pg_type, pg_cast, sqlite_types = "string", "TEXT", ("text",)


class json_date(_JsonTyped):
    """A JSON string holding a calendar date `YYYY-MM-DD` as DATE, else NULL (a trait declared `date`).

    Never a cast error, on a malformed or impossible date ('2026-02-31', 'soon', 7) either: on
    PostgreSQL the text is rebuilt from its parts with `make_date` and must read back the same
    before it is cast; on SQLite `date(julianday())` must give the text back unchanged (it
    normalises '2026-02-31' to '2026-03-03'). SQLite compares the ISO text, as its DATE columns.
    """

    type = Date()
    inherit_cache = True


@compiles(json_date, "postgresql")
def _json_date_pg(node: json_date, compiler: SQLCompiler, **kw: Any) -> str:
    d, k = compiler.process(node.element.left, **kw), compiler.process(node.element.right, **kw)
    v = f"({d} ->> {k})"
    shape = r"'^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$'"
    part = f"CAST(substr({v}, {{}}, {{}}) AS INTEGER)"
    rebuilt = (
        f"to_char(make_date({part.format(1, 4)}, {part.format(6, 2)}, 1) + ({part.format(9, 2)} - 1), 'YYYY-MM-DD')"
    )
    # Nested CASE: make_date (which raises on year 0) only ever sees text of the right shape.
    return (
        f"CASE WHEN jsonb_typeof({d} -> {k}) = 'string' AND {v} ~ {shape} AND substr({v}, 1, 4) <> '0000' "
        f"THEN CASE WHEN {rebuilt} = {v} THEN CAST({v} AS DATE) END END"
    )


@compiles(json_date, "sqlite")
def _json_date_sqlite(node: json_date, compiler: SQLCompiler, **kw: Any) -> str:
    d, path = compiler.process(node.element.left, **kw), compiler.process(node.element.right, **kw)
    v = f"json_extract({d}, {path})"
    # Through julianday: date() alone keeps an impossible day ('2026-02-31'); year 0 as PostgreSQL.
    valid = f"date(julianday({v})) IS {v} AND substr({v}, 1, 4) <> '0000'"
    typed = f"CASE WHEN json_type({d}, {path}) = 'text' AND {valid} THEN {v} END"
    return f"CASE WHEN json_valid({d}) THEN {typed} END"


class json_text(FunctionElement[Any]):
    """A JSON value read as text (SQLAlchemy's `as_string()`), NULL where the document is not JSON."""

    type = String()
    inherit_cache = True

    def __init__(self, element: BinaryExpression[Any]) -> None:
        super().__init__(element)
        self.element = element


@compiles(json_text, "postgresql")
def _json_text_pg(node: json_text, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(node.element.as_string(), **kw)


@compiles(json_text, "sqlite")
def _json_text_sqlite(node: json_text, compiler: SQLCompiler, **kw: Any) -> str:
    d = compiler.process(node.element.left, **kw)
    return f"CASE WHEN json_valid({d}) THEN {compiler.process(node.element.as_string(), **kw)} END"


class date_key(FunctionElement[str]):
    """A date as 'YYYY-MM-DD' text, whatever the server's DateStyle: occurrence keys must not move."""

    type = String()
    inherit_cache = True


@compiles(date_key, "postgresql")
def _date_key_pg(node: date_key, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = node.clauses
    return f"to_char({compiler.process(column, **kw)}, 'YYYY-MM-DD')"


@compiles(date_key, "sqlite")
def _date_key_sqlite(node: date_key, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = node.clauses  # SQLAlchemy stores SQLite dates as 'YYYY-MM-DD' text already
    return f"CAST({compiler.process(column, **kw)} AS VARCHAR)"


class text_contains(FunctionElement[bool]):
    """Case-sensitive substring test. SQLite's LIKE ignores ASCII case; instr/strpos do not."""

    inherit_cache = True


@compiles(text_contains, "sqlite")
def _contains_sqlite(node: text_contains, compiler: SQLCompiler, **kw: Any) -> str:
    haystack, needle = (compiler.process(c, **kw) for c in node.clauses)
    return f"instr({haystack}, {needle}) > 0"


@compiles(text_contains, "postgresql")
def _contains_pg(node: text_contains, compiler: SQLCompiler, **kw: Any) -> str:
    haystack, needle = (compiler.process(c, **kw) for c in node.clauses)
    return f"strpos({haystack}, {needle}) > 0"


class shifted(FunctionElement[Any]):
    """A timestamp column plus a constant number of seconds (`sent_at + within`)."""

    inherit_cache = True

    def __init__(self, column: Any, seconds: int) -> None:
        super().__init__(column)
        self.seconds = int(seconds)


@compiles(shifted, "sqlite")
def _shifted_sqlite(node: shifted, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = node.clauses
    # strftime keeps SQLAlchemy's stored format (microseconds included), so text comparison holds.
    return f"strftime('%Y-%m-%d %H:%M:%f000', {compiler.process(column, **kw)}, '{node.seconds:+d} seconds')"


@compiles(shifted, "postgresql")
def _shifted_pg(node: shifted, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = node.clauses
    return f"({compiler.process(column, **kw)} + make_interval(secs => {node.seconds}))"


class json_object_of(FunctionElement[Any]):
    """A JSON object from alternating keys and values (`json_object` / `jsonb_build_object`):
    the components of a health score, written by the statement that computes them."""

    type = JSON()
    inherit_cache = True


@compiles(json_object_of, "sqlite")
def _json_object_sqlite(node: json_object_of, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_object({compiler.process(node.clauses, **kw)})"


@compiles(json_object_of, "postgresql")
def _json_object_pg(node: json_object_of, compiler: SQLCompiler, **kw: Any) -> str:
    return f"jsonb_build_object({compiler.process(node.clauses, **kw)})"
