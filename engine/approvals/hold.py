"""Approvals at dispatch: with `approvals: required`, a claimed email whose content (as its ledger
row would send it, in the recipient's locale) has no approval of that exact hash goes back to
`planned` until a later tick — not an attempt, never failed — and is audited `awaiting_approval`
once per row and content hash, so a message waiting for days does not fill the audit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select, update

from engine.approvals.content import NO_ARM, ContentHasher
from engine.approvals.records import Key, approved_hashes
from engine.audit import Decision, Reason, audit_row, ledger_fields, record
from engine.render import EmailRenderer, RenderError, locale_chain
from engine.store.models import audit_log, ledger

RECHECK_AFTER = timedelta(minutes=1)
"""How long an unapproved message waits before it is looked at again: past this tick's dispatch
batches (which claim rows due at the tick's `now`), so it is checked again on the next tick."""


@dataclass
class Held:
    """What the approval check let through, and what it sent back to wait (per playbook)."""

    cleared: list[Row[Any]] = field(default_factory=list)
    deferred: dict[str, int] = field(default_factory=dict)


def hold_unapproved(
    conn: Connection,
    rows: Sequence[Row[Any]],
    *,
    renderer: EmailRenderer,
    contacts_by_id: Mapping[int, Mapping[str, Any]],
    accounts_by_id: Mapping[int, Mapping[str, Any]],
    now: datetime,
    run_id: str,
) -> Held:
    """Claimed rows whose email content is approved (and every row that is not an email) are
    `cleared`; the others go back to `planned` with `not_before = now + RECHECK_AFTER`. A row whose
    locale cannot be told (its contact or template gone) is cleared: rendering fails it with its
    reason. The caller commits."""
    held = Held()
    hasher = ContentHasher(renderer)
    wanted: dict[int, tuple[Key, str]] = {}
    for row in rows:
        if row.kind != "email" or not isinstance(row.payload, dict) or "template" not in row.payload:
            held.cleared.append(row)
            continue
        contact = contacts_by_id.get(row.contact_id) if row.contact_id is not None else None
        account = accounts_by_id.get(row.account_id) or {}
        if contact is None:
            held.cleared.append(row)
            continue
        try:
            locale = renderer.pick(
                str(row.payload["template"]), locale_chain(contact.get("locale"), account.get("locale"))
            )
        except RenderError:
            held.cleared.append(row)
            continue
        key = (row.playbook_id, row.step_id, row.variant or NO_ARM, locale)
        wanted[row.id] = (key, hasher.payload_hash(row.payload, locale))
    approved = approved_hashes(conn, list(wanted.values()))
    waiting = []
    for row in rows:
        if row.id not in wanted:
            continue
        if wanted[row.id] in approved:
            held.cleared.append(row)
        else:
            waiting.append(row)
    if waiting:
        _defer(conn, waiting, wanted, now, run_id, held)
    held.cleared.sort(key=lambda r: r.id)
    return held


def _defer(
    conn: Connection,
    rows: Sequence[Row[Any]],
    wanted: Mapping[int, tuple[Key, str]],
    now: datetime,
    run_id: str,
    held: Held,
) -> None:
    later = now + RECHECK_AFTER
    stmt = (
        update(ledger)
        .where(ledger.c.id == bindparam("row_id"), ledger.c.status == "claimed")
        .where(ledger.c.claim_token == bindparam("held_by"))
        .values(status="planned", not_before=later, claim_token=None, approved_at=None, updated_at=now)
    )
    conn.execute(stmt, [{"row_id": r.id, "held_by": r.claim_token} for r in rows])
    keys = [r.send_key for r in rows]
    seen_query = select(audit_log.c.send_key, audit_log.c.content_hash).where(
        audit_log.c.send_key.in_(keys), audit_log.c.reason == Reason.AWAITING_APPROVAL.value
    )
    seen = {(r.send_key, r.content_hash) for r in conn.execute(seen_query)}
    audits = []
    for row in rows:
        (_, step, arm, locale), content_hash = wanted[row.id]
        held.deferred[row.playbook_id] = held.deferred.get(row.playbook_id, 0) + 1
        if (row.send_key, content_hash) in seen:
            continue  # already said for this content; said again only when the content changes
        command = f"touchflow approvals approve {row.playbook_id} {step}" + (f" {arm}" if arm else "")
        detail = (
            f"'{row.payload['template']}' ({locale or 'default'} locale{f', arm {arm}' if arm else ''}) "
            f"is not approved as it is now (content {content_hash[:12]}); waits for `{command}`"
        )
        fields = ledger_fields(row, now, run_id)
        audits.append(
            audit_row(
                **fields,
                decision=Decision.DEFERRED,
                reason=Reason.AWAITING_APPROVAL,
                detail=detail,
                content_hash=content_hash,
            )
        )
    record(conn, audits)
