"""A contact's timeline: "why did this person get this email", in time order.

For the contact(s) a value names (an id, an email in any case, or the customer's external id):
the enrollments that concern them (their own, and their account's that planned deliveries for
them), every decision with its reason and the numbers behind it, each send with a link to the
message as sent (engine/archive.py), and what the recipient did (message_events: delivered,
open, click, bounce, unsubscribe…).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, or_, select

from engine.archive import archived_keys
from engine.audit_report import find_contacts
from engine.store.models import audit_log, enrollments, ledger, message_events

KIND_ORDER = {"enrollment": 0, "decision": 1, "event": 2}
"""At the same moment: the entry, then what was decided, then what the recipient did."""


@dataclass(frozen=True)
class TimelineEntry:
    """One line of a timeline."""

    at: datetime
    kind: str  # enrollment | decision | event
    what: str  # enrolled, a decision (sent, deferred…), or an event (open, click…)
    playbook: str | None = None
    step: str | None = None
    reason: str | None = None
    detail: str = ""
    send_key: str | None = None
    content_hash: str | None = None
    archived: bool = False
    """The message as sent is in the archive (`message_as_sent(send_key)`)."""
    contact_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain fields, `at` in ISO 8601 UTC."""
        return {
            "at": self.at.replace(tzinfo=UTC).isoformat(timespec="seconds"),
            "kind": self.kind,
            "what": self.what,
            "playbook": self.playbook,
            "step": self.step,
            "reason": self.reason,
            "detail": self.detail,
            "send_key": self.send_key,
            "content_hash": self.content_hash,
            "archived": self.archived,
            "contact_id": self.contact_id,
        }


@dataclass(frozen=True)
class Timeline:
    """The contact ids a value named, and their entries in time order."""

    contacts: tuple[int, ...]
    entries: list[TimelineEntry]


def contact_timeline(conn: Connection, value: str, *, limit: int | None = None) -> Timeline:
    """The timeline of the contact `value` names (LookupError when none does); with `limit`, the
    latest `limit` entries (still oldest first)."""
    ids = find_contacts(conn, value)
    sends = select(ledger.c.send_key, ledger.c.enrollment_id).where(ledger.c.contact_id.in_(ids))
    keyed = conn.execute(sends).all()
    send_keys = sorted({r.send_key for r in keyed})
    enrollment_ids = {r.enrollment_id for r in keyed}
    own = select(enrollments.c.id).where(enrollments.c.subject_type == "contact", enrollments.c.subject_id.in_(ids))
    enrollment_ids |= set(conn.execute(own).scalars())
    entries = _enrollments(conn, sorted(enrollment_ids))
    entries += _decisions(conn, ids, sorted(enrollment_ids))
    entries += _events(conn, send_keys)
    entries.sort(key=lambda e: (e.at, KIND_ORDER[e.kind]))
    if limit is not None:
        entries = entries[-limit:] if limit > 0 else []
    return Timeline(ids, entries)


def _enrollments(conn: Connection, ids: list[int]) -> list[TimelineEntry]:
    if not ids:
        return []
    rows = conn.execute(select(enrollments).where(enrollments.c.id.in_(ids)))
    return [
        TimelineEntry(
            at=r.enrolled_at,
            kind="enrollment",
            what="enrolled",
            playbook=r.playbook_id,
            detail=f"{r.subject_type} {r.subject_id} entered (occurrence {r.trigger_key or 'once'}); now {r.status}"
            + (f": {r.outcome}" if r.outcome else ""),
            contact_id=r.subject_id if r.subject_type == "contact" else None,
        )
        for r in rows
    ]


def _decisions(conn: Connection, ids: tuple[int, ...], enrollment_ids: list[int]) -> list[TimelineEntry]:
    # The contact's own decisions, and their enrollments' decisions that name no one (a wait, an
    # exit, a goal): the audit's `enrolled` rows are covered by the enrollments themselves.
    whose: ColumnElement[bool] = audit_log.c.contact_id.in_(ids)
    if enrollment_ids:
        whose = or_(whose, and_(audit_log.c.enrollment_id.in_(enrollment_ids), audit_log.c.contact_id.is_(None)))
    query = select(audit_log).where(whose, audit_log.c.decision != "enrolled").order_by(audit_log.c.at, audit_log.c.id)
    rows = conn.execute(query).all()
    kept = archived_keys(conn, [r.send_key for r in rows if r.send_key and r.decision == "sent"])
    return [
        TimelineEntry(
            at=r.at,
            kind="decision",
            what=r.decision,
            playbook=r.playbook_id,
            step=r.step_id,
            reason=r.reason,
            detail=r.detail,
            send_key=r.send_key,
            content_hash=r.content_hash,
            archived=r.decision == "sent" and r.send_key in kept,
            contact_id=r.contact_id,
        )
        for r in rows
    ]


def _events(conn: Connection, send_keys: list[str]) -> list[TimelineEntry]:
    if not send_keys:
        return []
    query = (
        select(message_events, ledger.c.playbook_id, ledger.c.step_id, ledger.c.contact_id)
        .join(ledger, ledger.c.send_key == message_events.c.send_key)
        .where(message_events.c.send_key.in_(send_keys))
    )
    return [
        TimelineEntry(
            at=r.occurred_at,
            kind="event",
            what=r.event,
            playbook=r.playbook_id,
            step=r.step_id,
            detail=_event_detail(r.payload),
            send_key=r.send_key,
            contact_id=r.contact_id,
        )
        for r in conn.execute(query)
    ]


def _event_detail(payload: Any) -> str:
    """What an event's payload says that a person wants (a clicked URL, a bounce's reason)."""
    if not isinstance(payload, dict):
        return ""
    said = [f"{k}: {payload[k]}" for k in ("url", "reason", "type") if isinstance(payload.get(k), str | int)]
    return "; ".join(said)
