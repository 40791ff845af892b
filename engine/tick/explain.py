"""A dry run that says why: `touchflow run --dry-run --explain`.

A dry run's stages write their audit rows like a live tick's, inside the one transaction the dry
store rolls back. `explain_dry_run` reads those rows — the ones of its own run id — on the same
connection before the rollback, so the reasons are seen and still nothing is written. It runs the
same `TICK_STAGES` in this process, as `dry_run` does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from engine.dispatch import NullChannel
from engine.dispatch.webhook import no_post
from engine.project import Project
from engine.store.models import accounts, audit_log, contacts
from engine.tick.stages import Tick, run_tick
from engine.tick.stores import dry_store
from engine.tick.summary import PlaybookSummary


@dataclass(frozen=True)
class Explained:
    """One decision of the dry run: who, where in which playbook, what and why."""

    playbook: str
    step: str
    account_id: int | None
    account: str
    contact_id: int | None
    email: str
    decision: str
    reason: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)


def explain_dry_run(
    engine: Engine, project: Project, playbook_ids: list[str], now: datetime, run_id: str
) -> tuple[list[PlaybookSummary], list[Explained]]:
    """The dry run's summaries, and every decision it made with its reason, per recipient.

    Nothing is written: the audit rows are read before the dry store's rollback."""
    with dry_store(engine) as store:
        tick = Tick(store, project, now, run_id, playbook_ids, NullChannel(), post=no_post)
        summaries = list(run_tick(tick).values())
        return summaries, decisions(store.conn, run_id)


def decisions(conn: Connection, run_id: str) -> list[Explained]:
    """The audit rows of `run_id` visible on `conn`, with the account's name and the contact's
    address, in the order written (by playbook, then as the stages went)."""
    a = audit_log.c
    stmt = (
        select(
            a.playbook_id,
            a.step_id,
            a.account_id,
            accounts.c.name,
            a.contact_id,
            contacts.c.email,
            a.decision,
            a.reason,
            a.detail,
        )
        .select_from(
            audit_log.outerjoin(contacts, contacts.c.id == a.contact_id).outerjoin(
                accounts, accounts.c.id == a.account_id
            )
        )
        .where(a.run_id == run_id)
        .order_by(a.playbook_id, a.id)
    )
    return [
        Explained(
            playbook=row.playbook_id,
            step=row.step_id or "",
            account_id=row.account_id,
            account=row.name or "",
            contact_id=row.contact_id,
            email=row.email or "",
            decision=row.decision,
            reason=row.reason,
            detail=row.detail or "",
        )
        for row in conn.execute(stmt)
    ]
