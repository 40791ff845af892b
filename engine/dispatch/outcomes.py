"""What happened to each ledger row, and writing it down.

A send's result is classified here — sent, failed with its reason, `unknown` (maybe sent: never
resent), or `planned` again with a `not_before` (429/5xx after the in-dispatch retries, a channel
whose storage refused it) — and a window of outcomes is written as one guarded executemany plus
one audit insert, only for rows this dispatcher still holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, bindparam, or_, select, update

from engine.audit import Decision, Reason, audit_row, record
from engine.dispatch.channels import OutgoingEmail, SendError
from engine.dispatch.retry import backoff
from engine.policy.gate import lock
from engine.policy.tasks import place_task
from engine.spec.policy import Policy
from engine.store.models import ledger

MAX_DISPATCHES = 5
"""Dispatches (each with its own retries) before a message that keeps getting 429/5xx fails."""

UNAVAILABLE_RETRY_CAP = timedelta(hours=1)
"""The longest wait between dispatches of a message its channel could not take (a full or
read-only outbox): retried at this pace for as long as the outage lasts, never failed for it."""

SEND_BACKOFF_BASE_S = 0.25
SEND_BACKOFF_CAP_S = 30.0
"""A retryable answer without Retry-After: 0.25 s doubled per retry, at most 30 s, with jitter."""

DEFERRED_RETRY_FACTOR = 30
DEFERRED_RETRY_MIN = timedelta(seconds=60)
"""A message still refused after its in-dispatch retries waits 30 × that backoff, at least a minute."""

UNAVAILABLE_BACKOFF_BASE_S = 60.0
"""A channel that could not store the message: a minute, doubled per dispatch, up to the cap."""


@dataclass
class DispatchResult:
    """Deliveries per playbook."""

    emails: Counter[str] = field(default_factory=Counter)
    tasks: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    webhooks: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, dict[str, int]]:
        """Plain counts, to cross a Prefect task boundary."""
        return {
            "emails": dict(self.emails),
            "tasks": dict(self.tasks),
            "failed": dict(self.failed),
            "webhooks": dict(self.webhooks),
            "deferred": dict(self.deferred),
            "skipped": dict(self.skipped),
        }

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, int]]) -> DispatchResult:
        """The counts `as_dict` gave (older ones may lack webhooks, deferred and skipped)."""
        return cls(
            emails=Counter(data["emails"]),
            tasks=Counter(data["tasks"]),
            failed=Counter(data["failed"]),
            webhooks=Counter(data.get("webhooks", {})),
            deferred=Counter(data.get("deferred", {})),
            skipped=Counter(data.get("skipped", {})),
        )


@dataclass
class Outcome:
    """What happened to one ledger row, ready to be written."""

    row: Row[Any]
    status: str  # sent | failed | skipped | unknown | planned (to retry later)
    audit: dict[str, Any]
    provider_id: str | None = None
    error: str | None = None
    task: dict[str, Any] | None = None
    team: str | None = None  # the account owner's team: where the task may go instead
    not_before: datetime | None = None


def send_wait(retry: int, retry_after: float | None) -> float:
    """Seconds before retry number `retry` (0 for the first) of a message: what the provider
    asked for (Retry-After), else the send backoff with jitter."""
    if retry_after is not None:
        return retry_after
    return backoff(retry, base=SEND_BACKOFF_BASE_S, cap=SEND_BACKOFF_CAP_S)


def sent(row: Row[Any], base: dict[str, Any], email: OutgoingEmail, provider_id: str) -> Outcome:
    """The channel took the email: `sent`, audited with what went to whom and its content hash."""
    what = f"{email.rendered.template_file} to {email.to_email}: {email.rendered.subject}"
    audit = audit_row(
        **base,
        decision=Decision.SENT,
        reason=Reason.DELIVERED_TO_CHANNEL,
        detail=what,
        content_hash=email.rendered.content_hash,
    )
    return Outcome(row, "sent", audit, provider_id=provider_id)


def send_failure(row: Row[Any], base: dict[str, Any], exc: SendError, attempts: int, now: datetime) -> Outcome:
    """The channel's last answer after `attempts` tries in this dispatch, as the row's outcome:
    `unknown` (maybe sent), `planned` again later (storage refused it; busy, below
    MAX_DISPATCHES), or `failed` with the provider's reason."""
    message = f"{exc} (after {attempts} attempt{'s' * (attempts != 1)})"
    if exc.kind == "ambiguous":
        audit = audit_row(**base, decision=Decision.UNKNOWN, reason=Reason.OUTCOME_UNKNOWN, detail=str(exc))
        return Outcome(row, "unknown", audit, error=str(exc))
    if exc.kind == "unavailable":
        # Nothing was written and the message is not at fault (a full or read-only outbox):
        # failing it would turn an outage into lost mail, so it waits for the storage, with a
        # backoff capped at UNAVAILABLE_RETRY_CAP, however many dispatches that takes.
        cap = UNAVAILABLE_RETRY_CAP.total_seconds()
        wait = backoff(row.attempts, base=UNAVAILABLE_BACKOFF_BASE_S, cap=cap, jitter=False)
        later = now + timedelta(seconds=wait)
        detail = f"{message}; next try after {later.isoformat(timespec='seconds')}"
        audit = audit_row(**base, decision=Decision.DEFERRED, reason=Reason.CHANNEL_UNAVAILABLE, detail=detail)
        return Outcome(row, "planned", audit, error=message, not_before=later)
    if exc.kind == "retry" and row.attempts + 1 < MAX_DISPATCHES:
        busy = timedelta(seconds=send_wait(row.attempts, exc.retry_after) * DEFERRED_RETRY_FACTOR)
        later = now + max(DEFERRED_RETRY_MIN, busy)
        detail = f"{message}; next try after {later.isoformat(timespec='seconds')}"
        audit = audit_row(**base, decision=Decision.DEFERRED, reason=Reason.PROVIDER_BUSY, detail=detail)
        return Outcome(row, "planned", audit, error=message, not_before=later)
    return failed(row, base, Reason.PROVIDER_REJECTED, message)


