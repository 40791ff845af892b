"""The audit trail: every decision as an append-only row with a stable reason code."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, insert

from engine.store.models import audit_log


class Decision(StrEnum):
    """What the engine did."""

    ENROLLED = "enrolled"
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"
    TASK_OPENED = "task_opened"
    WAITING = "waiting"
    COMPLETED = "completed"
    CONVERTED = "converted"
    EXITED = "exited"
    BRANCHED = "branched"
    UPDATED = "updated"
    WEBHOOK_CALLED = "webhook_called"
    UNKNOWN = "unknown"
    DEFERRED = "deferred"
    RECONCILED = "reconciled"
    SUPPRESSED = "suppressed"
    PAUSED = "paused"  # a guardrail stopped the playbook this tick (engine/guard/)
    RESUMED = "resumed"  # `touchflow resume` released a held playbook
    TASK_CLOSED = "task_closed"  # `touchflow tasks close ID --outcome …`
    TEST_SEND = "test_send"  # a console user sent a variant to their own address: no ledger row


class Reason(StrEnum):
    """Why. Stable codes: reports and filters depend on them; add, never rename."""

    TRIGGER_MATCHED = "trigger_matched"
    DELIVERED_TO_CHANNEL = "delivered_to_channel"
    TASK_CREATED = "task_created"
    NO_RECIPIENTS = "no_recipients"
    INVALID_EMAIL = "invalid_email"
    RENDER_FAILED = "render_failed"
    CHANNEL_ERROR = "channel_error"
    WAIT_STEP = "wait_step"
    JOURNEY_END = "journey_end"
    GOAL_REACHED = "goal_reached"
    EXIT_CONDITION = "exit_condition"
    EXIT_STEP = "exit_step"
    CONDITION_FALSE = "condition_false"
    BRANCH = "branch"
    UPDATE_STEP = "update_step"
    VERSION_CHANGED = "version_changed"
    STEP_REMOVED = "step_removed"
    LOOP = "loop"
    WEBHOOK_DELIVERED = "webhook_delivered"
    WEBHOOK_FAILED = "webhook_failed"
    OUTCOME_UNKNOWN = "outcome_unknown"
    PROVIDER_BUSY = "provider_busy"
    PROVIDER_REJECTED = "provider_rejected"
    PROVIDER_EVENT = "provider_event"
    UNCONFIRMED = "unconfirmed"
    CLAIM_EXPIRED = "claim_expired"
    CHANNEL_UNAVAILABLE = "channel_unavailable"  # the outbox's disk refused the write: retried later
    FOUND_IN_OUTBOX = "found_in_outbox"  # reconciled: the message's file is committed in the outbox
    NOT_IN_OUTBOX = "not_in_outbox"  # reconciled: no file in the outbox, so it was never sent
    SUPPRESSED_UNSUBSCRIBED = "suppressed_unsubscribed"
    SUPPRESSED_BOUNCED = "suppressed_bounced"
    SUPPRESSED_SPAM = "suppressed_spam_report"
    SUPPRESSED_OTHER = "suppressed"
    SUPPRESSED_DO_NOT_CONTACT = "suppressed_do_not_contact"
    DEFERRED_QUIET_HOURS = "deferred_quiet_hours"
    DEFERRED_BUSINESS_DAY = "deferred_business_day"
    DEFERRED_HOLIDAY = "deferred_holiday"
    CAPPED_CONTACT_DAILY = "capped_contact_daily"
    CAPPED_CONTACT_WEEKLY = "capped_contact_weekly"
    CAPPED_CONTACT_MONTHLY = "capped_contact_monthly"
    CAPPED_ACCOUNT_DAILY = "capped_account_daily"
    CAPPED_ACCOUNT_WEEKLY = "capped_account_weekly"
    CAPPED_ACCOUNT_MONTHLY = "capped_account_monthly"
    CAPPED_PLAYBOOK_CONTACT_DAILY = "capped_playbook_contact_daily"
    CAPPED_PLAYBOOK_CONTACT_WEEKLY = "capped_playbook_contact_weekly"
    CAPPED_PLAYBOOK_CONTACT_MONTHLY = "capped_playbook_contact_monthly"
    CAPPED_PLAYBOOK_ACCOUNT_DAILY = "capped_playbook_account_daily"
    CAPPED_PLAYBOOK_ACCOUNT_WEEKLY = "capped_playbook_account_weekly"
    CAPPED_PLAYBOOK_ACCOUNT_MONTHLY = "capped_playbook_account_monthly"
    LOWER_PRIORITY = "lower_priority"
    CLEARED_BY_POLICY = "sent"  # the policy's "send" verdict; the audit row is the delivery's own
    OVER_CSM_CAPACITY = "over_csm_capacity"
    TASK_UPDATED = "task_updated"
    HOLDOUT = "holdout"
    UNREADABLE_ROW = "unreadable_row"  # a customer row the engine cannot read (not UTF-8, not JSON…)
    PLAYBOOK_FAILED = "playbook_failed"  # the playbook's evaluation or advancing failed; the tick went on
    ALREADY_SENT_IN_ENROLLMENT = "already_sent_in_enrollment"  # the recipient has this email from another step
    PAUSED_STALE_DATA = "paused_stale_data"  # a source the playbook reads is older than its freshness limit
    CIRCUIT_OPEN = "circuit_open"  # the tick would enroll more than the playbook's limits: held, nobody enrolled
    RESUMED_BY_OPERATOR = "resumed_by_operator"  # `touchflow resume PLAYBOOK --as WHO`
    CLOSED_BY_CSM = "closed_by_csm"  # a CSM task closed with its outcome (`touchflow tasks close`)
    TEST_SEND = "test_send"  # the console's test send: never counted in caps or experiments
    AWAITING_APPROVAL = "awaiting_approval"  # `approvals: required` and this content is not approved as it is


def audit_row(
    *,
    at: datetime,
    run_id: str,
    playbook_id: str,
    playbook_version: str,
    decision: Decision,
    reason: Reason,
    detail: str = "",
    step_id: str | None = None,
    enrollment_id: int | None = None,
    account_id: int | None = None,
    contact_id: int | None = None,
    channel: str | None = None,
    send_key: str | None = None,
    content_hash: str | None = None,
    variant: str | None = None,
) -> dict[str, Any]:
    """One audit row as a dict for a bulk insert."""
    return {
        "at": at,
        "run_id": run_id,
        "playbook_id": playbook_id,
        "playbook_version": playbook_version,
        "step_id": step_id,
        "enrollment_id": enrollment_id,
        "account_id": account_id,
        "contact_id": contact_id,
        "channel": channel,
        "decision": decision.value,
        "reason": reason.value,
        "detail": detail,
        "variant": variant,
        "send_key": send_key,
        "content_hash": content_hash,
    }


def ledger_fields(row: Any, at: datetime, run_id: str) -> dict[str, Any]:
    """The audit fields a ledger row determines (playbook, step, who, channel, send key, arm), as
    keyword arguments for `audit_row` beside the decision, reason and detail."""
    return {
        "at": at,
        "run_id": run_id,
        "playbook_id": row.playbook_id,
        "playbook_version": row.playbook_version,
        "step_id": row.step_id,
        "enrollment_id": row.enrollment_id,
        "account_id": row.account_id,
        "contact_id": row.contact_id,
        "channel": row.channel,
        "send_key": row.send_key,
        "variant": row.variant,
    }


_APPEND = insert(audit_log)  # built once: every window of every dispatch appends


def record(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Append audit rows (never updates or deletes)."""
    if rows:
        conn.execute(_APPEND, list(rows))
