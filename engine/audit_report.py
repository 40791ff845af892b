"""`touchflow audit`: what was decided, for whom, and why — filtered, as a table, CSV or JSON lines.

Every row of `audit_log` is one decision with a stable reason code and the numbers behind it
(`detail`). Times are stored in UTC; they are printed in ISO 8601 with their offset.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, func, literal, select, tuple_

from engine.output import as_csv
from engine.spec.base import parse_duration
from engine.store.models import audit_log, contacts, enrollments

FIELDS = (
    "at",
    "playbook",
    "step",
    "account_id",
    "contact_id",
    "channel",
    "decision",
    "reason",
    "detail",
    "variant",
    "send_key",
)
"""The columns of every format, in order (JSON keys too)."""


@dataclass(frozen=True)
class AuditFilter:
    """Which decisions to show; unset fields do not filter."""

    playbook: str | None = None
    contacts: tuple[int, ...] | None = None
    """The contact ids of the person asked for (one email may belong to a contact per account)."""
    account: int | None = None
    reason: str | None = None
    decision: str | None = None
    since: datetime | None = None  # naive UTC, inclusive
    until: datetime | None = None  # naive UTC, exclusive
    limit: int | None = None


MOMENT_FORMS = (
    "a date (2026-11-23), a date-time (2026-11-23T09:00, with or without an offset), "
    "a duration back from now (7d, 24h, 2w), today, yesterday or last-week"
)
"""The forms `--since`/`--until` take, for the error message."""


def parse_moment(value: str, now: datetime) -> datetime:
    """A `--since`/`--until` value as naive UTC: an ISO date or date-time (with or without an
    offset), a duration back from `now` such as `7d`, `24h` or `2w`, `today` or `yesterday` (their
    midnight UTC), or `last-week` (the Monday 00:00 UTC of the ISO week before `now`'s)."""
    text = value.strip()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    named = {
        "today": midnight,
        "yesterday": midnight - timedelta(days=1),
        "last-week": midnight - timedelta(days=midnight.weekday() + 7),
    }
    if text.lower() in named:
        return named[text.lower()]
    if re.fullmatch(r"\d+\s*[smhdw]", text):
        try:
            return now - parse_duration(text.replace(" ", ""), signed=False)
        except OverflowError:
            raise ValueError(f"'{value}' reaches back before the year 1") from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"'{value}' is not a moment; use {MOMENT_FORMS}") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def find_contacts(conn: Connection, value: str) -> tuple[int, ...]:
    """The ids of the contact(s) `value` names: a numeric id (of the store's contacts or its
    decisions), an email (any case; one address may be a contact in several accounts) or the
    customer's external id. LookupError when none."""
    text = value.strip()
    if text.isascii() and text.isdigit() and len(text) <= 18:  # an id the databases can hold
        # A contact since deleted from the store still has its decisions: its id is known there.
        number = int(text)
        known = (
            select(contacts.c.id)
            .where(contacts.c.id == number)
            .union(select(audit_log.c.contact_id).where(audit_log.c.contact_id == number))
        )
        if conn.execute(known).first() is not None:
            return (number,)
    if "@" in text:
        query = select(contacts.c.id).where(func.lower(contacts.c.email) == text.lower())
    else:
        query = select(contacts.c.id).where(contacts.c.external_id == text)
    found = conn.execute(query.order_by(contacts.c.id)).scalars().all()
    if not found:
        raise LookupError(f"no contact '{value}' (looked up by id, email or external id)")
    return tuple(found)


def known_playbooks(conn: Connection) -> set[str]:
    """Every playbook id the store has decisions or enrollments for."""
    seen = select(audit_log.c.playbook_id).distinct().union(select(enrollments.c.playbook_id).distinct())
    return {str(pid) for pid in conn.execute(seen).scalars() if pid is not None}


def _filtered(query: Select[Any], where: AuditFilter) -> Select[Any]:
    """`query` with every filter of `where` but the limit."""
    if where.playbook is not None:
        query = query.where(audit_log.c.playbook_id == where.playbook)
    if where.contacts is not None:
        query = query.where(audit_log.c.contact_id.in_(where.contacts))
    if where.account is not None:
        query = query.where(audit_log.c.account_id == where.account)
    if where.reason is not None:
        query = query.where(audit_log.c.reason == where.reason)
    if where.decision is not None:
        query = query.where(audit_log.c.decision == where.decision)
    if where.since is not None:
        query = query.where(audit_log.c.at >= where.since)
    if where.until is not None:
        query = query.where(audit_log.c.at < where.until)
    return query


STREAM_ROWS = 1_000
"""Rows fetched at a time when the whole filtered set is read (CSV downloads of millions of rows:
a server-side cursor on PostgreSQL, never the whole result in memory)."""