def failed(row: Row[Any], base: dict[str, Any], reason: Reason, message: str) -> Outcome:
    """The row fails for good with `reason`; `message` says what is wrong (the audit's detail)."""
    audit = audit_row(**base, decision=Decision.FAILED, reason=reason, detail=message)
    return Outcome(row, "failed", audit, error=message)


def write_outcomes(
    conn: Connection, outcomes: Sequence[Outcome], now: datetime, result: DispatchResult, policy: Policy
) -> None:
    """Write a window of outcomes: ledger rows (one executemany), tasks, and their audit rows —
    only for rows this dispatcher still holds (a reconciliation or another dispatcher wins) —
    and count them in `result`. Tasks are placed under `policy.csm` (the policy lock held)."""
    outcomes = still_held(conn, outcomes)
    if not outcomes:
        return
    with_tasks = [o for o in outcomes if o.task is not None]
    if with_tasks:
        lock(conn, "policy", now)  # dedupe and CSM capacity hold across dispatchers
        for o in with_tasks:
            assert o.task is not None
            placed = place_task(conn, o.task, policy.csm, o.team)
            o.audit["reason"] = placed.reason.value
            o.audit["detail"] = f"{o.task['priority']} task: {o.task['title']} — {placed.detail}"
    params = []
    for o in outcomes:
        row = o.row
        retry = o.status == "planned"
        params.append(
            {
                "row_id": row.id,
                "held_by": row.claim_token,
                "new_status": o.status,
                "new_error": o.error,
                "new_provider_id": o.provider_id if o.provider_id is not None else row.provider_message_id,
                "new_attempts": row.attempts + 1 if retry else row.attempts,
                "new_not_before": o.not_before if retry else row.not_before,
                "settled_at": now,
            }
        )
    conn.execute(_SETTLE, params)
    record(conn, [o.audit for o in outcomes])
    _count(outcomes, result)


def _count(outcomes: Sequence[Outcome], result: DispatchResult) -> None:
    for o in outcomes:
        if o.status == "sent":
            counter = {"task": result.tasks, "webhook": result.webhooks}.get(o.row.kind, result.emails)
            counter[o.row.playbook_id] += 1
        elif o.status == "failed":
            result.failed[o.row.playbook_id] += 1
        elif o.status == "skipped":
            result.skipped[o.row.playbook_id] += 1
        elif o.status == "planned":  # back in the queue for a later dispatch (429/5xx, storage)
            result.deferred[o.row.playbook_id] += 1


def still_held(conn: Connection, outcomes: Sequence[Outcome]) -> list[Outcome]:
    """The outcomes whose rows are still claimed or sending under this dispatcher's claim token."""
    ids = [o.row.id for o in outcomes]
    held = {r.id: r.claim_token for r in conn.execute(_HELD, {"ids": ids}) if r.status in ("claimed", "sending")}
    return [o for o in outcomes if o.row.id in held and held[o.row.id] == o.row.claim_token]


# The statements of every window, built once: a statement object built per call costs more to
# build and to look up in the compiled cache (~80 µs) than to run.
_SETTLE = (
    update(ledger)
    # Guarded: a reconciliation that already settled the row wins. (No IN: executemany refuses
    # expanding parameters.)
    .where(
        ledger.c.id == bindparam("row_id"),
        or_(ledger.c.status == "claimed", ledger.c.status == "sending"),
        ledger.c.claim_token == bindparam("held_by"),
    )
    .values(
        status=bindparam("new_status"),
        error=bindparam("new_error"),
        provider_message_id=bindparam("new_provider_id"),
        attempts=bindparam("new_attempts"),
        not_before=bindparam("new_not_before"),
        updated_at=bindparam("settled_at"),
    )
)
_HELD = select(ledger.c.id, ledger.c.claim_token, ledger.c.status).where(
    ledger.c.id.in_(bindparam("ids", expanding=True))  # by primary key alone; the status is read
)
