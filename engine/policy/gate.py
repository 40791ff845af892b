"""The policy at dispatch: claimed email rows meet `decide` before anything is rendered.

One dispatcher at a time passes the gate: it takes the `policy` row of `locks` (an UPDATE, which
holds the row until commit on SQLite and PostgreSQL alike), reads the history of what was
already cleared for the batch's contacts and accounts, decides, writes the verdicts and commits.
Rows cleared here get `approved_at = now` and count toward every later decision, so four
dispatchers on one ledger cannot together exceed a cap. Sending happens after the gate, in
parallel.

Deferred rows go back to `planned` with `not_before` (not an attempt: nothing was tried);
suppressed and never-allowed rows are `skipped`. Every verdict other than "sent" is audited with
its reason code and the numbers behind it; a clearance is audited when the message is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, Row, bindparam, or_, select, update

from engine.audit import Decision, Reason, audit_row, ledger_fields, record
from engine.compile import CompiledPlaybook
from engine.plan.time import known_zone
from engine.policy.calendar import Calendar
from engine.policy.decide import Candidate, Cap, PastSend, Verdict, decide
from engine.spec.policy import Caps, PlaybookPolicy, Policy
from engine.spec.steps import WEEKDAYS
from engine.store.bulk import conflict_insert
from engine.store.models import ledger, locks
from engine.suppression import listed, reason_for

COUNTED = ("claimed", "sending", "sent", "unknown")
"""Statuses of cleared rows that count toward caps (failed and deferred rows do not)."""


@dataclass
class GateResult:
    """What the gate let through, and what it held back (per playbook)."""

    cleared: list[Row[Any]] = field(default_factory=list)
    deferred: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)


def lock(conn: Connection, name: str, now: datetime) -> None:
    """Hold the named lock row until this transaction ends (creating the row if it is missing)."""
    taken = conn.execute(update(locks).where(locks.c.name == name).values(held_at=now))
    if taken.rowcount == 0:
        conn.execute(
            conflict_insert(conn, locks).values(name=name, held_at=now).on_conflict_do_nothing(index_elements=["name"])
        )
        conn.execute(update(locks).where(locks.c.name == name).values(held_at=now))


def gate(
    conn: Connection,
    rows: Sequence[Row[Any]],
    contacts_by_id: dict[int, dict[str, Any]],
    accounts_by_id: dict[int, dict[str, Any]],
    playbooks: dict[str, CompiledPlaybook],
    policy: Policy,
    now: datetime,
    run_id: str,
) -> GateResult:
    """Decide every claimed email row; write deferrals, skips and clearances. The caller commits
    (which releases the lock)."""
    result = GateResult()
    emails = [r for r in rows if r.kind == "email"]
    if not emails:
        return result
    lock(conn, "policy", now)
    suppressed = _suppressed(conn, emails, contacts_by_id, accounts_by_id)
    candidates: list[Candidate] = []
    by_key: dict[str, Row[Any]] = {}
    writes: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    rules: dict[str, tuple[tuple[Cap, ...], Calendar]] = {}  # per playbook: the same for every row
    for row in emails:
        by_key[row.send_key] = row
        why_not = suppressed.get(row.send_key)
        if why_not is not None:
            reason, detail = why_not
            writes.append(_row_update(row, "skipped", None, None, detail))
            audits.append(_audit(row, now, run_id, Decision.SKIPPED, reason, detail))
            result.skipped[row.playbook_id] = result.skipped.get(row.playbook_id, 0) + 1
            continue
        playbook = playbooks.get(row.playbook_id)
        if playbook is None:
            result.cleared.append(row)  # dispatch fails it with its reason ("no longer loaded")
            continue
        if playbook.id not in rules:
            rules[playbook.id] = (_caps_for(policy, playbook), calendar_for(policy, playbook))
        candidates.append(_candidate(row, playbook, rules[playbook.id], policy, contacts_by_id, accounts_by_id))
    history = _history(conn, candidates, now)
    for verdict in decide(candidates, history, now):
        row = by_key[verdict.key]
        if verdict.action == "send":
            writes.append(_row_update(row, "claimed", now, row.not_before, row.error))
            result.cleared.append(row)
        elif verdict.action == "defer":
            # Never due again at this very `now`: a dispatcher would spin on it.
            until = max(verdict.until or now, now + timedelta(minutes=1))
            writes.append(_row_update(row, "planned", None, until, verdict.detail))
            audits.append(_audit(row, now, run_id, Decision.DEFERRED, Reason(verdict.reason), _detail(verdict)))
            result.deferred[row.playbook_id] = result.deferred.get(row.playbook_id, 0) + 1
        else:
            writes.append(_row_update(row, "skipped", None, None, verdict.detail))
            audits.append(_audit(row, now, run_id, Decision.SKIPPED, Reason(verdict.reason), verdict.detail))
            result.skipped[row.playbook_id] = result.skipped.get(row.playbook_id, 0) + 1
    if writes:
        conn.execute(
            update(ledger)
            .where(
                ledger.c.id == bindparam("row_id"),
                ledger.c.status == "claimed",
                ledger.c.claim_token == bindparam("held_by"),
            )
            .values(
                status=bindparam("new_status"),
                approved_at=bindparam("new_approved_at"),
                not_before=bindparam("new_not_before"),
                error=bindparam("new_error"),
                updated_at=now,
            ),
            writes,
        )
    record(conn, audits)
    result.cleared.sort(key=lambda r: r.id)
    return result


def _row_update(
    row: Row[Any], status: str, approved_at: datetime | None, not_before: datetime | None, error: str | None
) -> dict[str, Any]:
    return {
        "row_id": row.id,
        "held_by": row.claim_token,
        "new_status": status,
        "new_approved_at": approved_at,
        "new_not_before": not_before,
        "new_error": error,
    }


def _detail(verdict: Verdict) -> str:
    if verdict.until is None or "next" in verdict.detail:
        return verdict.detail
    return f"{verdict.detail}; next try after {verdict.until.isoformat(timespec='minutes')} UTC"


def _audit(
    row: Row[Any], now: datetime, run_id: str, decision: Decision, reason: Reason, detail: str
) -> dict[str, Any]:
    return audit_row(**ledger_fields(row, now, run_id), decision=decision, reason=reason, detail=detail)


def project_caps(caps: Caps, playbook_id: str | None = None) -> tuple[Cap, ...]:
    """The written caps as `decide` takes them: contact caps first, shorter windows first."""
    found: list[Cap] = []
    for scope in ("contact", "account"):
        limits = getattr(caps, scope)
        for period in ("day", "week", "month"):
            limit = getattr(limits, period)
            if limit is not None:
                found.append(Cap(scope, period, limit, playbook_id))
    return tuple(found)


def calendar_for(policy: Policy, playbook: CompiledPlaybook | None = None) -> Calendar:
    """The project's calendar, with the playbook's overrides when one is given."""
    own = playbook.spec.policy if playbook is not None else PlaybookPolicy()
    quiet = policy.quiet_hours if own.quiet_hours is None else (own.quiet_hours or None)
    days = own.business_days if own.business_days is not None else policy.business_days
    return Calendar(
        quiet_start=time.fromisoformat(quiet.start) if quiet else None,
        quiet_end=time.fromisoformat(quiet.end) if quiet else None,
        business_days=frozenset(WEEKDAYS.index(d) for d in days),
        holidays=frozenset(policy.holidays),
    )


def _caps_for(policy: Policy, playbook: CompiledPlaybook) -> tuple[Cap, ...]:
    """The caps a playbook's emails count against: the project's (unless it opts out), then its own."""
    own = playbook.spec.policy
    caps = project_caps(policy.caps) if own.project_caps else ()
    if own.caps is not None:
        caps += project_caps(own.caps, playbook.id)
    return caps


def _candidate(
    row: Row[Any],
    playbook: CompiledPlaybook,
    rules: tuple[tuple[Cap, ...], Calendar],
    policy: Policy,
    contacts_by_id: dict[int, dict[str, Any]],
    accounts_by_id: dict[int, dict[str, Any]],
) -> Candidate:
    caps, calendar = rules
    contact = contacts_by_id.get(row.contact_id) if row.contact_id is not None else None
    account = accounts_by_id.get(row.account_id)
    # The first zone that exists: contact, account, project, UTC (bad data never stops dispatch).
    named = [(contact or {}).get("timezone"), (account or {}).get("timezone"), policy.timezone]
    zone = next((z for z in named if z and known_zone(z)), "UTC")
    return Candidate(
        key=row.send_key,
        playbook_id=row.playbook_id,
        priority=playbook.spec.priority,
        account_id=row.account_id,
        contact_id=row.contact_id,
        timezone=zone,
        caps=caps,
        calendar=calendar,
        due=row.not_before or row.created_at,
    )


def _history(conn: Connection, candidates: Sequence[Candidate], now: datetime) -> list[PastSend]:
    """Cleared emails that may count against the candidates' caps (the longest window back)."""
    windows = [cap.window for c in candidates for cap in c.caps]
    if not windows:
        return []
    since = now - max(windows)
    contact_ids = sorted({c.contact_id for c in candidates if c.contact_id is not None})
    account_ids = sorted({c.account_id for c in candidates})
    counted = or_(*(ledger.c.status == s for s in COUNTED))
    who = or_(ledger.c.account_id.in_(account_ids), ledger.c.contact_id.in_(contact_ids or [-1]))
    query = select(ledger.c.approved_at, ledger.c.playbook_id, ledger.c.account_id, ledger.c.contact_id).where(
        ledger.c.kind == "email", ledger.c.approved_at > since, counted, who
    )
    return [PastSend(r.approved_at, r.playbook_id, r.account_id, r.contact_id) for r in conn.execute(query)]


