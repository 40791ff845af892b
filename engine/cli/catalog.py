"""`touchflow catalog`: what the customer store holds — fields, traits, events, typical values —
and the snapshot `catalog.json` that `validate` and `touchflow schema` use without a database."""

from __future__ import annotations

import json
import sys
import textwrap
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from engine.catalog.snapshot import SNAPSHOT_NAME, Catalog, CatalogError, read_snapshot, snapshot_text
from engine.cli.common import choice, err, out, shown_url
from engine.config import Settings, load_settings
from engine.problems import Problem

WIDTH = 80


class CatalogFormat(StrEnum):
    """How the catalogue is printed: a table for people, JSON for scripts."""

    table = "table"
    json = "json"


def catalog(
    fmt: Annotated[
        CatalogFormat,
        typer.Option("--format", help="table, or json for scripts.", parser=choice(CatalogFormat, "--format")),
    ] = CatalogFormat.table,
    write: Annotated[
        bool, typer.Option("--write", help=f"Save it as {SNAPSHOT_NAME} in the project (for git, validate, schema).")
    ] = False,
    sample: Annotated[int, typer.Option(min=10, help="Rows per table (and events per name) sampled.")] = 2000,
) -> None:
    """List the store's fields (type, fill rate, few values), traits, and events (count, last seen,
    property keys). Bounded queries: quick on a million accounts."""
    from engine.catalog.profile import profile_store

    settings = load_settings()
    engine = existing_store(settings.database_url)
    if engine is None:
        err.print(
            f"error: no store at {shown_url(settings.database_url)}: run `touchflow import` or `touchflow migrate` "
            "first, or set TOUCHFLOW_DATABASE_URL",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
    try:
        with engine.connect() as conn:
            found = profile_store(conn, sample)
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        err.print(f"cannot read the store at {shown_url(settings.database_url)}: {reason}", markup=False)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    if write:
        target = settings.project_dir / SNAPSHOT_NAME
        target.write_text(snapshot_text(found), encoding="utf-8")
        out.print(
            f"wrote {target}: {len(found.fields)} fields, {len(found.traits)} trait keys, "
            f"{len(found.events)} event names",
            markup=False,
            soft_wrap=True,
        )
        return
    if fmt is CatalogFormat.json:
        sys.stdout.write(json.dumps(found.as_dict(), ensure_ascii=False) + "\n")
        return
    sys.stdout.write(catalog_table(found))


def existing_store(url: str) -> Engine | None:
    """An Engine on the store at `url` when it exists (brought up to date), else None: nothing is
    ever created, so a typo in a path is not an empty store."""
    from engine.store.db import DatabaseURLError, connect, migrate, missing_store

    try:
        engine = connect(url)
        if missing_store(engine) is not None:  # looks for a SQLite file before connecting
            engine.dispose()
            return None
        migrate(engine)
    except (SQLAlchemyError, DatabaseURLError, ValueError, OSError):
        return None
    return engine


def project_catalog(settings: Settings) -> tuple[Catalog | None, str, list[Problem]]:
    """The catalogue `validate` checks against: the snapshot when there is one, else the store
    when it exists, else none. Also what to say about it, and a problem when the snapshot is bad."""
    from engine.catalog.profile import profile_store

    snapshot = settings.project_dir / SNAPSHOT_NAME
    if snapshot.exists():
        shown = _relative(snapshot)
        try:
            return read_snapshot(snapshot), f"catalogue: {shown}", []
        except CatalogError as exc:
            return None, f"catalogue: {shown} cannot be used", [Problem(shown, 1, 1, str(exc))]
    engine = existing_store(settings.database_url)
    if engine is not None:
        try:
            with engine.connect() as conn:
                return profile_store(conn), f"catalogue: the store at {shown_url(settings.database_url)}", []
        except SQLAlchemyError:
            pass
        finally:
            engine.dispose()
    return (
        None,
        (
            f"no data catalogue ({SNAPSHOT_NAME} or a store): event names and field values are not checked; "
            "`touchflow catalog --write` makes one"
        ),
        [],
    )


def catalog_table(catalog: Catalog) -> str:
    """The catalogue as text for a terminal: sections of aligned rows, wrapped at 80 columns."""
    rows = catalog.rows
    lines = textwrap.wrap(
        f"{rows.get('accounts', 0):,} accounts · {rows.get('contacts', 0):,} contacts · "
        f"{rows.get('events', 0):,} events (traits and property keys from samples of {catalog.sample:,} rows)",
        WIDTH,
    )
    for table in ("account", "contact"):
        lines += ["", f"{table} fields".ljust(_NAME) + "type      filled  values"]
        for f in (f for f in catalog.fields if f.table == table):
            lines += _row(f.name, f"{f.kind:<9} {f.filled:>6.0%}  ", ", ".join(f.values or ()))
        traits = [t for t in catalog.traits if t.table == table]
        if traits:
            lines += ["", f"{table} traits".ljust(_NAME) + "type      in      examples"]
            for t in traits:
                lines += _row(t.key, f"{t.kind:<9} {t.share:>6.0%}  ", ", ".join(t.examples))
    lines += ["", "events".ljust(_NAME) + "     count  last seen         properties"]
    for e in catalog.events:
        lines += _row(e.name, f"{e.count:>10,}  {(e.last_seen or '')[:16]:<16}  ", ", ".join(e.properties))
    if not catalog.events:
        lines.append("  (none)")
    for note in catalog.notes:
        lines += textwrap.wrap(f"note: {note}", WIDTH, subsequent_indent="  ")
    return "\n".join(lines) + "\n"


_NAME = 28  # the name column; longer names get a line of their own, never a truncation


def _row(name: str, columns: str, tail: str) -> list[str]:
    """One entry: its name, fixed columns, then `tail` wrapped under the tail's column."""
    lines: list[str] = []
    shown = f"  {name}"
    if len(shown) >= _NAME:
        lines, shown = [shown], ""
    head = shown.ljust(_NAME) + columns
    if len(head) > WIDTH - 10:  # an unusually wide column: the tail goes below
        return [*lines, head.rstrip(), *textwrap.wrap(tail, WIDTH, initial_indent=" " * 4, subsequent_indent=" " * 4)]
    wrapped = textwrap.wrap(tail, WIDTH, initial_indent=head, subsequent_indent=" " * len(head))
    return [*lines, *(wrapped or [head.rstrip()])]


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
