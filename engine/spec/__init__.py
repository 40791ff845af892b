"""Playbooks as written: strict, behaviour-free pydantic models of the YAML language.

Every field's docstring becomes its description in the JSON Schema (`touchflow schema`).
"""

from engine.spec.conditions import Condition, EventWindow, FieldOps, NoEventWindow
from engine.spec.playbook import (
    DateTrigger,
    EmailAction,
    EmailStep,
    Entry,
    Playbook,
    Recipients,
    Step,
    TaskAction,
    TaskStep,
    Trigger,
    WaitStep,
)

__all__ = [
    "Condition",
    "DateTrigger",
    "EmailAction",
    "EmailStep",
    "Entry",
    "EventWindow",
    "FieldOps",
    "NoEventWindow",
    "Playbook",
    "Recipients",
    "Step",
    "TaskAction",
    "TaskStep",
    "Trigger",
    "WaitStep",
]
