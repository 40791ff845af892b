"""`touchflow users`: the console's local users (add, list, disable, set-password)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from engine.cli.common import err, open_store, out
from engine.config import load_settings

users = typer.Typer(no_args_is_help=True, help="The console's users: who may sign in, with which role.")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _password() -> str:
    """The password from standard input when it is not a terminal (scripts), else asked twice."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = typer.prompt("Password", hide_input=True)
    second = typer.prompt("Repeat the password", hide_input=True)
    if first != second:
        err.print("error: the passwords differ", markup=False)
        raise typer.Exit(1)
    return str(first)


def _run(action: str, email: str, role: str | None = None) -> None:
    from engine.console.users import UserError, add_user, disable_user, set_password

    engine = open_store(load_settings().database_url)
    try:
        with engine.begin() as conn:
            if action == "add":
                user = add_user(conn, email, role or "viewer", _password(), _now())
                out.print(f"added {user.email} ({user.role})", markup=False)
            elif action == "disable":
                user = disable_user(conn, email, _now())
                out.print(f"disabled {user.email}: signed out everywhere", markup=False)
            else:
                user = set_password(conn, email, _password())
                out.print(f"new password for {user.email}: signed out everywhere", markup=False)
    except UserError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()


@users.command("add")
def add(
    email: Annotated[str, typer.Argument(help="The user's email address (their sign-in name).")],
    role: Annotated[str, typer.Option(help="viewer, marketer, manager or admin.")] = "viewer",
) -> None:
    """Add a console user; the password comes from standard input, or is asked twice at a terminal."""
    _run("add", email, role)


@users.command("list")
def list_() -> None:
    """Every console user with their role, and whether they may sign in."""
    from engine.console.users import list_users

    engine = open_store(load_settings().database_url)
    try:
        with engine.connect() as conn:
            for user in list_users(conn):
                state = "active" if user.active else f"disabled {user.disabled_at:%Y-%m-%d %H:%M}"
                typer.echo(f"{user.email}\t{user.role}\t{state}")  # tab-separated: scripts read it
    finally:
        engine.dispose()


@users.command("disable")
def disable(email: Annotated[str, typer.Argument(help="The user's email address.")]) -> None:
    """Stop a user signing in; their sessions end at once."""
    _run("disable", email)


@users.command("set-password")
def set_password_(email: Annotated[str, typer.Argument(help="The user's email address.")]) -> None:
    """Replace a user's password (standard input, or asked twice); their sessions end."""
    _run("set-password", email)
