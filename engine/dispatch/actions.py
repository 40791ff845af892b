"""The ledger rows that are not emails: CSM tasks and webhook calls.

A task row becomes a task to place (dedupe, assignment and capacity happen when its window is
written, under the policy lock: `engine.dispatch.outcomes.write_outcomes`); a webhook row is a
POST of its rendered JSON body. Both read the step's action as it was planned (carried in the
row's payload), else as the playbook says now.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Row

from engine.audit import Decision, Reason, audit_row
from engine.compile import CompiledPlaybook
from engine.dispatch.context import BatchContext, row_context
from engine.dispatch.outcomes import Outcome
from engine.dispatch.webhook import WebhookError
from engine.plan.time import known_zone
from engine.policy.gate import calendar_for
from engine.policy.tasks import add_business_days
from engine.render import RenderError, render_inline
from engine.spec.steps import TaskAction, WebhookAction


def task_outcome(
    row: Row[Any], playbook: CompiledPlaybook, ctx: BatchContext, now: datetime, base: dict[str, Any]
) -> Outcome:
    """The task a task row opens (placed when its window is written), or a skip for an account
    that is do-not-contact when the playbook does not open tasks for those."""
    account = ctx.accounts.get(row.account_id) or {}
    if (account.get("traits") or {}).get("do_not_contact") and not playbook.spec.policy.tasks_when_suppressed:
        detail = f"account {row.account_id} is do-not-contact (the playbook's policy.tasks_when_suppressed is off)"
        audit = audit_row(**base, decision=Decision.SKIPPED, reason=Reason.SUPPRESSED_DO_NOT_CONTACT, detail=detail)
        return Outcome(row, "skipped", audit, error=detail)
    task = build_task(row, playbook, ctx, now)
    # Placement (dedupe, assignment, capacity) happens when the window is written, under the
    # policy lock; the audit's reason and detail are filled in then.
    audit = audit_row(**base, decision=Decision.TASK_OPENED, reason=Reason.TASK_CREATED, detail=task["title"])
    owner = ctx.csms.get(task["csm_id"]) if task["csm_id"] is not None else None
    team = owner["team"] if owner else None
    return Outcome(row, "sent", audit, provider_id=f"task:{row.send_key}", task=task, team=team)


def build_task(row: Row[Any], playbook: CompiledPlaybook, ctx: BatchContext, now: datetime) -> dict[str, Any]:
    """The `tasks` row of a task step: rendered title and body, due date (in business days of the
    account's zone when the policy says so), the dedupe key."""
    spec = action(row, playbook, "task", TaskAction)
    context = row_context(row, playbook, ctx)
    policy = ctx.policy
    due = now + spec.due
    if policy.csm.due_in_business_days and spec.due % timedelta(days=1) == timedelta(0):
        named = (context["account"].get("timezone"), policy.timezone)
        account_zone = next((z for z in named if z and known_zone(z)), "UTC")
        # Business days and holidays only: the project's quiet hours do not move a due date.
        due = add_business_days(now, spec.due.days, calendar_for(policy), account_zone)
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


def action(row: Row[Any], playbook: CompiledPlaybook, kind: str, model: type[_A]) -> _A:
    """The step's action as planned (carried in the payload), else as the playbook says now."""
    if kind in (row.payload or {}):
        return model.model_validate(row.payload[kind])
    step = next((s for s in playbook.steps if s.id == row.step_id), None)
    found = getattr(step.spec, kind, None) if step is not None else None
    if not isinstance(found, model):
        raise RenderError(f"step '{row.step_id}' is no longer a {kind} step of '{playbook.id}'")
    return found


def webhook_outcome(
    row: Row[Any], playbook: CompiledPlaybook, ctx: BatchContext, post: Callable[..., int], base: dict[str, Any]
) -> Outcome:
    """POST the webhook row's body; `sent` with the HTTP status (WebhookError when it failed for
    good, RenderError when its body cannot be rendered)."""
    status, where = call_webhook(row, playbook, ctx, post)
    audit = audit_row(
        **base,
        decision=Decision.WEBHOOK_CALLED,
        reason=Reason.WEBHOOK_DELIVERED,
        detail=f"POST to {where}: HTTP {status}",
    )
    return Outcome(row, "sent", audit, provider_id=f"http:{status}")


def call_webhook(
    row: Row[Any], playbook: CompiledPlaybook, ctx: BatchContext, post: Callable[..., int]
) -> tuple[int, str]:
    """POST the rendered body; returns the HTTP status and where it went (never the URL's query,
    nor a URL from the environment: either may hold a secret)."""
    spec = action(row, playbook, "webhook", WebhookAction)
    if spec.url_env is not None:
        url = os.environ.get(spec.url_env)
        where = f"${spec.url_env}"
        if not url:
            raise WebhookError(f"environment variable {spec.url_env} is not set")
    else:
        url = spec.url or ""
        where = url.split("?")[0]
    body = _render_json(spec.body, row_context(row, playbook, ctx))
    return post(url, body, spec.timeout.total_seconds(), spec.retries), where


def _render_json(value: Any, context: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return render_inline(value, context)
    if isinstance(value, dict):
        return {k: _render_json(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_json(v, context) for v in value]
    return value
