"""Claim planned ledger rows atomically, then deliver them and record sent / failed.

Claiming flips `planned → sending` in its own committed transaction (with SKIP LOCKED on
PostgreSQL), so two dispatchers never take the same row; a crash after the claim leaves
`sending` rows to reconcile, never a blind resend.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Row, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from engine.addresses import email_problem
from engine.audit import Decision, Reason, audit_row, record
from engine.compile import CompiledPlaybook
from engine.delivery_config import Sender
from engine.dispatch.channels import EmailChannel, OutgoingEmail, SendError
from engine.dispatch.webhook import WebhookError, post_json
from engine.render import EmailRenderer, RenderError, locale_chain, render_inline
from engine.spec.steps import TaskAction, WebhookAction
from engine.store.models import accounts, contacts, csms, ledger, tasks

TEAM_SENDER = (Sender().name, Sender().email)
"""The team sender when no `touchflow.yaml` says otherwise (its defaults)."""


@dataclass
class DispatchResult:
    """Deliveries per playbook."""

    emails: Counter[str] = field(default_factory=Counter)
    tasks: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    webhooks: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, dict[str, int]]:
        """Plain counts, to cross a Prefect task boundary."""
        return {
            "emails": dict(self.emails),
            "tasks": dict(self.tasks),
            "failed": dict(self.failed),
            "webhooks": dict(self.webhooks),
        }

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, int]]) -> DispatchResult:
        return cls(
            Counter(data["emails"]), Counter(data["tasks"]), Counter(data["failed"]), Counter(data.get("webhooks", {}))
        )


def claim(conn: Connection, limit: int, now: datetime, playbook_ids: Sequence[str] | None = None) -> list[int]:
    """Mark up to `limit` planned rows as claimed and return their ids. The caller commits.

    `claimed` means "this dispatcher will handle it": nothing has gone out yet. A row becomes
    `sending` only just before its request, a few at a time, so a crash strands at most the
    messages in flight; claimed rows of a dead dispatcher go back to `planned` (reconcile).

    Only rows of `playbook_ids` (the active or selected playbooks) are taken: a paused playbook's
    planned messages wait, and rows of a playbook no longer loaded stay planned, not failed.
    """
    due = or_(ledger.c.not_before.is_(None), ledger.c.not_before <= now)
    pick = select(ledger.c.id).where(ledger.c.status == "planned", due).order_by(ledger.c.id).limit(limit)
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
        .values(status="claimed", updated_at=now)
        .returning(ledger.c.id)
    )
    return sorted(r.id for r in conn.execute(stmt))


@dataclass(frozen=True)
class _Context:
    accounts: dict[int, dict[str, Any]]
    contacts: dict[int, dict[str, Any]]
    csms: dict[int, dict[str, Any]]
    team: tuple[str, str] = TEAM_SENDER


@dataclass
class _Outcome:
    """What happened to one ledger row, ready to be written."""

    row: Row[Any]
    status: str  # sent | failed | unknown | planned (to retry later)
    audit: dict[str, Any]
    provider_id: str | None = None
    error: str | None = None
    task: dict[str, Any] | None = None
    not_before: datetime | None = None


@dataclass(frozen=True)
class SendPolicy:
    """How hard one dispatch tries: attempts per message for retryable answers, and concurrency."""

    attempts: int = 1
    concurrency: int = 1
    sleep: Callable[[float], None] = time.sleep
    team_sender: tuple[str, str] = TEAM_SENDER
    """(name, address) of `from: team`, and of accounts without a CSM (`touchflow.yaml`)."""


MAX_DISPATCHES = 5
"""Dispatches (each with its own retries) before a message that keeps getting 429/5xx fails."""


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
) -> DispatchResult:
    """Render and deliver claimed rows; record each outcome and its audit row.

    With `commit`, every outcome is committed as soon as it is known, so a crash strands at most
    the messages in flight (left `sending`, reconciled later, never resent blindly). Without it,
    the caller owns the transaction (dry runs roll back). One row's failure — a template, an
    address, a provider error — fails that row with its reason; the rest of the batch goes on.
    """
    result = DispatchResult()
    rows = conn.execute(select(ledger).where(ledger.c.id.in_(ids)).order_by(ledger.c.id)).all()
    ctx = _load_context(conn, rows, policy.team_sender)
    outgoing: list[tuple[Row[Any], dict[str, Any], OutgoingEmail]] = []

    def write(outcome: _Outcome) -> None:
        _write(conn, outcome, now, result)
        if commit is not None:
            commit()

    for row in rows:
        base = _audit_base(row, now, run_id)
        playbook = playbooks.get(row.playbook_id)
        try:
            if playbook is None:
                raise RenderError(f"playbook '{row.playbook_id}' is no longer loaded")
            if row.kind == "task":
                write(_task_outcome(row, playbook, ctx, now, base))
            elif row.kind == "webhook":
                _mark_sending(conn, [row.id], now)  # the POST may land even if we die now
                if commit is not None:
                    commit()
                status, where = _call_webhook(row, playbook, ctx, post)
                audit = audit_row(
                    **base,
                    decision=Decision.WEBHOOK_CALLED,
                    reason=Reason.WEBHOOK_DELIVERED,
                    detail=f"POST to {where}: HTTP {status}",
                )
                write(_Outcome(row, "sent", audit, provider_id=f"http:{status}"))
            else:
                outgoing.append((row, base, _build_email(row, playbook, ctx, renderer, now)))
        except RenderError as exc:
            write(_failed(row, base, Reason.RENDER_FAILED, str(exc)))
        except WebhookError as exc:
            write(_failed(row, base, Reason.WEBHOOK_FAILED, str(exc)))
        except Exception as exc:
            write(_failed(row, base, Reason.CHANNEL_ERROR, f"{type(exc).__name__}: {exc}"))
    # A few at a time: mark them `sending` (committed) just before their requests, so a crash
    # leaves at most one chunk ambiguous; the rest of the claim is still untouched.
    chunk = max(1, policy.concurrency)
    for start in range(0, len(outgoing), chunk):
        part = outgoing[start : start + chunk]
        _mark_sending(conn, [row.id for row, _, _ in part], now)
        if commit is not None:
            commit()
        # The chunk's outcomes are committed together: until then its rows stay `sending`, which
        # is what they are (a crash here leaves them to reconciliation, like any send in flight).
        for outcome in _send_all(channel, part, policy, now):
            _write(conn, outcome, now, result)
        if commit is not None:
            commit()
    return result


def _mark_sending(conn: Connection, ids: list[int], now: datetime) -> None:
    conn.execute(
        update(ledger)
        .where(ledger.c.id.in_(ids), ledger.c.status == "claimed")
        .values(status="sending", updated_at=now)
    )


def _send_all(
    channel: EmailChannel,
    outgoing: list[tuple[Row[Any], dict[str, Any], OutgoingEmail]],
    policy: SendPolicy,
    now: datetime,
) -> Iterator[_Outcome]:
    """Send every email — `policy.concurrency` requests in flight — yielding outcomes as they come."""
    if policy.concurrency <= 1 or len(outgoing) <= 1:
        for row, base, email in outgoing:
            yield _send_one(channel, row, base, email, policy, now)
        return
    with ThreadPoolExecutor(max_workers=policy.concurrency, thread_name_prefix="touchflow-send") as pool:
        futures = [pool.submit(_send_one, channel, row, base, email, policy, now) for row, base, email in outgoing]
        for future in as_completed(futures):
            yield future.result()


def _send_one(
    channel: EmailChannel, row: Row[Any], base: dict[str, Any], email: OutgoingEmail, policy: SendPolicy, now: datetime
) -> _Outcome:
    """Send with retries on retryable answers (backoff with jitter, honouring Retry-After)."""
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


def _audit_base(row: Row[Any], now: datetime, run_id: str) -> dict[str, Any]:
    return {
        "at": now,
        "run_id": run_id,
        "playbook_id": row.playbook_id,
        "playbook_version": row.playbook_version,
        "step_id": row.step_id,
        "enrollment_id": row.enrollment_id,
        "account_id": row.account_id,
        "contact_id": row.contact_id,
        "channel": row.channel,
        "send_key": row.send_key,
    }


def _task_outcome(
    row: Row[Any], playbook: CompiledPlaybook, ctx: _Context, now: datetime, base: dict[str, Any]
) -> _Outcome:
    task = _build_task(row, playbook, ctx, now)
    who = task["csm_id"] or "team queue"
    audit = audit_row(
        **base,
        decision=Decision.TASK_OPENED,
        reason=Reason.TASK_CREATED,
        detail=f"{task['priority']} task for csm {who}: {task['title']}",
    )
    return _Outcome(row, "sent", audit, provider_id=f"task:{row.send_key}", task=task)


def _failed(row: Row[Any], base: dict[str, Any], reason: Reason, message: str) -> _Outcome:
    audit = audit_row(**base, decision=Decision.FAILED, reason=reason, detail=message)
    return _Outcome(row, "failed", audit, error=message)


def _write(conn: Connection, outcome: _Outcome, now: datetime, result: DispatchResult) -> None:
    row = outcome.row
    if outcome.task is not None:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(insert(tasks).on_conflict_do_nothing(index_elements=["send_key"]), [outcome.task])
    values: dict[str, Any] = {"status": outcome.status, "error": outcome.error, "updated_at": now}
    if outcome.provider_id is not None:
        values["provider_message_id"] = outcome.provider_id
    if outcome.status == "planned":
        values.update(attempts=row.attempts + 1, not_before=outcome.not_before)
    # Guarded: a reconciliation that already settled the row wins.
    in_hand = ledger.c.status.in_(["claimed", "sending"])
    conn.execute(update(ledger).where(ledger.c.id == row.id, in_hand).values(**values))
    record(conn, [outcome.audit])
    if outcome.status == "sent":
        counter = {"task": result.tasks, "webhook": result.webhooks}.get(row.kind, result.emails)
        counter[row.playbook_id] += 1
    elif outcome.status == "failed":
        result.failed[row.playbook_id] += 1


def _load_context(conn: Connection, rows: Sequence[Row[Any]], team: tuple[str, str]) -> _Context:
    account_ids = sorted({r.account_id for r in rows})
    contact_ids = sorted({r.contact_id for r in rows if r.contact_id is not None})
    accs = {r.id: dict(r._mapping) for r in conn.execute(select(accounts).where(accounts.c.id.in_(account_ids)))}
    cons = {r.id: dict(r._mapping) for r in conn.execute(select(contacts).where(contacts.c.id.in_(contact_ids)))}
    csm_ids = sorted({a["csm_id"] for a in accs.values() if a["csm_id"] is not None})
    people = {r.id: dict(r._mapping) for r in conn.execute(select(csms).where(csms.c.id.in_(csm_ids)))}
    return _Context(accs, cons, people, team)


def _template_context(row: Row[Any], playbook: CompiledPlaybook, ctx: _Context) -> dict[str, Any]:
    account = ctx.accounts.get(row.account_id)
    if account is None:
        raise RenderError(f"account {row.account_id} no longer exists")
    contact = ctx.contacts.get(row.contact_id) if row.contact_id is not None else None
    csm = ctx.csms.get(account["csm_id"]) if account["csm_id"] is not None else None
    sender_kind = row.payload.get("from", "team")
    return template_context(account, contact, csm, sender_kind, playbook, row.step_id, row.send_key, ctx.team)


def template_context(
    account: dict[str, Any],
    contact: dict[str, Any] | None,
    csm: dict[str, Any] | None,
    sender_kind: str,
    playbook: CompiledPlaybook,
    step_id: str,
    send_key: str,
    team: tuple[str, str] = TEAM_SENDER,
) -> dict[str, Any]:
    """The variables every template sees (see `engine.render.CONTEXT_NAMES`)."""
    sender = (
        {"name": csm["name"], "email": csm["email"]}
        if sender_kind == "csm" and csm
        else dict(zip(("name", "email"), team, strict=True))
    )
    public = os.environ.get("TOUCHFLOW_PUBLIC_URL", "https://app.touchflow.example").rstrip("/")
    return {
        "account": account,
        "contact": contact or {},
        "csm": csm or {"name": "Customer Success team", "email": team[1]},
        "sender": sender,
        "playbook": {"id": playbook.id, "name": playbook.spec.name},
        "step": {"id": step_id},
        "unsubscribe_url": f"{public}/unsubscribe?k={send_key}",
    }


def _build_email(
    row: Row[Any], playbook: CompiledPlaybook, ctx: _Context, renderer: EmailRenderer, now: datetime
) -> OutgoingEmail:
    context = _template_context(row, playbook, ctx)
    contact = context["contact"]
    if not contact:
        raise RenderError(f"contact {row.contact_id} no longer exists")
    chain = locale_chain(contact.get("locale"), context["account"].get("locale"))
    rendered = renderer.render(row.payload["template"], chain, context)
    for who, address in (("recipient", contact["email"]), ("sender", context["sender"]["email"])):
        problem = email_problem(address or "")
        if problem:
            raise RenderError(f"{who}: {problem}")
    outgoing = OutgoingEmail(
        send_key=row.send_key,
        sender_name=context["sender"]["name"],
        sender_email=context["sender"]["email"],
        to_name=contact["name"],
        to_email=contact["email"],
        rendered=rendered,
        playbook_id=row.playbook_id,
        step_id=row.step_id,
        at=now,
    )
    return outgoing


def _build_task(row: Row[Any], playbook: CompiledPlaybook, ctx: _Context, now: datetime) -> dict[str, Any]:
    spec = _action(row, playbook, "task", TaskAction)
    context = _template_context(row, playbook, ctx)
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
        "due_at": now + spec.due,
        "created_at": now,
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
