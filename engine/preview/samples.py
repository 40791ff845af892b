"""Who a preview renders for: recipients the playbook would really reach at `now`.

The playbook's own segment ∧ trigger select its subjects set-based (`matching_subjects`, the SQL
the evaluator runs), limited; their contacts are the candidates, read as dispatch reads them (a
row that cannot be read is left out, never raised). Only when nobody matches does a preview fall
back to any contact, and it says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, select

from engine.compile import CompiledPlaybook
from engine.store.models import accounts, contacts
from engine.store.readable import read_rows

POOL = 200
"""The most matching subjects a preview reads: samples are a few of them, per locale and role."""


@dataclass(frozen=True)
class Candidate:
    """A contact a preview may render for, with what picks its locale and its arm."""

    contact_id: int
    account_id: int
    role: str | None
    locales: tuple[str | None, str | None]
    """(contact's, account's) locale: dispatch's locale chain starts with them."""
    subject: str
    """`account:<id>` or `contact:<id>`: what experiment arms are assigned by."""


@dataclass(frozen=True)
class Pool:
    """The candidates, and what the reader should know about where they come from."""

    candidates: list[Candidate]
    notes: list[str]


def candidates(conn: Connection, playbook: CompiledPlaybook, now: datetime, contact_id: int | None = None) -> Pool:
    """Contacts the playbook reaches at `now` (or the one asked for); any contacts, with a note
    saying so, when the segment and trigger match nobody."""
    c = contacts.c
    if contact_id is not None:
        found = _read(conn, select(contacts).where(c.id == contact_id), playbook)
        return Pool(found, [] if found else [f"no readable contact with id {contact_id}"])
    subjects = playbook.matching_subjects(now).order_by("subject_id").limit(POOL).subquery("matching")
    owner = c.id if playbook.subject == "contact" else c.account_id
    matched = _read(conn, select(contacts).where(owner.in_(select(subjects.c.subject_id))).order_by(c.id), playbook)
    if matched:
        return Pool(matched, [])
    anyone = _read(conn, select(contacts).order_by(c.id).limit(POOL), playbook)
    when = now.isoformat(sep=" ", timespec="minutes")
    note = f"nobody matches {playbook.id}'s segment and trigger at {when} UTC: showing any contact instead"
    return Pool(anyone, [note])


def _read(conn: Connection, stmt: Select[Any], playbook: CompiledPlaybook) -> list[Candidate]:
    people = read_rows(conn, stmt, contacts).rows
    account_ids = sorted({p.account_id for p in people})
    owners = read_rows(conn, select(accounts.c.id, accounts.c.locale).where(accounts.c.id.in_(account_ids)), accounts)
    locale_of = {a.id: a.locale for a in owners.rows}
    return [
        Candidate(
            contact_id=p.id,
            account_id=p.account_id,
            role=p.role,
            locales=(p.locale, locale_of.get(p.account_id)),
            subject=f"contact:{p.id}" if playbook.subject == "contact" else f"account:{p.account_id}",
        )
        for p in people
        if p.account_id in locale_of  # an account row that cannot be read costs its contacts
    ]