def query_audit(conn: Connection, where: AuditFilter) -> Iterator[dict[str, Any]]:
    """Matching audit rows, oldest first, as dicts with `FIELDS` as keys, streamed."""
    query = _filtered(select(audit_log), where).order_by(audit_log.c.at, audit_log.c.id)
    if where.limit is not None:
        query = query.limit(where.limit)
    # Options of this statement only: Connection.execution_options would change the caller's
    # connection in place, and every later statement on it (the next page) would run through a
    # server-side cursor.
    for row in conn.execute(query, execution_options={"stream_results": True, "yield_per": STREAM_ROWS}):
        yield _fields(row)


def _fields(row: Any) -> dict[str, Any]:
    return {
        "at": row.at.replace(tzinfo=UTC).isoformat(timespec="seconds"),
        "playbook": row.playbook_id,
        "step": row.step_id,
        "account_id": row.account_id,
        "contact_id": row.contact_id,
        "channel": row.channel,
        "decision": row.decision,
        "reason": row.reason,
        "detail": row.detail,
        "variant": row.variant,
        "send_key": row.send_key,
    }


def stream_csv(conn: Connection, where: AuditFilter) -> Iterator[str]:
    """The filtered set as CSV, a row at a time: exactly `touchflow audit --format csv` for the
    same filter (the console's download)."""
    return as_csv(query_audit(conn, where), FIELDS)


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the (at, id) of its last row. Pages walk newest first."""

    at: datetime
    id: int

    def token(self) -> str:
        """The cursor as text for a link (`2026-11-02T09:00:00.123456~42`)."""
        return f"{self.at.isoformat()}~{self.id}"

    @classmethod
    def parse(cls, token: str) -> Cursor:
        """A cursor from `token`; ValueError saying what is wrong when it is not one."""
        at, sep, ident = token.partition("~")
        try:
            if not sep or not ident.isdigit():
                raise ValueError
            return cls(datetime.fromisoformat(at).replace(tzinfo=None), int(ident))
        except ValueError:
            raise ValueError(f"'{token[:80]}' is not a page cursor (AT~ID)") from None


@dataclass(frozen=True)
class AuditPage:
    """One page of decisions, newest first (each dict has `FIELDS`, `id` and `content_hash`),
    and the cursor of the next page (None on the last)."""

    rows: list[dict[str, Any]]
    next: Cursor | None


def audit_page(conn: Connection, where: AuditFilter, *, after: Cursor | None = None, size: int = 50) -> AuditPage:
    """A page of the filtered decisions, newest first, after `after` (None: the newest). Keyset
    pagination — `WHERE (at, id) < (:at, :id) ORDER BY at DESC, id DESC LIMIT n` — served by an
    index per filter (migration 0011), so a page costs the same on page 1 or 10,000 and on 50k or
    5M rows. `where.limit` is ignored: `size` is the page's."""
    size = max(1, size)
    query = _filtered(select(audit_log), where)
    if after is not None:
        query = query.where(
            tuple_(audit_log.c.at, audit_log.c.id)
            < tuple_(literal(after.at, audit_log.c.at.type), literal(after.id, audit_log.c.id.type))
        )
    query = query.order_by(audit_log.c.at.desc(), audit_log.c.id.desc()).limit(size + 1)
    rows = conn.execute(query).all()
    shown = rows[:size]
    later = Cursor(shown[-1].at, int(shown[-1].id)) if len(rows) > size else None
    return AuditPage([{**_fields(r), "id": int(r.id), "content_hash": r.content_hash} for r in shown], later)


SUMMARY_FIELDS = ("playbook", "decision", "reason", "decisions", "contacts", "accounts")
"""The columns of `--summary` in every format."""


def summarize(conn: Connection, where: AuditFilter) -> list[dict[str, Any]]:
    """Per playbook, decision and reason: the decisions and the people they concern (distinct
    contacts and accounts); by playbook, most frequent first. The limit caps the lines."""
    decisions = func.count().label("decisions")
    query = (
        _filtered(
            select(
                audit_log.c.playbook_id,
                audit_log.c.decision,
                audit_log.c.reason,
                decisions,
                func.count(audit_log.c.contact_id.distinct()).label("contacts"),
                func.count(audit_log.c.account_id.distinct()).label("accounts"),
            ),
            where,
        )
        .group_by(audit_log.c.playbook_id, audit_log.c.decision, audit_log.c.reason)
        .order_by(audit_log.c.playbook_id, decisions.desc(), audit_log.c.decision, audit_log.c.reason)
    )
    if where.limit is not None:
        query = query.limit(where.limit)
    return [
        {
            "playbook": row.playbook_id,
            "decision": row.decision,
            "reason": row.reason,
            "decisions": int(row.decisions),
            "contacts": int(row.contacts),
            "accounts": int(row.accounts),
        }
        for row in conn.execute(query)
    ]
