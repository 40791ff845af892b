"""The exit step: the journey ends here as *exited*, with the step's reason as its outcome."""

from __future__ import annotations

from engine.audit import Reason
from engine.compile import CompiledStep
from engine.plan.batch import Walk
from engine.spec import ExitStep


def exit_(walk: Walk, step: CompiledStep, spec: ExitStep, index: int) -> None:
    """End the journey at this step."""
    walk.end("exited", Reason.EXIT_STEP, spec.exit, index)
