"""The playbooks that act on a funnel stage, and their effect: goal conversion of the subjects
they enrolled and sent to, against the subjects an experiment held out (who received nothing).

A stage names its playbooks (`playbooks:` in `health.yaml`): declared rather than guessed from
the fields a segment reads, because a playbook can serve a stage without reading its condition
(a welcome series serves onboarding). An enrollment is held out when the ledger has a `held_out`
row for it (engine/plan/steps/email.py writes one per email step); it converted when it reached
the playbook's goal (`enrollments.status = 'converted'`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, case, exists, func, select

from engine.store.models import enrollments, ledger


@dataclass(frozen=True)
class PlaybookEffect:
    """One playbook's goal conversion, treated against held out."""

    stage: str
    playbook: str
    enrolled: int
    converted: int
    holdout_enrolled: int
    holdout_converted: int

    @property
    def rate(self) -> float | None:
        """Goal conversion of the enrollments sent to; None without any."""
        return self.converted / self.enrolled if self.enrolled else None

    @property
    def holdout_rate(self) -> float | None:
        """Goal conversion of the held-out enrollments; None without a holdout."""
        return self.holdout_converted / self.holdout_enrolled if self.holdout_enrolled else None

    @property
    def lift(self) -> float | None:
        """rate − holdout rate, in points of conversion; None when either is unknown."""
        if self.rate is None or self.holdout_rate is None:
            return None
        return self.rate - self.holdout_rate

    def as_dict(self) -> dict[str, Any]:
        """The row with its rates, as JSON lines and CSV print it."""
        return {**asdict(self), "rate": self.rate, "holdout_rate": self.holdout_rate, "lift": self.lift}


EFFECT_FIELDS = (
    "stage",
    "playbook",
    "enrolled",
    "converted",
    "rate",
    "holdout_enrolled",
    "holdout_converted",
    "holdout_rate",
    "lift",
)


def playbook_effects(conn: Connection, stage: str, playbooks: Sequence[str]) -> list[PlaybookEffect]:
    """The effect of each of `playbooks` (in that order), from one grouped query."""
    if not playbooks:
        return []
    held = exists().where(ledger.c.enrollment_id == enrollments.c.id, ledger.c.status == "held_out")
    each = (
        select(
            enrollments.c.playbook_id,
            case((held, 1), else_=0).label("held"),
            case((enrollments.c.status == "converted", 1), else_=0).label("converted"),
        )
        .where(enrollments.c.playbook_id.in_(list(playbooks)))
        .subquery()
    )
    query = select(
        each.c.playbook_id, each.c.held, func.count().label("enrolled"), func.sum(each.c.converted).label("converted")
    ).group_by(each.c.playbook_id, each.c.held)
    counts: dict[tuple[str, bool], tuple[int, int]] = {}
    for row in conn.execute(query):
        counts[(row.playbook_id, bool(row.held))] = (int(row.enrolled), int(row.converted or 0))
    out = []
    for playbook in playbooks:
        sent, hold = counts.get((playbook, False), (0, 0)), counts.get((playbook, True), (0, 0))
        out.append(PlaybookEffect(stage, playbook, sent[0], sent[1], hold[0], hold[1]))
    return out
