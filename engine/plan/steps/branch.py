"""The branch step: go to the `then` or the `else` step by the branch condition, evaluated for the
whole batch before the walk."""

from __future__ import annotations

from engine.audit import Decision, Reason
from engine.compile import CompiledStep
from engine.plan.batch import Walk
from engine.spec import BranchStep


def branch(walk: Walk, step: CompiledStep, spec: BranchStep, index: int) -> int:
    """The step the journey goes on at: the branch's target, or the next step when it names none
    (or a step the version does not have)."""
    condition_holds = walk.holds(step, "branch")
    target = spec.branch.then if condition_holds else spec.branch.else_
    jump = walk.playbook.index_of(target) if target else None
    walk.audit(
        step,
        Decision.BRANCHED,
        Reason.BRANCH,
        f"condition {'holds' if condition_holds else 'does not hold'}: go to {target or 'next step'}",
    )
    return jump if jump is not None else index + 1
