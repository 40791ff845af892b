"""One key of a JSON object column (`traits.KEY`, an event's `where: {KEY: …}`), whatever the key.

A key is a key, never a path: `traits.plan.tier` reads the key `plan.tier` — the key an `update`
step writes and a template reads as `account.traits["plan.tier"]` —, not plan → tier, on both
databases.

SQLAlchemy reads `traits[key]` on SQLite as `json_extract(traits, '$."key"')`, and SQLite
compares that quoted label with the key's raw text in the document, with no escapes of its own:
a key holding `"` leaves the label (`a"."b` reads a → b; `a"b` fails the whole statement with a
JSON path error), and a key the document spells with escapes (`\\`, or `\\u00fc` for ü: Python's
json writes non-ASCII that way) is never found. PostgreSQL's `->` and `->>` take the key as a
text value and have none of these problems.

So a key of printable ASCII without `"` or `\\` keeps the path (the common case; its SQL is
unchanged, see `sql_functions.py`), and any other key goes through `json_member`: on SQLite a
`json_each` lookup, whose `key` column is the decoded key compared with a bound value (no path
syntax at all); on PostgreSQL the same `->`/`->>` reads as every other key.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import Boolean, Float, String, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from engine.compile.sql_functions import JSON_TYPES

Kind = Literal["text", "number", "boolean"]


def path_safe(key: str) -> bool:
    """Whether a SQLite JSON path label `$."key"` names exactly this key of a document."""
    return bool(key) and all(" " <= ch <= "~" and ch not in '"\\' for ch in key)


class _JsonMember(FunctionElement[Any]):
    """The value of `key` in a JSON object column, as one SQL type; NULL when the key is missing,
    its value has another JSON type, or (SQLite) the document is not JSON."""

    inherit_cache = True
    pg_type: str | None = None  # jsonb_typeof() of the accepted values; None: any, as text
    pg_cast: str = ""
    sqlite_types: tuple[str, ...] = ()  # json_each.type of the accepted values; (): any

    def __init__(self, document: ColumnElement[Any], key: str) -> None:
        # The key is a bound value (a clause, so statement caching keeps it per statement).
        super().__init__(document, literal(key, String()))


class _MemberText(_JsonMember):
    type = String()
    inherit_cache = True


class _MemberNumber(_JsonMember):
    type = Float()
    inherit_cache = True
    pg_type, pg_cast, sqlite_types = JSON_TYPES["number"]


class _MemberBoolean(_JsonMember):
    type = Boolean()
    inherit_cache = True
    pg_type, pg_cast, sqlite_types = JSON_TYPES["boolean"]


_KINDS: dict[Kind, type[_JsonMember]] = {"text": _MemberText, "number": _MemberNumber, "boolean": _MemberBoolean}


def json_member(document: ColumnElement[Any], key: str, kind: Kind) -> ColumnElement[Any]:
    """`key` of the JSON object in `document`, read as text, a number or a boolean."""
    return _KINDS[kind](document, key)


def _parts(node: _JsonMember, compiler: SQLCompiler, **kw: Any) -> tuple[str, str]:
    document, key = node.clauses
    return compiler.process(document, **kw), compiler.process(key, **kw)


@compiles(_JsonMember, "sqlite")
def _member_sqlite(node: _JsonMember, compiler: SQLCompiler, **kw: Any) -> str:
    d, k = _parts(node, compiler, **kw)
    accepted = ", ".join(f"'{t}'" for t in node.sqlite_types)
    value = f"CASE WHEN member.type IN ({accepted}) THEN member.value END" if accepted else "member.value"
    # json_each raises on a document that is not JSON: the CASE keeps that row's read NULL.
    lookup = f"(SELECT {value} FROM json_each({d}) AS member WHERE member.key = {k})"
    return f"CASE WHEN json_valid({d}) THEN {lookup} END"


@compiles(_JsonMember, "postgresql")
def _member_pg(node: _JsonMember, compiler: SQLCompiler, **kw: Any) -> str:
    d, k = _parts(node, compiler, **kw)
    if node.pg_type is None:
        return f"({d} ->> CAST({k} AS TEXT))"
    return (
        f"CASE WHEN jsonb_typeof({d} -> CAST({k} AS TEXT)) = '{node.pg_type}' "
        f"THEN CAST(({d} ->> CAST({k} AS TEXT)) AS {node.pg_cast}) END"
    )
