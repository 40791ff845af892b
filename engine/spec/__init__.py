"""Playbooks as written: strict, behaviour-free pydantic models of the YAML language.

Every field's docstring becomes its description in the JSON Schema (`touchflow schema`).
"""

from engine.spec.conditions import Condition, EventWindow, FieldOps, NoEventWindow
from engine.spec.playbook import DateTrigger, Entry, Goal, Playbook, Trigger, Versions
from engine.spec.steps import (
    AnyStep,
    BranchStep,
    EmailAction,
    EmailStep,
    ExitStep,
    Recipients,
    Step,
    TaskAction,
    TaskStep,
    UpdateStep,
    WaitStep,
    WebhookStep,
    step_ids,
)

__all__ = [
    "AnyStep",
    "BranchStep",
    "Condition",
    "DateTrigger",
    "EmailAction",
    "EmailStep",
    "Entry",
    "EventWindow",
    "ExitStep",
    "FieldOps",
    "Goal",
    "NoEventWindow",
    "Playbook",
    "Recipients",
    "Step",
    "TaskAction",
    "TaskStep",
    "Trigger",
    "UpdateStep",
    "Versions",
    "WaitStep",
    "WebhookStep",
    "step_ids",
]
