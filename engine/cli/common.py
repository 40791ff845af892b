"""What every command shares: the consoles, opening the store and the project, reading `--now`,
and choice options whose bad value is a usage error naming the choices."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from engine.config import Settings
from engine.problems import ProblemsFound, did_you_mean
from engine.project import Project

# Outside a terminal (CI logs, `make demo | tee`) rich would squeeze tables into 80 columns:
# 140 there, unless COLUMNS says how wide the reader is.
out = Console(highlight=False, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 140)
err = Console(stderr=True, highlight=False)

NowOption = Annotated[
    str | None,
    typer.Option("--now", help="The moment to act as of, ISO 8601 (default: now, UTC)."),
]


class Format(StrEnum):
    """How a report is printed: a table for people, CSV or JSON lines for programs."""

    table = "table"
    csv = "csv"
    json = "json"


E = TypeVar("E", bound=Enum)


class UsageLine(typer.BadParameter):
    """A usage error (exit 2) whose message names the option or form itself, so it is shown as it
    is rather than after Typer's "Invalid value for '--x':"."""

    def format_message(self) -> str:
        """The message alone."""
        return self.message


def choices_text(values: Iterable[str]) -> str:
    """'a, b or c' for a few values; 'one of a, b, … or z' for more."""
    listed = list(values)
    words = f"{', '.join(listed[:-1])} or {listed[-1]}" if len(listed) > 1 else "".join(listed)
    return words if len(listed) <= 3 else f"one of {words}"


def choice(kind: type[E], option: str) -> Callable[[str | E], E]:
    """A Typer `parser` for an option whose values are `kind`'s: the member, or a usage error
    (exit 2) listing every choice and the closest one. The option's annotation stays `kind`, so
    --help lists the choices."""
    values = [str(member.value) for member in kind]

    def parse(value: str | E) -> E:
        if isinstance(value, kind):  # the default comes as the member itself
            return value
        try:
            return kind(value)
        except ValueError:
            hint = did_you_mean(str(value), values)
            raise UsageLine(f"{option} must be {choices_text(values)}, not '{value}'{hint}") from None

    return parse


def unknown(what: str, word: str, known: Iterable[str], *, where: str = "", listed_as: str = "known") -> NoReturn:
    """Exit 2 with `error: <where>no <what> '<word>' (did you mean …?); <listed_as>: a, b`."""
    names = list(known)
    listing = ", ".join(names) if names else "none"
    hint = did_you_mean(word, names)
    err.print(f"error: {where}no {what} '{word}'{hint}; {listed_as}: {listing}", markup=False, soft_wrap=True)
    raise typer.Exit(2)


def shown_url(url: str) -> str:
    """A database URL fit to print: the password hidden; never raises."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(malformed database URL)"


CREATE_STORE = (
    "create one with `touchflow migrate` (empty), `touchflow demo-data` (sample customers) or "
    "`touchflow import` (your own data), or set TOUCHFLOW_DATABASE_URL to an existing store"
)


def connect_or_exit(url: str, *, create: bool = False) -> Engine:
    """An Engine on the store, or exit 1 when the URL cannot be used or — unless `create` (the
    commands that make stores) — names no store: a typo in a path must not make an empty one."""
    from engine.store.db import DatabaseURLError, connect, missing_store

    try:
        engine = connect(url)
    except DatabaseURLError as exc:
        err.print(f"cannot open the store at {shown_url(url)}: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if create:
        return engine
    try:
        missing = missing_store(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        reason = getattr(exc, "orig", None) or exc
        err.print(f"cannot open the store at {shown_url(url)}: {reason}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if missing is not None:
        engine.dispose()
        err.print(f"error: {missing}; {CREATE_STORE}", markup=False, soft_wrap=True)
        raise typer.Exit(1)
    return engine


def open_store(url: str, *, create: bool = False) -> Engine:
    """Connect and migrate (an old store gets its upgrades), or exit with one line saying why the
    store cannot be opened. Only with `create` is a missing store made (migrate, demo-data, import)."""
    from engine.store.db import migrate as upgrade

    engine = connect_or_exit(url, create=create)
    try:
        upgrade(engine)
    except (SQLAlchemyError, ValueError) as exc:
        reason = getattr(exc, "orig", None) or exc
        err.print(f"cannot open the store at {shown_url(url)}: {reason}", markup=False)
        raise typer.Exit(1) from None
    return engine


def project_or_exit(settings: Settings) -> Project:
    """The loaded project, or every problem as `file:line:col: error: …` and exit 1."""
    from engine.delivery_config import SettingsError
    from engine.project import load_project

    try:
        return load_project(settings)
    except (ProblemsFound, SettingsError) as exc:
        report_and_exit(exc)


def report_and_exit(exc: ProblemsFound | ValueError) -> NoReturn:
    """Print what is wrong with the project's files or settings, one line each, and exit 1."""
    for problem in exc.problems if isinstance(exc, ProblemsFound) else []:
        err.print(problem.format(), markup=False, soft_wrap=True)
    if not isinstance(exc, ProblemsFound):
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
    raise typer.Exit(1) from None


def parse_now(value: str | None) -> datetime:
    """ISO 8601 → naive UTC (the engine's convention); None → the current time."""
    if value is None:
        return datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not an ISO 8601 date or time, e.g. 2026-11-23T09:00") from None
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
