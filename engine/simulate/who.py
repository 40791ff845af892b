"""`--who PLAYBOOK`: every delivery one playbook would make in the simulation — who, what (step,
template and experiment arm, channel), when (the tick that planned it) and how it ended."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from engine.store.models import contacts, ledger


@dataclass(frozen=True)
class Recipient:
    """One delivery of the simulated playbook: an email to a contact, or a task for an account."""

    contact_id: int | None
    email: str
    account_id: int
    step: str
    kind: str
    template: str
    variant: str
    channel: str
    status: str
    planned_at: datetime
    updated_at: datetime


def recipients(conn: Connection, playbook_id: str) -> list[Recipient]:
    """The ledger rows of `playbook_id` in the scratch database, in the order they were planned."""
    lg = ledger.c
    stmt = (
        select(
            lg.contact_id,
            contacts.c.email,
            lg.account_id,
            lg.step_id,
            lg.kind,
            lg.payload,
            lg.variant,
            lg.channel,
            lg.status,
            lg.created_at,
            lg.updated_at,
        )
        .select_from(ledger.outerjoin(contacts, contacts.c.id == lg.contact_id))
        .where(lg.playbook_id == playbook_id)
        .order_by(lg.created_at, lg.id)
    )
    return [
        Recipient(
            contact_id=row.contact_id,
            email=row.email or "",
            account_id=row.account_id,
            step=row.step_id,
            kind=row.kind,
            template=_template(row.payload),
            variant=row.variant or "",
            channel=row.channel,
            status=row.status,
            planned_at=row.created_at,
            updated_at=row.updated_at,
        )
        for row in conn.execute(stmt)
    ]


def _template(payload: Any) -> str:
    # The arm's template when an experiment chose one (the payload says which); none for tasks.
    if isinstance(payload, dict):
        return str(payload.get("template") or "")
    return ""
