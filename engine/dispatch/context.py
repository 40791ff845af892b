"""The customer rows a batch needs, and what templates and emails are built from them.

`load_context` reads the accounts, contacts and CSMs of a batch of ledger rows once (a row that
cannot be read is noted, not raised: `split_unreadable` skips only the deliveries that need it);
`template_context` is the set of variables every template sees (preview uses it too); `email_job`
and `outgoing_email` turn a row into what the renderer and the channel take.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select

from engine.addresses import email_problem
from engine.audit import Decision, Reason, audit_row, ledger_fields
from engine.compile import CompiledPlaybook
from engine.dispatch.channels import OutgoingEmail
from engine.dispatch.outcomes import Outcome
from engine.dispatch.settings import TEAM_SENDER
from engine.render import RenderedEmail, RenderError, locale_chain
from engine.spec.policy import Policy
from engine.store.models import accounts, contacts, csms
from engine.store.readable import read_rows
from engine.unsubscribe import UnsubscribeLinks, load_links


@dataclass(frozen=True)
class BatchContext:
    """The accounts, contacts and CSMs of a batch by id, with the team sender, the unsubscribe
    links and the sending policy the batch is delivered under."""

    accounts: dict[int, dict[str, Any]]
    contacts: dict[int, dict[str, Any]]
    csms: dict[int, dict[str, Any]]
    team: tuple[str, str] = TEAM_SENDER
    links: UnsubscribeLinks | None = None
    policy: Policy = field(default_factory=Policy)
    problems: dict[tuple[str, int], str] = field(default_factory=dict)
    """("account" | "contact" | "csm", id) → what is wrong with a row that cannot be read."""


def load_context(
    conn: Connection,
    rows: Sequence[Row[Any]],
    *,
    team: tuple[str, str],
    links: UnsubscribeLinks | None,
    policy: Policy,
) -> BatchContext:
    """Read the accounts, contacts and CSMs `rows` need, one statement per table; unreadable
    customer rows go to `problems` with the reason."""
    account_ids = sorted({r.account_id for r in rows})
    contact_ids = sorted({r.contact_id for r in rows if r.contact_id is not None})
    problems: dict[tuple[str, int], str] = {}

    def read(table: Any, ids: list[int]) -> dict[int, dict[str, Any]]:
        found = read_rows(conn, select(table).where(table.c.id.in_(ids)), table)
        problems.update({(table.name.removesuffix("s"), i): p for i, p in found.problems.items()})
        return {r.id: dict(r._mapping) for r in found.rows}

    accs = read(accounts, account_ids)
    cons = read(contacts, contact_ids)
    people = read(csms, sorted({a["csm_id"] for a in accs.values() if a["csm_id"] is not None}))
    return BatchContext(accs, cons, people, team=team, links=links, policy=policy, problems=problems)


def split_unreadable(
    rows: Sequence[Row[Any]], ctx: BatchContext, now: datetime, run_id: str
) -> tuple[list[Row[Any]], list[Outcome]]:
    """The rows whose account, contact and CSM can all be read, and a skip for each of the others:
    a bad customer row costs the deliveries that need it, never the batch."""
    kept: list[Row[Any]] = []
    skipped: list[Outcome] = []
    for row in rows:
        csm_id = (ctx.accounts.get(row.account_id) or {}).get("csm_id")
        needed = [("account", row.account_id), ("contact", row.contact_id), ("csm", csm_id)]
        why = "; ".join(p for key in needed if (p := ctx.problems.get(key)))
        if not why:
            kept.append(row)
            continue
        fields = ledger_fields(row, now, run_id)
        audit = audit_row(**fields, decision=Decision.SKIPPED, reason=Reason.UNREADABLE_ROW, detail=why)
        skipped.append(Outcome(row, "skipped", audit, error=why))
    return kept, skipped


def row_context(row: Row[Any], playbook: CompiledPlaybook, ctx: BatchContext) -> dict[str, Any]:
    """The template variables for a ledger row (RenderError when its account is gone)."""
    account = ctx.accounts.get(row.account_id)
    if account is None:
        raise RenderError(f"account {row.account_id} no longer exists")
    contact = ctx.contacts.get(row.contact_id) if row.contact_id is not None else None
    csm = ctx.csms.get(account["csm_id"]) if account["csm_id"] is not None else None
    return template_context(
        account,
        contact,
        csm,
        sender_kind=row.payload.get("from", "team"),
        playbook=playbook,
        step_id=row.step_id,
        send_key=row.send_key,
        team=ctx.team,
        links=ctx.links,
    )


def template_context(
    account: dict[str, Any],
    contact: dict[str, Any] | None,
    csm: dict[str, Any] | None,
    *,
    sender_kind: str,
    playbook: CompiledPlaybook,
    step_id: str,
    send_key: str,
    team: tuple[str, str] = TEAM_SENDER,
    links: UnsubscribeLinks | None = None,
) -> dict[str, Any]:
    """The variables every template sees (see `engine.render.CONTEXT_NAMES`)."""
    sender = (
        {"name": csm["name"], "email": csm["email"]}
        if sender_kind == "csm" and csm
        else dict(zip(("name", "email"), team, strict=True))
    )
    links = links or load_links(None)
    return {
        "account": account,
        "contact": contact or {},
        "csm": csm or {"name": "Customer Success team", "email": team[1]},
        "sender": sender,
        "playbook": {"id": playbook.id, "name": playbook.spec.name},
        "step": {"id": step_id},
        "unsubscribe_url": links.url(send_key),
    }


RenderJob = tuple[str, list[str], dict[str, Any], str | dict[str, str] | None]
"""What rendering one email needs: template name, locale chain, context, subject override."""


def email_job(row: Row[Any], playbook: CompiledPlaybook, ctx: BatchContext) -> RenderJob:
    """What rendering the row's email needs: template, locale chain, context, subject override."""
    context = row_context(row, playbook, ctx)
    contact = context["contact"]
    if not contact:
        raise RenderError(f"contact {row.contact_id} no longer exists")
    chain = locale_chain(contact.get("locale"), context["account"].get("locale"))
    return row.payload["template"], chain, context, row.payload.get("subject")


def outgoing_email(row: Row[Any], context: dict[str, Any], rendered: RenderedEmail, now: datetime) -> OutgoingEmail:
    """The rendered email, addressed (both addresses checked: never a bad header)."""
    contact = context["contact"]
    for who, address in (("recipient", contact["email"]), ("sender", context["sender"]["email"])):
        problem = email_problem(address or "")
        if problem:
            raise RenderError(f"{who}: {problem}")
    return OutgoingEmail(
        send_key=row.send_key,
        sender_name=context["sender"]["name"],
        sender_email=context["sender"]["email"],
        to_name=contact["name"],
        to_email=contact["email"],
        rendered=rendered,
        playbook_id=row.playbook_id,
        step_id=row.step_id,
        at=now,
        variant=row.variant,
        unsubscribe_url=context["unsubscribe_url"],
    )
