"""`touchflow audit`: what was decided, for whom, and why — filtered, as a table, CSV or JSON lines.

Every row of `audit_log` is one decision with a stable reason code and the numbers behind it
(`detail`). Times are stored in UTC; they are printed in ISO 8601 with their offset.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from engine.spec.base import parse_duration
from engine.store.models import audit_log

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
    contact: int | None = None
    account: int | None = None
    reason: str | None = None
    decision: str | None = None
    since: datetime | None = None  # naive UTC, inclusive
    until: datetime | None = None  # naive UTC, exclusive
    limit: int | None = None


def parse_moment(value: str, now: datetime) -> datetime:
    """A `--since`/`--until` value as naive UTC: an ISO date or date-time (with or without an
    offset), or a duration back from `now` such as `7d` or `12h`."""
    text = value.strip()
    if re.fullmatch(r"\d+\s*[smhdw]", text):
        try:
            return now - parse_duration(text, signed=False)
        except OverflowError:
            raise ValueError(f"'{value}' reaches back before the year 1") from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"'{value}' is neither a date (2026-11-23), a date-time nor a duration (7d)") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def query_audit(conn: Connection, where: AuditFilter) -> Iterator[dict[str, Any]]:
    """Matching audit rows, oldest first, as dicts with `FIELDS` as keys."""
    query = select(audit_log).order_by(audit_log.c.at, audit_log.c.id)
    if where.playbook is not None:
        query = query.where(audit_log.c.playbook_id == where.playbook)
    if where.contact is not None:
        query = query.where(audit_log.c.contact_id == where.contact)
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
    if where.limit is not None:
        query = query.limit(where.limit)
    for row in conn.execute(query):
        yield {
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


def reason_counts(rows: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """(decision, reason, count), most frequent first: the summary under the table."""
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row["decision"], row["reason"])
        counts[key] = counts.get(key, 0) + 1
    return sorted(((d, r, n) for (d, r), n in counts.items()), key=lambda t: (-t[2], t[0], t[1]))
