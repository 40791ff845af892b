"""Claim planned ledger rows atomically, then deliver them and record sent / failed.

Claiming flips `planned → claimed` in its own committed transaction (with SKIP LOCKED on
PostgreSQL), so two dispatchers never take the same row; a crash after the claim leaves
`sending` rows to reconcile, never a blind resend.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Row, bindparam, case, or_, select, update

from engine.addresses import email_problem
from engine.audit import Decision, Reason, audit_row, ledger_fields, record
from engine.compile import CompiledPlaybook
from engine.delivery_config import Sender
from engine.dispatch.channels import EmailChannel, OutgoingEmail, SendError
from engine.dispatch.webhook import WebhookError, post_json
from engine.journey_time import known_zone
from engine.policy.gate import calendar_for, gate, lock
from engine.policy.ratelimit import RateLimiter, wait_until
from engine.policy.tasks import add_business_days, place_task
from engine.render import EmailRenderer, RenderedEmail, RenderError, locale_chain, render_inline
from engine.spec.policy import Policy
from engine.spec.steps import TaskAction, WebhookAction
from engine.store.models import accounts, contacts, csms, ledger
from engine.store.readable import read_rows
from engine.unsubscribe import UnsubscribeLinks, load_links, record_recipients

TEAM_SENDER = (Sender().name, Sender().email)
"""The team sender when no `touchflow.yaml` says otherwise (its defaults)."""


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
        return cls(
            Counter(data["emails"]),
            Counter(data["tasks"]),
            Counter(data["failed"]),
            Counter(data.get("webhooks", {})),
            Counter(data.get("deferred", {})),
            Counter(data.get("skipped", {})),
        )


def claim(
    conn: Connection,
    limit: int,
    now: datetime,
    playbook_ids: Sequence[str] | None = None,
    token: str | None = None,
    priorities: dict[str, int] | None = None,
) -> list[int]:
    """Mark up to `limit` planned rows as claimed and return their ids. The caller commits.

    The rows carry `token` (default: a fresh one): `deliver(..., token=...)` handles only rows
    still held under it, so a claim that outlived `reconcile_after` — its rows requeued and
    claimed again elsewhere — sends nothing. With `priorities` (playbook → priority), the
    higher-priority playbooks' rows are claimed first, so caps go to them across batches too.

    `claimed` means "this dispatcher will handle it": nothing has gone out yet. A row becomes
    `sending` only just before its request, a few at a time, so a crash strands at most the
    messages in flight; claimed rows of a dead dispatcher go back to `planned` (reconcile).

    Only rows of `playbook_ids` (the active or selected playbooks) are taken: a paused playbook's
    planned messages wait, and rows of a playbook no longer loaded stay planned, not failed.
    """
    due = or_(ledger.c.not_before.is_(None), ledger.c.not_before <= now)
    order: list[Any] = [ledger.c.id]
    if priorities:
        order.insert(0, case(priorities, value=ledger.c.playbook_id, else_=0).desc())
    pick = select(ledger.c.id).where(ledger.c.status == "planned", due).order_by(*order).limit(limit)
    if playbook_ids is not None:
        pick = pick.where(ledger.c.playbook_id.in_(list(playbook_ids)))
    if conn.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    ids = [r.id for r in conn.execute(pick)]
    if not ids:
        return []
    stmt = (
        update(ledger)
        .where(ledger.c.id.in_(ids), ledger.c.status == "planned")
        # A row back from a 429 or a dead dispatcher was cleared before but never sent: it is
        # judged afresh, and until then counts against nobody's cap (engine/policy/gate.py).
        .values(status="claimed", updated_at=now, approved_at=None, claim_token=token or uuid.uuid4().hex)
        .returning(ledger.c.id)
    )
    return sorted(r.id for r in conn.execute(stmt))


@dataclass(frozen=True)
class _Context:
    accounts: dict[int, dict[str, Any]]
    contacts: dict[int, dict[str, Any]]
    csms: dict[int, dict[str, Any]]
    team: tuple[str, str] = TEAM_SENDER
    links: UnsubscribeLinks | None = None
    rules: Policy = field(default_factory=Policy)
    problems: dict[tuple[str, int], str] = field(default_factory=dict)
    """("account" | "contact" | "csm", id) → what is wrong with a row that cannot be read."""


@dataclass
class _Outcome:
    """What happened to one ledger row, ready to be written."""

    row: Row[Any]
    status: str  # sent | failed | unknown | planned (to retry later)
    audit: dict[str, Any]
    provider_id: str | None = None
    error: str | None = None
    task: dict[str, Any] | None = None
    team: str | None = None  # the account owner's team: where the task may go instead
    not_before: datetime | None = None


@dataclass(frozen=True)
class SendPolicy:
    """How hard one dispatch tries: attempts per message for retryable answers, and concurrency."""

    attempts: int = 1
    concurrency: int = 1
    sleep: Callable[[float], None] = time.sleep
    team_sender: tuple[str, str] = TEAM_SENDER
    """(name, address) of `from: team`, and of accounts without a CSM (`touchflow.yaml`)."""
    links: UnsubscribeLinks | None = None
    """Signs unsubscribe links (the project's secret); None: a secret for this process only."""
    rules: Policy | None = None
    """Caps, quiet hours, business days (`touchflow.yaml` → `policy`), applied before rendering;
    None: no caps and no calendar (suppression still holds)."""
    limiter: RateLimiter | None = None
    """The global send rate, shared by every dispatcher; None: as fast as the channel allows."""


MAX_DISPATCHES = 5
"""Dispatches (each with its own retries) before a message that keeps getting 429/5xx fails."""

UNAVAILABLE_RETRY_CAP = timedelta(hours=1)
"""The longest wait between dispatches of a message its channel could not take (a full or
read-only outbox): retried at this pace for as long as the outage lasts, never failed for it."""


def deliver(
    conn: Connection,
    ids: Sequence[int],
    playbooks: dict[str, CompiledPlaybook],
    channel: EmailChannel,
    renderer: EmailRenderer,
    now: datetime,
    run_id: str,
    post: Callable[..., int] = post_json,
    policy: SendPolicy = SendPolicy(),
    commit: Callable[[], None] | None = None,
    token: str | None = None,
) -> DispatchResult:
    """Render and deliver claimed rows; record each outcome and its audit row. With `token` (the
    claim's), rows no longer held under it are left alone.

    Rows go through in windows of `4 × concurrency`: a window is rendered, marked `sending`
    (committed) and handed to the sending threads; while it is in flight the next window renders
    and the outcomes of the one before are written, a window per statement. So a crash strands at
    most two windows (left `sending`, reconciled later, never resent blindly), and the threads
    never wait on rendering or on the database.

    With `commit`, outcomes are committed as soon as their window is written; without it the
    caller owns the transaction (dry runs roll back). One row's failure — a template, an address,
    a provider error — fails that row with its reason; the rest of the batch goes on.
    """
    result = DispatchResult()
    rows = conn.execute(select(ledger).where(ledger.c.id.in_(ids)).order_by(ledger.c.id)).all()
    if token is not None:
        rows = [r for r in rows if r.claim_token == token and r.status == "claimed"]
    rules = policy.rules or Policy()
    ctx = replace(_load_context(conn, rows, policy.team_sender, policy.links), rules=rules)
    rows, unreadable = _needing_unreadable_rows(rows, ctx, now, run_id)
    if unreadable:  # skipped before the gate, which reads the same rows
        _write_all(conn, unreadable, now, result, rules)
    # The policy first, in its own short transaction (it holds the policy lock): only what it
    # clears is rendered and sent; deferrals and skips are written and audited by the gate.
    gated = gate(conn, rows, ctx.contacts, ctx.accounts, playbooks, rules, now, run_id)
    if commit is not None:
        commit()
    result.deferred.update(gated.deferred)
    result.skipped.update(gated.skipped)
    rows = sorted([r for r in rows if r.kind != "email"] + gated.cleared, key=lambda r: r.id)

    def settle(outcomes: Sequence[_Outcome]) -> None:
        if outcomes:
            _write_all(conn, outcomes, now, result, rules)
            if commit is not None:
                commit()

    window = max(1, policy.concurrency) * 4
    with _Sender(channel, policy, now) as sender:
        for start in range(0, len(rows), window):
            part = rows[start : start + window]
            done, outgoing = _prepare(conn, part, playbooks, ctx, renderer, now, run_id, post, commit)
            settle(done)
            if outgoing:
                # Send times under the global rate (each thread waits for its message's moment).
                slots = policy.limiter.reserve(len(outgoing)) if policy.limiter is not None else None
                moved = _mark_sending(conn, [row for row, _, _ in outgoing], now)
                # Committed with `sending`, before anything leaves: each message's unsubscribe link
                # unsubscribes this address, whatever the contact's address becomes.
                record_recipients(conn, [(row.id, email.to_email) for row, _, email in outgoing if row.id in moved])
                if commit is not None:
                    commit()
                # Only what is still ours goes out: never a row another dispatcher now holds.
                mine = [item for item in outgoing if item[0].id in moved]
                sender.submit(mine, slots[: len(mine)] if slots is not None else None)
            while sender.in_flight > 1:  # keep one window sending while the next one renders
                settle(sender.collect_oldest())
        while sender.in_flight:
            settle(sender.collect_oldest())
    return result


def _prepare(
    conn: Connection,
    rows: Sequence[Row[Any]],
    playbooks: dict[str, CompiledPlaybook],
    ctx: _Context,
    renderer: EmailRenderer,
    now: datetime,
    run_id: str,
    post: Callable[..., int],
    commit: Callable[[], None] | None,
) -> tuple[list[_Outcome], list[tuple[Row[Any], dict[str, Any], OutgoingEmail]]]:
    """Settle what needs no provider (tasks, webhooks, render failures); build the emails."""
    done: list[_Outcome] = []
    outgoing: list[tuple[Row[Any], dict[str, Any], OutgoingEmail]] = []
    pending: list[tuple[Row[Any], dict[str, Any], RenderJob]] = []
    for row in rows:
        base = ledger_fields(row, now, run_id)
        playbook = playbooks.get(row.playbook_id)
        try:
            if playbook is None:
                raise RenderError(f"playbook '{row.playbook_id}' is no longer loaded")
            if row.kind == "task":
                done.append(_task_outcome(row, playbook, ctx, now, base, ctx.rules))
            elif row.kind == "webhook":
                moved = _mark_sending(conn, [row], now)  # the POST may land even if we die now
                if commit is not None:
                    commit()
                if row.id not in moved:
                    continue  # requeued meanwhile: another dispatcher holds it
                status, where = _call_webhook(row, playbook, ctx, post)
                audit = audit_row(
                    **base,
                    decision=Decision.WEBHOOK_CALLED,
                    reason=Reason.WEBHOOK_DELIVERED,
                    detail=f"POST to {where}: HTTP {status}",
                )
                done.append(_Outcome(row, "sent", audit, provider_id=f"http:{status}"))
            else:
                pending.append((row, base, _email_job(row, playbook, ctx)))
        except RenderError as exc:
            done.append(_failed(row, base, Reason.RENDER_FAILED, str(exc)))
        except WebhookError as exc:
            done.append(_failed(row, base, Reason.WEBHOOK_FAILED, str(exc)))
        except Exception as exc:
            done.append(_failed(row, base, Reason.CHANNEL_ERROR, f"{type(exc).__name__}: {exc}"))
    for row, base, (name, chain, context, subject) in pending:
        try:
            rendered = renderer.render(name, chain, context, subject=subject)
            outgoing.append((row, base, _email(row, context, rendered, now)))
        except RenderError as exc:
            done.append(_failed(row, base, Reason.RENDER_FAILED, str(exc)))
    return done, outgoing


def _mark_sending(conn: Connection, rows: Sequence[Row[Any]], now: datetime) -> set[int]:
    """claimed → sending for the rows this dispatcher still holds (its claim token); returns them.
    A row requeued meanwhile (a claim that outlived `reconcile_after`) is someone else's now."""
    moved: set[int] = set()
    for token in {r.claim_token for r in rows}:
        ids = [r.id for r in rows if r.claim_token == token]
        stmt = (
            update(ledger)
            .where(ledger.c.id.in_(ids), ledger.c.status == "claimed", _held(token))
            .values(status="sending", updated_at=now)
            .returning(ledger.c.id)
        )
        moved.update(conn.execute(stmt).scalars())
    return moved


def _held(token: str | None) -> Any:
    return ledger.c.claim_token.is_(None) if token is None else ledger.c.claim_token == token


class _Sender:
    """Windows of emails in flight on `policy.concurrency` threads (or inline, for one)."""

    def __init__(self, channel: EmailChannel, policy: SendPolicy, now: datetime) -> None:
        self.channel, self.policy, self.now = channel, policy, now
        self._windows: deque[list[Future[_Outcome]] | list[_Outcome]] = deque()
        self._pool: ThreadPoolExecutor | None = None
        if policy.concurrency > 1:
            self._pool = ThreadPoolExecutor(max_workers=policy.concurrency, thread_name_prefix="touchflow-send")

    def __enter__(self) -> _Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    @property
    def in_flight(self) -> int:
        """Windows handed over and not yet collected."""
        return len(self._windows)

    def submit(
        self, outgoing: list[tuple[Row[Any], dict[str, Any], OutgoingEmail]], slots: list[float] | None = None
    ) -> None:
        """Start sending a window (inline without a pool: done when this returns); with `slots`,
        each message waits for its send time first."""
        times: list[float | None] = list(slots) if slots is not None else [None] * len(outgoing)
        args = [
            (self.channel, row, base, email, self.policy, self.now, at)
            for (row, base, email), at in zip(outgoing, times, strict=True)
        ]
        if self._pool is None:
            self._windows.append([_send_one(*a) for a in args])
        else:
            self._windows.append([self._pool.submit(_send_one, *a) for a in args])

    def collect_oldest(self) -> list[_Outcome]:
        """Wait for the oldest window's outcomes."""
        window = self._windows.popleft()
        return [item.result() if isinstance(item, Future) else item for item in window]


def _send_one(
    channel: EmailChannel,
    row: Row[Any],
    base: dict[str, Any],
    email: OutgoingEmail,
    policy: SendPolicy,
    now: datetime,
    send_at: float | None = None,
) -> _Outcome:
    """Send with retries on retryable answers (backoff with jitter, honouring Retry-After), not
    before `send_at` (unix seconds; the global rate's schedule)."""
    if send_at is not None:
        wait_until(send_at)
    attempts = 0
    while True:
        attempts += 1
        try:
            provider_id = channel.send(email)
        except SendError as exc:
            if exc.kind == "retry" and attempts < policy.attempts:
                policy.sleep(_backoff(attempts, exc.retry_after))
                continue
            return _send_failure(row, base, exc, attempts, now)
        except Exception as exc:
            return _failed(row, base, Reason.CHANNEL_ERROR, f"{channel.name}: {type(exc).__name__}: {exc}")
        what = f"{email.rendered.template_file} to {email.to_email}: {email.rendered.subject}"
        audit = audit_row(
            **base,
            decision=Decision.SENT,
            reason=Reason.DELIVERED_TO_CHANNEL,
            detail=what,
            content_hash=email.rendered.content_hash,
        )
        return _Outcome(row, "sent", audit, provider_id=provider_id)


def _send_failure(row: Row[Any], base: dict[str, Any], exc: SendError, attempts: int, now: datetime) -> _Outcome:
    message = f"{exc} (after {attempts} attempt{'s' * (attempts != 1)})"
    if exc.kind == "ambiguous":
        audit = audit_row(**base, decision=Decision.UNKNOWN, reason=Reason.OUTCOME_UNKNOWN, detail=str(exc))
        return _Outcome(row, "unknown", audit, error=str(exc))
    if exc.kind == "unavailable":
        # Nothing was written and the message is not at fault (a full or read-only outbox):
        # failing it would turn an outage into lost mail, so it waits for the storage, with a
        # backoff capped at UNAVAILABLE_RETRY_CAP, however many dispatches that takes.
        later = now + min(UNAVAILABLE_RETRY_CAP, timedelta(minutes=2 ** min(row.attempts, 12)))
        detail = f"{message}; next try after {later.isoformat(timespec='seconds')}"
        audit = audit_row(**base, decision=Decision.DEFERRED, reason=Reason.CHANNEL_UNAVAILABLE, detail=detail)
        return _Outcome(row, "planned", audit, error=message, not_before=later)
    if exc.kind == "retry" and row.attempts + 1 < MAX_DISPATCHES:
        later = now + timedelta(seconds=max(60.0, _backoff(row.attempts + 1, exc.retry_after) * 30))
        detail = f"{message}; next try after {later.isoformat(timespec='seconds')}"
        audit = audit_row(**base, decision=Decision.DEFERRED, reason=Reason.PROVIDER_BUSY, detail=detail)
        return _Outcome(row, "planned", audit, error=message, not_before=later)
    return _failed(row, base, Reason.PROVIDER_REJECTED, message)


def _backoff(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return retry_after
    return float(min(30.0, 0.25 * 2 ** (attempt - 1)) * (0.5 + random.random()))


def _task_outcome(
    row: Row[Any], playbook: CompiledPlaybook, ctx: _Context, now: datetime, base: dict[str, Any], rules: Policy
) -> _Outcome:
    account = ctx.accounts.get(row.account_id) or {}
    if (account.get("traits") or {}).get("do_not_contact") and not playbook.spec.policy.tasks_when_suppressed:
        detail = f"account {row.account_id} is do-not-contact (the playbook's policy.tasks_when_suppressed is off)"
        audit = audit_row(**base, decision=Decision.SKIPPED, reason=Reason.SUPPRESSED_DO_NOT_CONTACT, detail=detail)
        return _Outcome(row, "skipped", audit, error=detail)
    task = _build_task(row, playbook, ctx, now, rules)
    # Placement (dedupe, assignment, capacity) happens when the window is written, under the
    # policy lock; the audit's reason and detail are filled in then.
    audit = audit_row(**base, decision=Decision.TASK_OPENED, reason=Reason.TASK_CREATED, detail=task["title"])
    owner = ctx.csms.get(task["csm_id"]) if task["csm_id"] is not None else None
    team = owner["team"] if owner else None
    return _Outcome(row, "sent", audit, provider_id=f"task:{row.send_key}", task=task, team=team)


def _failed(row: Row[Any], base: dict[str, Any], reason: Reason, message: str) -> _Outcome:
    audit = audit_row(**base, decision=Decision.FAILED, reason=reason, detail=message)
    return _Outcome(row, "failed", audit, error=message)


def _write_all(
    conn: Connection, outcomes: Sequence[_Outcome], now: datetime, result: DispatchResult, rules: Policy
) -> None:
    """Write a window of outcomes: ledger rows (one executemany), tasks, and their audit rows —
    only for rows this dispatcher still holds (a reconciliation or another dispatcher wins)."""
    outcomes = _still_held(conn, outcomes)
    if not outcomes:
        return
    with_tasks = [o for o in outcomes if o.task is not None]
    if with_tasks:
        lock(conn, "policy", now)  # dedupe and CSM capacity hold across dispatchers
        for o in with_tasks:
            assert o.task is not None
            placed = place_task(conn, o.task, rules.csm, o.team)
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
            }
        )
    # Guarded: a reconciliation that already settled the row wins. (No IN: executemany refuses
    # expanding parameters.)
    in_hand = or_(ledger.c.status == "claimed", ledger.c.status == "sending")
    stmt = (
        update(ledger)
        .where(ledger.c.id == bindparam("row_id"), in_hand, ledger.c.claim_token == bindparam("held_by"))
        .values(
            status=bindparam("new_status"),
            error=bindparam("new_error"),
            provider_message_id=bindparam("new_provider_id"),
            attempts=bindparam("new_attempts"),
            not_before=bindparam("new_not_before"),
            updated_at=now,
        )
    )
    conn.execute(stmt, params)
    record(conn, [o.audit for o in outcomes])
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


