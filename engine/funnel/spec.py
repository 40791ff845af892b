"""The funnel's declaration: ordered stages, each a condition in the playbook language."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from engine.spec.base import Duration, SpecModel
from engine.spec.conditions import Condition

STAGE_ID = r"^[a-z0-9][a-z0-9_-]*$"


class FunnelStage(SpecModel):
    """One stage of the lifecycle: the accounts for which its condition holds have reached it."""

    id: str = Field(pattern=STAGE_ID, max_length=60)
    """The stage's id, e.g. `activated`."""
    name: str | None = Field(default=None, max_length=200)
    """What the stage means for people, e.g. `first key action`."""
    condition: Condition
    """When an account has reached the stage, evaluated at the report's moment."""
    playbooks: tuple[str, ...] = ()
    """The playbooks that act on this stage: shown beside their goal conversion against their
    holdout when the stage is the bottleneck."""
    due_after: Duration | None = None
    """How old a weekly cohort (from its Monday) must be before it can have reached the stage, e.g.
    `335d` for a renewal a year after the contract started. A younger cohort is counted at the
    stage and the stages after it, but not measured there: its conversion is unknown and it is
    never the bottleneck, so a stage nobody can have reached yet does not hide the real one."""

    @property
    def label(self) -> str:
        """The name for people, else the id."""
        return self.name or self.id


class Funnel(SpecModel):
    """The lifecycle funnel: stages in order (signed → onboarded → activated → …)."""

    stages: list[FunnelStage] = Field(min_length=2)
    """The stages in order; an account counts at a stage only if it reached every earlier one."""


class FunnelFile(SpecModel):
    """The part of `health.yaml` this package reads: `funnel:`. Other keys (the health model
    under `health:`) belong to their own loaders and are ignored here."""

    model_config = ConfigDict(extra="ignore")

    funnel: Funnel
    """The lifecycle funnel."""
