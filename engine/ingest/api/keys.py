"""Write keys of the ingestion API: created once (the key is shown then and never again),
stored only as a sha256 hash with a short prefix to tell keys apart, and revocable."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from engine.store.models import write_keys

#: Every key starts with it, so a key pasted in the wrong place is recognisable.
KEY_PREFIX = "tfk_"
#: Characters of a key kept in clear, for `touchflow keys list` (the prefix plus 8 characters).
SHOWN = 12
_NAME_LIMIT = 100


class KeyProblem(ValueError):
    """A key that cannot be created or revoked; the message says why."""


@dataclass(frozen=True)
class KeyInfo:
    """What is known of a key without the key itself."""

    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


def key_hash(key: str) -> str:
    """The stored form of `key`: its sha256, in hex."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def create_key(conn: Connection, name: str, now: datetime) -> str:
    """A new key called `name`, stored as its hash; the key itself is returned only here.

    Raises KeyProblem when the name is empty, too long, or already taken (even by a revoked key:
    a name identifies one key in the events it wrote)."""
    if not name.strip() or len(name) > _NAME_LIMIT:
        raise KeyProblem(f"a key name is 1 to {_NAME_LIMIT} characters, not {len(name)}")
    if conn.execute(select(write_keys.c.id).where(write_keys.c.name == name)).first() is not None:
        raise KeyProblem(f"a key named '{name}' already exists (names are never reused; pick another)")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        with conn.begin_nested():
            conn.execute(
                write_keys.insert().values(
                    name=name, key_hash=key_hash(key), key_prefix=key[:SHOWN], created_at=now, revoked_at=None
                )
            )
    except IntegrityError:  # another writer took the name between the check and the insert
        raise KeyProblem(f"a key named '{name}' already exists (names are never reused; pick another)") from None
    return key


def list_keys(conn: Connection) -> list[KeyInfo]:
    """Every key, oldest first."""
    query = select(write_keys).order_by(write_keys.c.created_at, write_keys.c.id)
    return [KeyInfo(r.name, r.key_prefix, r.created_at, r.revoked_at) for r in conn.execute(query)]


def revoke_key(conn: Connection, name: str, now: datetime) -> bool:
    """Revoke the key called `name` (from the next request on); False when no key has that name.
    Revoking a revoked key keeps its first revocation time."""
    found = conn.execute(select(write_keys.c.revoked_at).where(write_keys.c.name == name)).first()
    if found is None:
        return False
    if found.revoked_at is None:
        conn.execute(update(write_keys).where(write_keys.c.name == name).values(revoked_at=now))
    return True


def authenticate(conn: Connection, key: str) -> int | None:
    """The id of the live key `key`, or None (unknown or revoked: the caller says 401 to both)."""
    query = select(write_keys.c.id).where(write_keys.c.key_hash == key_hash(key), write_keys.c.revoked_at.is_(None))
    found = conn.execute(query).scalar_one_or_none()
    return int(found) if found is not None else None
