"""What a simulation cannot know, said in words beside its figures rather than shown as zeros.

- Customer rows are as they are now: the copy has today's accounts and contacts (fields, traits,
  who exists), so conditions on fields read today's values at every simulated tick.
- A date trigger is replayed against today's value of its date: a renewal date moved since then
  fires on its new date only, and a past one that was changed never fires.
- Engagement is not observed: no provider events reach a scratch copy, so a condition on an
  email being delivered, opened or clicked never holds — every journey takes the path where
  nobody engaged, and such a goal never converts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from engine.compile import CompiledPlaybook
from engine.spec.conditions import AllOf, AnyOf, EngagedCondition, NotOf
from engine.spec.playbook import BecameTrueTrigger, DateTrigger
from engine.spec.steps import BranchStep


def notes(playbooks: Sequence[CompiledPlaybook], start: datetime) -> list[str]:
    """The sentences that qualify a simulation of `playbooks` from `start`, general ones first."""
    out = [
        "accounts and contacts are as they are now: every tick since "
        f"{start.date().isoformat()} reads today's field values, and contacts created since "
        "then already exist",
        "emails counted as sent are those handed to the channel; deliveries, bounces, opens, "
        "clicks and unsubscribes are not simulated",
    ]
    for playbook in playbooks:
        trigger = playbook.spec.trigger
        if isinstance(trigger, DateTrigger):
            out.append(
                f"{playbook.id}: the date trigger on {trigger.date} is replayed against today's "
                f"values of {trigger.date}; a date changed since then fires on its new value only"
            )
        for where, engaged in _engagement(playbook):
            e = engaged.engaged
            out.append(
                f"{playbook.id}: {where} depends on whether step {e.step} was {e.with_}, which a "
                f"simulation cannot observe: it is counted as if nobody {e.with_} it"
            )
    return out


def _engagement(playbook: CompiledPlaybook) -> Iterator[tuple[str, EngagedCondition]]:
    """(where, the engagement condition) for each use of engagement in the playbook."""
    spec = playbook.spec
    if isinstance(spec.trigger, BecameTrueTrigger):
        yield from (("the trigger", c) for c in _engaged_in(spec.trigger.became_true))
    if spec.goal is not None and spec.goal.condition is not None:
        yield from (("the goal", c) for c in _engaged_in(spec.goal.condition))
    if spec.exit_ is not None:
        yield from (("the exit", c) for c in _engaged_in(spec.exit_))
    for step in playbook.steps:
        if isinstance(step.spec, BranchStep):
            yield from ((f"branch {step.id}", c) for c in _engaged_in(step.spec.branch.if_))
        condition = getattr(step.spec, "if_", None)
        if condition is not None:
            yield from ((f"the condition of step {step.id}", c) for c in _engaged_in(condition))


def _engaged_in(condition: Any) -> Iterator[EngagedCondition]:
    if isinstance(condition, EngagedCondition):
        yield condition
    elif isinstance(condition, AllOf):
        for member in condition.all:
            yield from _engaged_in(member)
    elif isinstance(condition, AnyOf):
        for member in condition.any:
            yield from _engaged_in(member)
    elif isinstance(condition, NotOf):
        yield from _engaged_in(condition.not_)
