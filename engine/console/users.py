"""The console's local users: add, list, disable, set a password, and check a sign-in.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile); only
the hash is stored. Email addresses are kept lower-cased so `Ann@X.com` and `ann@x.com` are one
user.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, insert, select, update

from engine.addresses import email_problem
from engine.store.models import console_sessions, console_users

ROLES = ("viewer", "marketer", "manager", "admin")
"""Every role, from the one that may do least to the one that may do everything."""
MIN_PASSWORD = 12
"""Shortest password accepted: long passphrases beat composition rules (NIST SP 800-63B)."""

_HASHER = PasswordHasher()
# Verified against when the email is unknown, so a missing user takes as long as a wrong password.
_DUMMY_HASH = _HASHER.hash("touchflow-no-such-user")


class UserError(ValueError):
    """A user command that cannot be done: the message says what is wrong."""


@dataclass(frozen=True)
class User:
    """A console user as the console sees it (never the hash)."""

    id: int
    email: str
    role: str
    created_at: datetime
    disabled_at: datetime | None

    @property
    def active(self) -> bool:
        """True when the user may sign in."""
        return self.disabled_at is None


def normalized(email: str) -> str:
    """The stored form of an address: trimmed, lower-cased."""
    return email.strip().lower()


def check_password(password: str) -> None:
    """Raise UserError when `password` is too short to accept."""
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")


def add_user(conn: Connection, email: str, role: str, password: str, now: datetime) -> User:
    """Create a user; UserError for a bad address, an unknown role, a short password or a taken email."""
    address = normalized(email)
    problem = email_problem(address)
    if problem is not None:
        raise UserError(f"'{email}' is not an email address: {problem}")
    if role not in ROLES:
        raise UserError(f"unknown role '{role}': one of {', '.join(ROLES)}")
    check_password(password)
    if find_user(conn, address) is not None:
        raise UserError(f"a user '{address}' exists already")
    conn.execute(
        insert(console_users).values(
            email=address, password_hash=_HASHER.hash(password), role=role, created_at=now, disabled_at=None
        )
    )
    found = find_user(conn, address)
    assert found is not None
    return found


def find_user(conn: Connection, email: str) -> User | None:
    """The user with this address, or None."""
    row = conn.execute(select(console_users).where(console_users.c.email == normalized(email))).first()
    return None if row is None else _user(row)


def user_by_id(conn: Connection, user_id: int) -> User | None:
    """The user with this id, or None."""
    row = conn.execute(select(console_users).where(console_users.c.id == user_id)).first()
    return None if row is None else _user(row)


def list_users(conn: Connection) -> list[User]:
    """Every user, by address."""
    return [_user(r) for r in conn.execute(select(console_users).order_by(console_users.c.email))]


def disable_user(conn: Connection, email: str, now: datetime) -> User:
    """Stop a user signing in and end their sessions; UserError when there is no such user."""
    user = _existing(conn, email)
    conn.execute(update(console_users).where(console_users.c.id == user.id).values(disabled_at=now))
    conn.execute(console_sessions.delete().where(console_sessions.c.user_id == user.id))
    return _existing(conn, email)


def set_password(conn: Connection, email: str, password: str) -> User:
    """Replace a user's password and end their sessions; UserError for no such user or a short password."""
    user = _existing(conn, email)
    check_password(password)
    conn.execute(
        update(console_users).where(console_users.c.id == user.id).values(password_hash=_HASHER.hash(password))
    )
    conn.execute(console_sessions.delete().where(console_sessions.c.user_id == user.id))
    return user


def authenticate(conn: Connection, email: str, password: str) -> User | None:
    """The active user these credentials sign in, or None (unknown, disabled or wrong password)."""
    row = conn.execute(select(console_users).where(console_users.c.email == normalized(email))).first()
    stored = row.password_hash if row is not None else _DUMMY_HASH
    try:
        _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row.disabled_at is not None:
        return None
    if _HASHER.check_needs_rehash(stored):  # parameters raised since: upgrade on a good sign-in
        conn.execute(
            update(console_users).where(console_users.c.id == row.id).values(password_hash=_HASHER.hash(password))
        )
    return _user(row)


def _existing(conn: Connection, email: str) -> User:
    user = find_user(conn, email)
    if user is None:
        known = sorted(row.email for row in conn.execute(select(console_users.c.email)))
        listed = ", ".join(known[:20]) + (" …" if len(known) > 20 else "") if known else "none yet"
        raise UserError(f"no user '{normalized(email)}'; users: {listed}")
    return user


def _user(row: object) -> User:
    return User(
        id=row.id,  # type: ignore[attr-defined]
        email=row.email,  # type: ignore[attr-defined]
        role=row.role,  # type: ignore[attr-defined]
        created_at=row.created_at,  # type: ignore[attr-defined]
        disabled_at=row.disabled_at,  # type: ignore[attr-defined]
    )
