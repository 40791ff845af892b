"""The task and webhook steps: one planned ledger row each, whose payload carries the action's
spec (dispatch opens the CSM task or calls the webhook, and needs no playbook file of that
version)."""

from __future__ import annotations

from typing import Any

from engine.compile import CompiledStep
from engine.plan.batch import Walk
from engine.plan.ledger_rows import ledger_row, send_key
from engine.spec import TaskStep, WebhookStep


def task(walk: Walk, step: CompiledStep, spec: TaskStep, index: int) -> int:
    """Plan the CSM task."""
    _plan_action(walk, step, "task", {"task": spec.task.model_dump(mode="json")})
    walk.plan.result.tasks_planned += 1
    return index + 1


def webhook(walk: Walk, step: CompiledStep, spec: WebhookStep, index: int) -> int:
    """Plan the webhook call."""
    _plan_action(walk, step, "webhook", {"webhook": spec.webhook.model_dump(mode="json")})
    walk.plan.result.webhooks_planned += 1
    return index + 1


def _plan_action(walk: Walk, step: CompiledStep, kind: str, payload: dict[str, Any]) -> None:
    # One action per enrollment and step: the kind stands in for the recipient in the send key.
    walk.plan.ledger.append(
        ledger_row(
            key=send_key(walk.playbook.id, step.id, walk.enrollment, kind),
            kind=kind,
            channel=kind,
            status="planned",
            playbook=walk.playbook,
            step_id=step.id,
            enrollment=walk.enrollment,
            contact_id=walk.base["contact_id"],
            payload=payload,
            now=walk.now,
        )
    )
