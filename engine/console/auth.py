"""Sessions, CSRF tokens and the sign-in throttle of the console.

A session is a random token in a signed (HMAC-SHA256), HttpOnly, SameSite=Strict cookie; the
store keeps only its hash, with the user, a per-session CSRF token and the expiry. Signing in
always issues a fresh token and drops the one the browser came with (no session fixation);
signing out, disabling a user or changing their password deletes the row, so the cookie stops
working at once. Before sign-in, the form's CSRF token is a double-submit: a signed cookie and a
hidden field that must match.

Failed sign-ins are kept per email and per client: after `FREE_FAILURES` the next attempt waits
2, 4, 8 … seconds (at most `MAX_DELAY`) after the last failure, refused with Retry-After until then.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, delete, func, insert, select

from engine.console.users import User, user_by_id
from engine.store.models import console_sessions, login_failures

SESSION_COOKIE = "touchflow_session"
CSRF_COOKIE = "touchflow_csrf"
SESSION_LIFETIME = timedelta(hours=12)
FAILURE_WINDOW = timedelta(minutes=15)
FREE_FAILURES = {"email": 3, "client": 20}
"""Failures allowed without delay in `FAILURE_WINDOW`, per email and per client."""
MAX_DELAY = 900
SECRET_ENV = "TOUCHFLOW_CONSOLE_SECRET"
KEY_FILE = Path(".touchflow") / "console.key"


class Signer:
    """Signs and checks cookie values with the console's secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, value: str) -> str:
        """`value.signature`."""
        return f"{value}.{self._mac(value)}"

    def unsign(self, signed: str | None) -> str | None:
        """The value of a correctly signed string, else None."""
        if not signed or "." not in signed:
            return None
        value, _, mac = signed.rpartition(".")
        return value if hmac.compare_digest(mac, self._mac(value)) else None

    def _mac(self, value: str) -> str:
        return hmac.new(self._secret, value.encode(), hashlib.sha256).hexdigest()


def load_secret(project_dir: Path | None) -> bytes:
    """The console's signing secret: TOUCHFLOW_CONSOLE_SECRET, else `.touchflow/console.key` in the
    project (created once, readable by its owner only), else one for this process."""
    from_env = os.environ.get(SECRET_ENV, "")
    if from_env:
        return from_env.encode()
    if project_dir is None:
        return secrets.token_bytes(32)
    path = project_dir / KEY_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: read theirs
        else:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(secrets.token_hex(32) + "\n")
    return path.read_text(encoding="ascii").strip().encode()


@dataclass(frozen=True)
class Session:
    """A live session: who, and the token every form of theirs must carry."""

    user: User
    csrf: str
    token_hash: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(conn: Connection, user: User, now: datetime, previous_token: str | None) -> str:
    """A new session for `user`; the previous one (from the browser's cookie) ends. Returns the
    new token (to be signed into the cookie)."""
    if previous_token:
        conn.execute(delete(console_sessions).where(console_sessions.c.token_hash == _hash(previous_token)))
    conn.execute(delete(console_sessions).where(console_sessions.c.expires_at <= now))
    token = secrets.token_urlsafe(32)
    conn.execute(
        insert(console_sessions).values(
            token_hash=_hash(token),
            user_id=user.id,
            csrf=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
    )
    return token


def find_session(conn: Connection, token: str | None, now: datetime) -> Session | None:
    """The live session of this token, for an active user; None otherwise."""
    if not token:
        return None
    row = conn.execute(select(console_sessions).where(console_sessions.c.token_hash == _hash(token))).first()
    if row is None or row.expires_at <= now:
        return None
    user = user_by_id(conn, row.user_id)
    if user is None or not user.active:
        return None
    return Session(user=user, csrf=row.csrf, token_hash=row.token_hash)


def end_session(conn: Connection, token: str | None) -> None:
    """Sign out: the token no longer opens anything."""
    if token:
        conn.execute(delete(console_sessions).where(console_sessions.c.token_hash == _hash(token)))


def same_token(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of two CSRF tokens; False when either is missing."""
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


def throttle_keys(email: str, client: str) -> list[tuple[str, str]]:
    """(kind, key) of the failure counters a sign-in attempt is checked against."""
    return [("email", f"email:{email.strip().lower()[:250]}"), ("client", f"client:{client[:250]}")]


def retry_after(conn: Connection, keys: list[tuple[str, str]], now: datetime) -> int:
    """Seconds before the next attempt is allowed (0: now)."""
    wait = 0
    for kind, key in keys:
        since = now - FAILURE_WINDOW
        count, last = conn.execute(
            select(func.count(), func.max(login_failures.c.at)).where(
                login_failures.c.key == key, login_failures.c.at > since
            )
        ).one()
        over = count - FREE_FAILURES[kind]
        if over >= 0 and last is not None:
            delay = min(MAX_DELAY, 2 ** (over + 1))
            remaining = (last + timedelta(seconds=delay) - now).total_seconds()
            wait = max(wait, int(remaining + 0.999))
    return wait


def record_failure(conn: Connection, keys: list[tuple[str, str]], now: datetime) -> None:
    """Count a failed attempt against each key (and forget failures older than the window)."""
    conn.execute(delete(login_failures).where(login_failures.c.at <= now - FAILURE_WINDOW))
    conn.execute(insert(login_failures), [{"key": key, "at": now} for _, key in keys])


def clear_failures(conn: Connection, email_key: str) -> None:
    """A good sign-in forgets that address's failures (the client's stay)."""
    conn.execute(delete(login_failures).where(login_failures.c.key == email_key))