def _still_held(conn: Connection, outcomes: Sequence[_Outcome]) -> list[_Outcome]:
    """The outcomes whose rows are still claimed or sending under this dispatcher's claim token."""
    ids = [o.row.id for o in outcomes]
    query = select(ledger.c.id, ledger.c.claim_token).where(
        ledger.c.id.in_(ids), ledger.c.status.in_(["claimed", "sending"])
    )
    held = {r.id: r.claim_token for r in conn.execute(query)}
    return [o for o in outcomes if o.row.id in held and held[o.row.id] == o.row.claim_token]


def _load_context(
    conn: Connection, rows: Sequence[Row[Any]], team: tuple[str, str], links: UnsubscribeLinks | None
) -> _Context:
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
    return _Context(accs, cons, people, team, links, problems=problems)


def _needing_unreadable_rows(
    rows: Sequence[Row[Any]], ctx: _Context, now: datetime, run_id: str
) -> tuple[list[Row[Any]], list[_Outcome]]:
    """The rows whose account, contact and CSM can all be read, and a skip for each of the others:
    a bad customer row costs the deliveries that need it, never the batch."""
    kept: list[Row[Any]] = []
    skipped: list[_Outcome] = []
    for row in rows:
        csm_id = (ctx.accounts.get(row.account_id) or {}).get("csm_id")
        needed = [("account", row.account_id), ("contact", row.contact_id), ("csm", csm_id)]
        why = "; ".join(p for key in needed if (p := ctx.problems.get(key)))
        if not why:
            kept.append(row)
            continue
        fields = ledger_fields(row, now, run_id)
        audit = audit_row(**fields, decision=Decision.SKIPPED, reason=Reason.UNREADABLE_ROW, detail=why)
        skipped.append(_Outcome(row, "skipped", audit, error=why))
    return kept, skipped


