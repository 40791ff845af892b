"""The step kinds of the walk, one module each, and `HANDLERS`: the step spec type → its handler.

A handler gets the walk (the enrollment, its batch, the plan it writes to), the compiled step,
the step's spec and the step's index. It records what it decides on the walk and returns the
index of the step the journey goes on at, or None when the walk ends here (the handler recorded
the enrollment's move: a wait, an update, an exit).

The step's `if` condition is checked by the walk before its handler runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.compile import CompiledStep
from engine.plan.batch import Walk
from engine.plan.steps.actions import task, webhook
from engine.plan.steps.branch import branch
from engine.plan.steps.email import email
from engine.plan.steps.exit import exit_
from engine.plan.steps.update import apply_update, update
from engine.plan.steps.wait import wait
from engine.spec import BranchStep, EmailStep, ExitStep, TaskStep, UpdateStep, WaitStep, WebhookStep

StepHandler = Callable[[Walk, CompiledStep, Any, int], int | None]
"""(walk, step, the step's spec, its index) → the index to go on at, or None when the walk ends."""

HANDLERS: dict[type, StepHandler] = {
    EmailStep: email,
    TaskStep: task,
    WebhookStep: webhook,
    WaitStep: wait,
    BranchStep: branch,
    UpdateStep: update,
    ExitStep: exit_,
}

__all__ = ["HANDLERS", "StepHandler", "apply_update"]
