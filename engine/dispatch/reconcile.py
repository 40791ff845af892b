"""Settle messages whose outcome is not known: never resend blindly.

A row is left `sending` when a dispatcher died between the provider call and the outcome write,
and becomes `unknown` when the provider call timed out or the connection dropped after the
request went out. Either may have been delivered. The rule:

0. `claimed` for longer than `after` → `planned` again: a dispatcher claimed it and died before
   its request (rows turn `sending` just before theirs), so it is safe to send;
1. any provider event for the row's send key (processed, delivered, open, bounce, …: SendGrid
   carries the send key in `custom_args`) → `sent`;
2. `sending` for longer than `after` with no event → `unknown` (the dispatcher is gone);
3. `unknown` for longer than `2 × after` with still no event → `failed` with reason
   `unconfirmed`. It is not resent: a person decides, with the audit row in front of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, exists, select, update

from engine.audit import Decision, Reason, audit_row, ledger_fields, record
from engine.store.models import ledger, message_events


@dataclass(frozen=True)
class ReconcileResult:
    """How many rows each rule settled."""

    confirmed: int
    unknown: int
    unconfirmed: int
    requeued: int = 0


def reconcile(conn: Connection, now: datetime, after: timedelta, run_id: str) -> ReconcileResult:
    """Apply the three rules at `now`. The caller owns the transaction."""
    has_event = exists().where(message_events.c.send_key == ledger.c.send_key)
    unsettled = ledger.c.status.in_(["sending", "unknown"])
    stale = ledger.c.updated_at < now - after
    requeued = _settle(
        conn,
        [ledger.c.status == "claimed", stale],
        ("planned", None),
        now,
        run_id,
        (Decision.DEFERRED, Reason.CLAIM_EXPIRED, f"claimed {after} ago and never sent: back in the queue"),
    )
    confirmed = _settle(
        conn,
        [unsettled, has_event],
        ("sent", None),
        now,
        run_id,
        (Decision.RECONCILED, Reason.PROVIDER_EVENT, "the provider reported an event for this message"),
    )
    gone = _settle(
        conn,
        [ledger.c.status == "sending", stale, ~has_event],
        ("unknown", "dispatcher stopped during the send"),
        now,
        run_id,
        (Decision.UNKNOWN, Reason.OUTCOME_UNKNOWN, f"still sending after {after}: the dispatcher stopped"),
    )
    given_up = _settle(
        conn,
        [ledger.c.status == "unknown", ledger.c.updated_at < now - 2 * after, ~has_event],
        ("failed", "unconfirmed: no provider event; not resent"),
        now,
        run_id,
        (Decision.FAILED, Reason.UNCONFIRMED, "no provider event arrived; not resent (it may have been delivered)"),
    )
    return ReconcileResult(confirmed, gone, given_up, requeued)


def _settle(
    conn: Connection,
    where: list[Any],
    new: tuple[str, str | None],
    now: datetime,
    run_id: str,
    why: tuple[Decision, Reason, str],
) -> int:
    status, error = new
    decision, reason, detail = why
    rows: list[Row[Any]] = list(conn.execute(select(ledger).where(*where)).all())
    if not rows:
        return 0
    ids = [r.id for r in rows]
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if status == "planned":
        values["claim_token"] = None  # back in the queue: the dead dispatcher's claim is void
    if error is not None:
        values["error"] = error
    for start in range(0, len(ids), 1000):
        conn.execute(update(ledger).where(ledger.c.id.in_(ids[start : start + 1000]), *where).values(**values))
    audits = [audit_row(**ledger_fields(r, now, run_id), decision=decision, reason=reason, detail=detail) for r in rows]
    record(conn, audits)
    return len(rows)
