"""Settle messages whose outcome is not known: never resend blindly.

A row is left `sending` when a dispatcher died between the channel call and the outcome write,
and becomes `unknown` when the provider call timed out or the connection dropped after the
request went out. Either may have been delivered. The rules, in order:

0. `claimed` for longer than `after` → `planned` again: a dispatcher claimed it and died before
   its request (rows turn `sending` just before theirs), so it is safe to send. "Longer" is
   measured on the real clock too (`wall`, against the row's `claimed_at`) when it is given, as
   a live tick does: a re-run at the same `--now` still sees a dead dispatcher's claim expire.
   A claim requeued while its dispatcher still lives costs nothing but time: every later write
   of that dispatcher is guarded by its claim token, so it sends none of those rows;
1. the outbox (when its directory is given): the truth is on disk. A `sending` row older than
   `after`, or an `unknown` one, is `sent` when its `<send_key>.eml` is committed and whole (the
   channel writes a temp file and renames it, so the name means a complete message; it is parsed
   to be sure), and `planned` again when it is not: nothing went out, so sending it is safe (and
   a second write would replace the same file, never add one);
2. any provider event for the row's send key (processed, delivered, open, bounce, …: SendGrid
   carries the send key in `custom_args`) → `sent`;
3. `sending` for longer than `after` with no event → `unknown` (the dispatcher is gone);
4. `unknown` for longer than `2 × after` with still no event → `failed` with reason
   `unconfirmed`. It is not resent: a person decides, with the audit row in front of them
   (docs/operations.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Row, and_, exists, or_, select, update

from engine.audit import Decision, Reason, audit_row, ledger_fields, record
from engine.dispatch.channels import OutboxChannel
from engine.store.models import ledger, message_events


@dataclass(frozen=True)
class ReconcileResult:
    """How many rows each rule settled."""

    confirmed: int
    unknown: int
    unconfirmed: int
    requeued: int = 0
    found_on_disk: int = 0
    not_on_disk: int = 0


def reconcile(
    conn: Connection,
    now: datetime,
    after: timedelta,
    run_id: str,
    outbox: Path | None = None,
    wall: datetime | None = None,
) -> ReconcileResult:
    """Apply the rules at `now`. The caller owns the transaction.

    `outbox`: the outbox directory when the project's channel is the outbox; its rows are then
    settled from the disk (rule 1). Without it every row follows the provider rules (2–4).
    `wall`: the real clock's time (naive UTC); claims also expire by it (rule 0), not only by
    the tick's `now`."""
    has_event = exists().where(message_events.c.send_key == ledger.c.send_key)
    stale = ledger.c.updated_at < now - after
    expired: Any = stale
    if wall is not None:  # a re-run at the same `now` still sees a dead dispatcher's claim expire
        expired = or_(stale, and_(ledger.c.claimed_at.is_not(None), ledger.c.claimed_at < wall - after))
    requeued = _settle(
        conn,
        [ledger.c.status == "claimed", expired],
        ("planned", None),
        now,
        run_id,
        (Decision.DEFERRED, Reason.CLAIM_EXPIRED, f"claimed {after} ago and never sent: back in the queue"),
    )
    found = not_found = 0
    provider: list[Any] = []
    if outbox is not None:
        found, not_found = _settle_from_disk(conn, OutboxChannel(outbox), now, after, run_id)
        provider = [ledger.c.channel != OutboxChannel.name]
    confirmed = _settle(
        conn,
        [ledger.c.status.in_(["sending", "unknown"]), has_event, *provider],
        ("sent", None),
        now,
        run_id,
        (Decision.RECONCILED, Reason.PROVIDER_EVENT, "the provider reported an event for this message"),
    )
    gone = _settle(
        conn,
        [ledger.c.status == "sending", stale, ~has_event, *provider],
        ("unknown", "dispatcher stopped during the send"),
        now,
        run_id,
        (Decision.UNKNOWN, Reason.OUTCOME_UNKNOWN, f"still sending after {after}: the dispatcher stopped"),
    )
    given_up = _settle(
        conn,
        [ledger.c.status == "unknown", ledger.c.updated_at < now - 2 * after, ~has_event, *provider],
        ("failed", "unconfirmed: no provider event; not resent"),
        now,
        run_id,
        (Decision.FAILED, Reason.UNCONFIRMED, "no provider event arrived; not resent (it may have been delivered)"),
    )
    return ReconcileResult(confirmed, gone, given_up, requeued, found, not_found)


def _settle_from_disk(
    conn: Connection, outbox: OutboxChannel, now: datetime, after: timedelta, run_id: str
) -> tuple[int, int]:
    """Rule 1: outbox rows left `sending` (longer than `after`: a live dispatcher may be writing
    a younger one) or `unknown`, settled by whether their file is committed. Returns (sent, requeued)."""
    open_rows = and_(
        ledger.c.channel == OutboxChannel.name,
        or_(and_(ledger.c.status == "sending", ledger.c.updated_at < now - after), ledger.c.status == "unknown"),
    )
    rows = list(conn.execute(select(ledger).where(open_rows).order_by(ledger.c.id)).all())
    if not rows:
        return 0, 0
    sent_detail = f"found in the outbox ({outbox.directory}) after the dispatcher stopped: written, so sent"
    requeue_detail = f"not in the outbox ({outbox.directory}): never written, so safe to send: back in the queue"
    audits = []
    found = 0
    for row in rows:
        message_id = outbox.committed(row.send_key)
        # Guarded by the status read above: a row settled meanwhile (its dispatcher was alive
        # after all, or another tick reconciles too) keeps its outcome and gets no audit row here.
        stmt = update(ledger).where(ledger.c.id == row.id, ledger.c.status == row.status)
        if message_id is not None:
            stmt = stmt.values(status="sent", provider_message_id=message_id, error=None, updated_at=now)
            why = (Decision.RECONCILED, Reason.FOUND_IN_OUTBOX, sent_detail)
        else:
            # The dead dispatcher's claim is void, and this was not an attempt.
            stmt = stmt.values(status="planned", claim_token=None, claimed_at=None, updated_at=now)
            why = (Decision.DEFERRED, Reason.NOT_IN_OUTBOX, requeue_detail)
        if conn.execute(stmt).rowcount != 1:
            continue
        found += message_id is not None
        decision, reason, detail = why
        audits.append(audit_row(**ledger_fields(row, now, run_id), decision=decision, reason=reason, detail=detail))
    record(conn, audits)
    return found, len(audits) - found


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
        values["claimed_at"] = None
    if error is not None:
        values["error"] = error
    for start in range(0, len(ids), 1000):
        conn.execute(update(ledger).where(ledger.c.id.in_(ids[start : start + 1000]), *where).values(**values))
    audits = [audit_row(**ledger_fields(r, now, run_id), decision=decision, reason=reason, detail=detail) for r in rows]
    record(conn, audits)
    return len(rows)