def _template_context(row: Row[Any], playbook: CompiledPlaybook, ctx: _Context) -> dict[str, Any]:
    account = ctx.accounts.get(row.account_id)
    if account is None:
        raise RenderError(f"account {row.account_id} no longer exists")
    contact = ctx.contacts.get(row.contact_id) if row.contact_id is not None else None
    csm = ctx.csms.get(account["csm_id"]) if account["csm_id"] is not None else None
    sender_kind = row.payload.get("from", "team")
    return template_context(
        account, contact, csm, sender_kind, playbook, row.step_id, row.send_key, ctx.team, ctx.links
    )


def template_context(
    account: dict[str, Any],
    contact: dict[str, Any] | None,
    csm: dict[str, Any] | None,
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


def _email_job(row: Row[Any], playbook: CompiledPlaybook, ctx: _Context) -> RenderJob:
    """What rendering the row's email needs: template, locale chain, context, subject override."""
    context = _template_context(row, playbook, ctx)
    contact = context["contact"]
    if not contact:
        raise RenderError(f"contact {row.contact_id} no longer exists")
    chain = locale_chain(contact.get("locale"), context["account"].get("locale"))
    return row.payload["template"], chain, context, row.payload.get("subject")


def _email(row: Row[Any], context: dict[str, Any], rendered: RenderedEmail, now: datetime) -> OutgoingEmail:
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


def _build_task(
    row: Row[Any], playbook: CompiledPlaybook, ctx: _Context, now: datetime, rules: Policy
) -> dict[str, Any]:
    spec = _action(row, playbook, "task", TaskAction)
    context = _template_context(row, playbook, ctx)
    due = now + spec.due
    if rules.csm.due_in_business_days and spec.due % timedelta(days=1) == timedelta(0):
        named = (context["account"].get("timezone"), rules.timezone)
        account_zone = next((z for z in named if z and known_zone(z)), "UTC")
        # Business days and holidays only: the project's quiet hours do not move a due date.
        due = add_business_days(now, spec.due.days, calendar_for(rules), account_zone)
    return {
        "send_key": row.send_key,
        "playbook_id": row.playbook_id,
        "step_id": row.step_id,
        "account_id": row.account_id,
        "csm_id": context["account"]["csm_id"],
        "title": render_inline(spec.title, context).strip()[:300],
        "body": render_inline(spec.body, context).strip(),
        "priority": spec.priority,
        "status": "open",
        "due_at": due,
        "created_at": now,
        "dedupe_key": spec.reason or f"{row.playbook_id}:{row.step_id}",
    }


_A = TypeVar("_A", TaskAction, WebhookAction)


def _action(row: Row[Any], playbook: CompiledPlaybook, kind: str, model: type[_A]) -> _A:
    """The step's action as planned (carried in the payload), else as the playbook says now."""
    if kind in (row.payload or {}):
        return model.model_validate(row.payload[kind])
    step = next((s for s in playbook.steps if s.id == row.step_id), None)
    action = getattr(step.spec, kind, None) if step is not None else None
    if not isinstance(action, model):
        raise RenderError(f"step '{row.step_id}' is no longer a {kind} step of '{playbook.id}'")
    return action


def _call_webhook(
    row: Row[Any], playbook: CompiledPlaybook, ctx: _Context, post: Callable[..., int]
) -> tuple[int, str]:
    spec = _action(row, playbook, "webhook", WebhookAction)
    if spec.url_env is not None:
        url = os.environ.get(spec.url_env)
        where = f"${spec.url_env}"
        if not url:
            raise WebhookError(f"environment variable {spec.url_env} is not set")
    else:
        url = spec.url or ""
        where = url.split("?")[0]
    body = _render_json(spec.body, _template_context(row, playbook, ctx))
    return post(url, body, spec.timeout.total_seconds(), spec.retries), where


def _render_json(value: Any, context: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return render_inline(value, context)
    if isinstance(value, dict):
        return {k: _render_json(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_json(v, context) for v in value]
    return value
