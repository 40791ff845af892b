"""What a tick reports: one line per playbook, and one line for what failed."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy.exc import DBAPIError

from engine.audit import Reason
from engine.dispatch import DispatchResult
from engine.plan import AdvanceResult, EvaluateResult


@dataclass
class PlaybookSummary:
    """The per-playbook line of a tick's report."""

    playbook: str
    matched: int = 0
    enrolled: int = 0
    emails: int = 0
    tasks: int = 0
    skipped: int = 0
    deferred: int = 0
    failed: int = 0
    converted: int = 0
    exited: int = 0
    error: str | None = None
    """Why the playbook failed this tick ("evaluating: …"), None when it did not."""
    paused: str | None = None
    """The guardrail that stopped it this tick (`paused_stale_data`, `circuit_open`), None when none did."""
    why_paused: str | None = None
    """The guardrail's numbers in words ("stale data: login: newest data … (13d old); limit 48h")."""

    def as_dict(self) -> dict[str, int | str | None]:
        return asdict(self)

    def fill(self, ev: EvaluateResult, adv: AdvanceResult) -> None:
        """Take the counts of planning: what evaluation matched and enrolled, what advancing did."""
        self.matched, self.enrolled, self.skipped = ev.matched, ev.enrolled, adv.skipped
        self.converted, self.exited = adv.converted, adv.exited
        if ev.circuit is not None:  # tripped during evaluation: nobody enrolled, the playbook is held
            self.paused, self.why_paused = Reason.CIRCUIT_OPEN.value, f"{ev.circuit}; nobody enrolled"


def merge(summaries: dict[str, PlaybookSummary], result: DispatchResult) -> None:
    """Add a dispatch batch's counts to the per-playbook summaries."""
    for field, counts in (
        ("emails", result.emails),
        ("tasks", result.tasks),
        ("failed", result.failed),
        ("deferred", result.deferred),
        ("skipped", result.skipped),
    ):
        for pid, n in counts.items():
            summary = summaries.setdefault(pid, PlaybookSummary(pid))
            setattr(summary, field, getattr(summary, field) + n)


def describe_error(exc: BaseException) -> str:
    """One line saying what failed: the exception's class and first line (the driver's own for a
    database error, without the SQL and parameters SQLAlchemy appends)."""
    inner = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(inner).strip().splitlines()
    message = f"{type(inner).__name__}: {lines[0]}" if lines else type(inner).__name__
    return message if len(message) <= 500 else message[:499] + "…"
