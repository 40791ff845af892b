"""The few SQL expressions that differ between SQLite and PostgreSQL, each compiled per dialect.

Everything else in the compiler is dialect-neutral SQLAlchemy; these are pinned by the golden
files of both dialects and exercised by the language tests on both databases.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Float, String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BinaryExpression
from sqlalchemy.sql.functions import FunctionElement


class json_number(FunctionElement[float]):
    """A JSON value as a number, or NULL when it is not a JSON number (never a cast error).

    PostgreSQL's `(doc ->> 'k')::float` raises on "n/a"; SQLite compares text above every number.
    Both are wrong for `traits.employees: {gt: 100}`; this reads numbers only.
    """

    type = Float()
    inherit_cache = True

    def __init__(self, element: Any) -> None:
        super().__init__(element)
        self.element = element


def _doc_and_path(element: BinaryExpression[Any]) -> tuple[Any, Any]:
    return element.left, element.right


@compiles(json_number, "postgresql")
def _json_number_pg(node: json_number, compiler: SQLCompiler, **kw: Any) -> str:
    doc, key = _doc_and_path(node.element)
    d, k = compiler.process(doc, **kw), compiler.process(key, **kw)
    return f"CASE WHEN jsonb_typeof({d} -> {k}) = 'number' THEN CAST(({d} ->> {k}) AS FLOAT) END"


@compiles(json_number, "sqlite")
def _json_number_sqlite(node: json_number, compiler: SQLCompiler, **kw: Any) -> str:
    doc, key = _doc_and_path(node.element)
    # SQLAlchemy's SQLite JSON index already binds the key as a JSON path ('$."score"').
    d, path = compiler.process(doc, **kw), compiler.process(key, **kw)
    return f"CASE WHEN json_type({d}, {path}) IN ('integer', 'real') THEN json_extract({d}, {path}) END"


class json_boolean(FunctionElement[bool]):
    """A JSON value as a boolean, or NULL when it is not a JSON true/false (never a cast error)."""

    type = Boolean()
    inherit_cache = True

    def __init__(self, element: Any) -> None:
        super().__init__(element)
        self.element = element


@compiles(json_boolean, "postgresql")
def _json_boolean_pg(node: json_boolean, compiler: SQLCompiler, **kw: Any) -> str:
    doc, key = _doc_and_path(node.element)
    d, k = compiler.process(doc, **kw), compiler.process(key, **kw)
    return f"CASE WHEN jsonb_typeof({d} -> {k}) = 'boolean' THEN CAST(({d} ->> {k}) AS BOOLEAN) END"


@compiles(json_boolean, "sqlite")
def _json_boolean_sqlite(node: json_boolean, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path = _doc_and_path(node.element)
    d, p = compiler.process(doc, **kw), compiler.process(path, **kw)
    return f"CASE WHEN json_type({d}, {p}) IN ('true', 'false') THEN json_extract({d}, {p}) END"


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
