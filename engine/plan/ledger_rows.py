"""Ledger rows as the advance stage plans them: the deterministic send key of a delivery and the
one builder of a row for insertion (an email per recipient, a held-out recipient, a task, a
webhook call all have this shape).

The send key is what makes planning exactly-once: the ledger's unique index on it turns a second
plan of the same delivery (overlapping ticks, a retried task) into nothing.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from engine.compile import CompiledPlaybook


def send_key(playbook_id: str, step_id: str, enrollment: Row[Any], recipient: str) -> str:
    """Deterministic key of one delivery: playbook, step, subject, trigger occurrence, recipient."""
    raw = "|".join(
        [playbook_id, step_id, enrollment.subject_type, str(enrollment.subject_id), enrollment.trigger_key, recipient]
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def ledger_row(
    *,
    key: str,
    kind: str,
    channel: str,
    status: str,
    playbook: CompiledPlaybook,
    step_id: str,
    enrollment: Row[Any],
    contact_id: int | None,
    payload: dict[str, Any],
    now: datetime,
    variant: str | None = None,
    not_before: datetime | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """One ledger row for a bulk insert: the delivery `key` of `step_id` in `enrollment`, planned
    on `playbook`'s version at `now`. The payload carries everything dispatch needs (it reads no
    playbook file)."""
    return {
        "send_key": key,
        "kind": kind,
        "channel": channel,
        "status": status,
        "playbook_id": playbook.id,
        "playbook_version": playbook.version,
        "step_id": step_id,
        "enrollment_id": enrollment.id,
        "account_id": enrollment.account_id,
        "contact_id": contact_id,
        "payload": payload,
        "variant": variant,
        "not_before": not_before,
        "error": error,
        "created_at": now,
        "updated_at": now,
    }