def _suppressed(
    conn: Connection,
    rows: Sequence[Row[Any]],
    contacts_by_id: dict[int, dict[str, Any]],
    accounts_by_id: dict[int, dict[str, Any]],
) -> dict[str, tuple[Reason, str]]:
    """send key → why it must not go out: the address was suppressed since planning (a message
    deferred for days meets the list as it is now), or the contact or account is do-not-contact."""
    addresses = {
        r.send_key: (contacts_by_id.get(r.contact_id) or {}).get("email", "").strip().lower()
        for r in rows
        if r.contact_id is not None
    }
    on_list = listed(conn, addresses.values())
    found: dict[str, tuple[Reason, str]] = {}
    for row in rows:
        contact = contacts_by_id.get(row.contact_id) or {} if row.contact_id is not None else {}
        account = accounts_by_id.get(row.account_id) or {}
        address = addresses.get(row.send_key, "")
        if address in on_list:
            why = on_list[address]
            found[row.send_key] = (reason_for(why), f"{address} is on the suppression list ({why})")
        elif (contact.get("traits") or {}).get("do_not_contact"):
            found[row.send_key] = (Reason.SUPPRESSED_DO_NOT_CONTACT, f"contact {row.contact_id} is do-not-contact")
        elif (account.get("traits") or {}).get("do_not_contact"):
            found[row.send_key] = (Reason.SUPPRESSED_DO_NOT_CONTACT, f"account {row.account_id} is do-not-contact")
    return found
