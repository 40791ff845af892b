"""`touchflow experiments`: every email experiment's arms, measured and compared with the control.

Each recipient of an email step with an experiment has one ledger row whose `variant` is the arm
the subject was assigned to (holdout arms too: their rows are `held_out` and send nothing). Per
arm of one experiment:

* enrolled — distinct enrollments with a row in the step, whatever became of the row (sent,
  skipped, failed, held out);
* sent — rows with status `sent` (one per recipient);
* delivered, opened, clicked, unsubscribed, bounced — distinct sent messages (send keys) with at
  least one `delivered` / `open` / `click` / `unsubscribe` or `group_unsubscribe` / `bounce` or
  `dropped` message event. A message whose signed unsubscribe link was used counts as
  unsubscribed too: the link suppresses the address with an audit row (decision `suppressed`,
  reason `suppressed_unsubscribed`, the message's send key), not with a message event;
* converted — distinct enrollments of the arm whose status is `converted` and whose
  `ended_at - enrolled_at` is at most the goal's `within` (any conversion when the goal has no
  `within`; nothing converts in a playbook without a goal).

For the comparison (`engine.experiments.stats.compare`), the email metrics are rates over `sent`
and leave holdout arms out — they receive nothing; `converted` is a rate over `enrolled` and keeps
them: that is the lift of sending at all. When the control is itself a holdout, the first arm that
sends stands in as the control for the email metrics.

The metrics come from two set-based statements per experiment (GROUP BY variant), the same on
SQLite and PostgreSQL. The ledger does not record the experiment's id: after an experiment is
re-drawn (a new `id`), rows planned under the old id still count for the arm of the same name.
Rows whose arm is no longer in the playbook are left out, and named in `unknown_arms`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import ColumnElement, Connection, String, and_, case, distinct, false, func, literal, select, union_all

from engine.compile import CompiledPlaybook
from engine.compile.sql_functions import shifted
from engine.experiments.assign import experiment_id
from engine.experiments.stats import (
    ArmCounts,
    ArmResult,
    ExperimentReport,
    compare,
    format_percent,
    wilson_interval,
)
from engine.problems import did_you_mean
from engine.project import Project
from engine.spec import EmailStep
from engine.spec.steps import METRICS, Experiment
from engine.store.models import audit_log, enrollments, ledger, message_events
from engine.validate.project import playbook_files

__all__ = [
    "EMAIL_METRICS",
    "FIELDS",
    "METRICS",
    "ArmMetrics",
    "ExperimentResult",
    "ReportError",
    "compare_arms",
    "experiment_report",
    "find_playbook_file",
    "load_arm_metrics",
]

EMAIL_METRICS = ("delivered", "opened", "clicked", "unsubscribed", "bounced")
"""Metrics of the email itself: rates over the messages sent; holdout arms have none."""

EVENTS: dict[str, tuple[str, ...]] = {
    "delivered": ("delivered",),
    "opened": ("open",),
    "clicked": ("click",),
    "unsubscribed": ("unsubscribe", "group_unsubscribe"),
    "bounced": ("bounce", "dropped"),
}
"""The message events that count for each email metric."""

FIELDS = (
    "playbook",
    "step",
    "experiment",
    "metric",
    "declared",
    "arm",
    "is_control",
    "holdout",
    "n",
    "conversions",
    "rate",
    "ci_low",
    "ci_high",
    "lift_abs",
    "lift_rel",
    "p_value",
    "p_value_holm",
    "significant",
    "verdict",
    "status",
    "winner",
    "min_sample",
    "summary",
)
"""The keys of every row (JSON) and the columns of the CSV, in order."""

NO_COMPARISON = "no_comparison"
"""The status of a metric with fewer than two arms to compare (e.g. one sending arm and a holdout)."""


class ReportError(ValueError):
    """The report cannot be made as asked (unknown playbook or metric); the message says why."""


@dataclass(frozen=True)
class ArmMetrics:
    """Every metric of one arm of one experiment, counted in subjects (enrollments): arms are
    assigned per subject, so `sent` is the subjects sent the email and `opened` those where any
    recipient opened it."""

    arm: str
    holdout: bool = False
    is_control: bool = False
    """The experiment's control (`control:`, else its first arm)."""
    enrolled: int = 0
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    bounced: int = 0
    converted: int = 0

    def n(self, metric: str) -> int:
        """The denominator of `metric`: enrolled for converted, else sent."""
        _check_metric(metric)
        return self.enrolled if metric == "converted" else self.sent

    def count(self, metric: str) -> int:
        """The numerator of `metric`."""
        _check_metric(metric)
        return int(getattr(self, metric))

    def rate(self, metric: str) -> float | None:
        """count / n, or None when n is 0 (or the arm is a holdout and `metric` is an email metric)."""
        if self.holdout and metric in EMAIL_METRICS:
            return None
        n = self.n(metric)
        return self.count(metric) / n if n else None


@dataclass(frozen=True)
class ExperimentResult:
    """One experiment compared on one metric."""

    playbook: str
    step: str
    experiment: str
    """The experiment's id (its own, else `<playbook>.<step>`)."""
    metric: str
    declared_metric: str
    """The metric the experiment itself names (`metric:`); `metric` may be another one."""
    control: str
    """The arm the others are compared with on this metric."""
    arms: tuple[ArmMetrics, ...]
    """Every arm of the experiment, in the playbook's order, holdouts included, with all metrics."""
    report: ExperimentReport
    """The comparison of the arms that take part in this metric (no holdouts on email metrics)."""
    note: str = ""
    """Anything the summary should add: a stand-in control, arms the playbook no longer has."""
    unknown_arms: tuple[str, ...] = ()

    @property
    def declared(self) -> bool:
        """Whether this is the experiment's own metric."""
        return self.metric == self.declared_metric

    @property
    def summary(self) -> str:
        """The plain-English summary, with the note."""
        return f"{self.report.summary} {self.note}".strip()

    def rows(self) -> list[dict[str, Any]]:
        """One dict per compared arm, with `FIELDS` as keys."""
        return [self._row(a) for a in self.report.arms]

    def _row(self, a: ArmResult) -> dict[str, Any]:
        return {
            "playbook": self.playbook,
            "step": self.step,
            "experiment": self.experiment,
            "metric": self.metric,
            "declared": self.declared,
            "arm": a.arm,
            "is_control": a.is_control,
            "holdout": a.holdout,
            "n": a.n,
            "conversions": a.conversions,
            "rate": a.rate,
            "ci_low": a.ci_low,
            "ci_high": a.ci_high,
            "lift_abs": a.lift_abs,
            "lift_rel": a.lift_rel,
            "p_value": a.p_value,
            "p_value_holm": a.p_value_holm,
            "significant": a.significant,
            "verdict": a.verdict,
            "status": self.report.status,
            "winner": self.report.winner,
            "min_sample": self.report.min_sample,
            "summary": self.summary,
        }


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ReportError(f"unknown metric '{metric}'{did_you_mean(metric, METRICS)}; metrics: {', '.join(METRICS)}")


def experiment_report(
    conn: Connection,
    project: Project,
    playbook_id: str | None = None,
    metric: str | None = None,
    alpha: float = 0.05,
) -> list[ExperimentResult]:
    """Every email experiment of the project's playbooks (or of `playbook_id` only), compared on
    its own metric, on `metric`, or on every metric (`metric="all"`; the experiment's own first).

    Raises ReportError for an unknown playbook or metric. A playbook without experiments gives [].
    """
    if metric is not None and metric != "all":
        _check_metric(metric)
    playbooks = list(project.playbooks)
    if playbook_id is not None:
        playbooks = [p for p in playbooks if p.id == playbook_id]
        if not playbooks:
            known = sorted(p.id for p in project.playbooks)
            raise ReportError(
                f"no playbook '{playbook_id}'{did_you_mean(playbook_id, known)}; known: {', '.join(known) or 'none'}"
            )
    results: list[ExperimentResult] = []
    for playbook in playbooks:
        for step in playbook.steps:
            spec = step.spec
            if not isinstance(spec, EmailStep) or spec.email.experiment is None:
                continue
            experiment = spec.email.experiment
            arms, unknown = load_arm_metrics(conn, playbook, step.id, experiment)
            if metric == "all":
                chosen = [experiment.metric, *(m for m in METRICS if m != experiment.metric)]
            else:
                chosen = [metric or experiment.metric]
            key = experiment_id(experiment, playbook.id, step.id)
            for m in chosen:
                results.append(compare_arms(playbook.id, step.id, key, experiment, arms, m, alpha, unknown))
    return results


def load_arm_metrics(
    conn: Connection, playbook: CompiledPlaybook, step: str, experiment: Experiment
) -> tuple[tuple[ArmMetrics, ...], tuple[str, ...]]:
    """Every arm's metrics (the playbook's arms, in order; zeros for arms without rows yet), and
    the arms found in the ledger that the experiment no longer has. Two statements."""
    in_step = and_(
        ledger.c.playbook_id == playbook.id,
        ledger.c.step_id == step,
        ledger.c.kind == "email",
        ledger.c.variant.is_not(None),
    )
    is_sent = ledger.c.status == "sent"
    counts: dict[str, dict[str, int]] = {}

    e = enrollments.c
    goal = playbook.spec.goal
    converted: ColumnElement[bool]
    if goal is None:
        converted = false()
    elif goal.within is None:
        converted = e.status == "converted"
    else:
        in_time = e.ended_at <= shifted(e.enrolled_at, int(goal.within.total_seconds()))
        converted = and_(e.status == "converted", in_time)
    people = (
        select(
            ledger.c.variant,
            func.count(distinct(ledger.c.enrollment_id)).label("enrolled"),
            # Per subject, the unit arms are assigned by: an account mailed at three roles is one
            # trial, not three independent ones (that would make the p-values too small).
            func.count(distinct(case((is_sent, ledger.c.enrollment_id)))).label("sent"),
            func.count(distinct(case((converted, e.id)))).label("converted"),
        )
        .select_from(ledger.outerjoin(enrollments, e.id == ledger.c.enrollment_id))
        .where(in_step)
        .group_by(ledger.c.variant)
    )
    for row in conn.execute(people):
        counts[row.variant] = {"enrolled": row.enrolled, "sent": row.sent, "converted": row.converted}

    wanted = sorted({name for names in EVENTS.values() for name in names})
    provider = select(message_events.c.send_key.label("send_key"), message_events.c.event.label("event")).where(
        message_events.c.event.in_(wanted)
    )
    # The signed unsubscribe link writes a suppression audit row, not a message event.
    via_link = select(audit_log.c.send_key.label("send_key"), literal("unsubscribe", String(30)).label("event")).where(
        audit_log.c.playbook_id == playbook.id,
        audit_log.c.step_id == step,
        audit_log.c.decision == "suppressed",
        audit_log.c.reason == "suppressed_unsubscribed",
        audit_log.c.send_key.is_not(None),
    )
    happened = union_all(provider, via_link).subquery("happened")
    engagement = (
        select(
            ledger.c.variant,
            *(
                func.count(distinct(case((happened.c.event.in_(names), ledger.c.enrollment_id)))).label(name)
                for name, names in EVENTS.items()
            ),
        )
        .select_from(ledger.join(happened, happened.c.send_key == ledger.c.send_key))
        .where(in_step, is_sent)
        .group_by(ledger.c.variant)
    )
    for row in conn.execute(engagement):
        counts.setdefault(row.variant, {}).update({name: getattr(row, name) for name in EVENTS})

    control = experiment.control_arm()
    arms = tuple(
        ArmMetrics(arm=a.id, holdout=a.holdout, is_control=a.id == control, **counts.get(a.id, {}))
        for a in experiment.arms
    )
    known = {a.id for a in experiment.arms}
    unknown = tuple(sorted(v for v in counts if v not in known))
    return arms, unknown


def compare_arms(
    playbook: str,
    step: str,
    key: str,
    experiment: Experiment,
    arms: Sequence[ArmMetrics],
    metric: str,
    alpha: float = 0.05,
    unknown: Sequence[str] = (),
) -> ExperimentResult:
    """Compare `arms` (every arm of `experiment`, with its metrics) on `metric` with `stats.compare`:
    holdout arms are left out of the email metrics; when the control is a holdout, the first arm
    that sends stands in for it there; fewer than two arms left gives status `no_comparison`."""
    _check_metric(metric)
    arms = tuple(arms)
    unknown = tuple(unknown)
    notes: list[str] = []
    declared_control = experiment.control_arm()
    taking_part = [a for a in arms if not (a.holdout and metric in EMAIL_METRICS)]
    control = declared_control
    if metric in EMAIL_METRICS and taking_part and all(a.arm != declared_control for a in taking_part):
        control = taking_part[0].arm
        notes.append(
            f"The control (arm {declared_control}) is a holdout and is sent nothing, "
            f"so arm {control} stands in as the control for {metric}."
        )
    if unknown:
        listed = ", ".join(unknown)
        notes.append(f"Left out: ledger rows of arms the playbook no longer has ({listed}).")
    if len(taking_part) >= 2:
        report = compare(
            [ArmCounts(a.arm, a.n(metric), a.count(metric), a.arm == control, a.holdout) for a in taking_part],
            metric,
            alpha,
            experiment.min_sample,
        )
    else:
        report = _nothing_to_compare(taking_part, arms, metric, alpha, experiment.min_sample)
    return ExperimentResult(
        playbook=playbook,
        step=step,
        experiment=key,
        metric=metric,
        declared_metric=experiment.metric,
        control=control if taking_part else declared_control,
        arms=arms,
        report=report,
        note=" ".join(notes),
        unknown_arms=unknown,
    )


def _nothing_to_compare(
    taking_part: Sequence[ArmMetrics], arms: Sequence[ArmMetrics], metric: str, alpha: float, min_sample: int
) -> ExperimentReport:
    """A report without a comparison: a single arm sends email (the others are holdouts), or none."""
    results = []
    for a in taking_part:
        n, k = a.n(metric), a.count(metric)
        low, high = wilson_interval(k, n, alpha)
        rate = k / n if n else 0.0
        observed = (
            f"{format_percent(rate)} {metric} ({format_percent(1 - alpha)} CI {format_percent(low)} to "
            f"{format_percent(high)})"
        )
        verdict = f"The only arm sent email: {observed}; nothing to compare it with."
        results.append(
            ArmResult(a.arm, True, a.holdout, n, k, rate, low, high, None, None, None, None, None, False, verdict)
        )
    holdouts = ", ".join(a.arm for a in arms if a.holdout)
    if taking_part:
        summary = (
            f"Only arm {taking_part[0].arm} is sent email, so there is no {metric} rate to compare it with; "
            f"the holdout ({holdouts}) counts for converted only."
        )
    else:
        summary = f"No arm is sent email (all are holdouts), so there is no {metric} rate; compare on converted."
    return ExperimentReport(metric, alpha, min_sample, results, NO_COMPARISON, summary, None)


# --- finding a playbook's file --------------------------------------------------------------------


def find_playbook_file(playbooks_dir: Path, playbook_id: str) -> Path:
    """The file under `playbooks_dir` whose top-level `id:` is `playbook_id`; read without
    validating the other playbooks (one broken file does not stop a promote of another). A path
    to a playbook file is accepted as it is. Raises ReportError when none or several match."""
    given = Path(playbook_id)
    if given.suffix in (".yaml", ".yml") and given.is_file():
        return given
    found: list[Path] = []
    known: set[str] = set()
    for path in playbook_files([playbooks_dir]) if playbooks_dir.is_dir() else []:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            known.add(data["id"])
            if data["id"] == playbook_id:
                found.append(path)
    if not found:
        raise ReportError(
            f"no playbook '{playbook_id}' in {playbooks_dir}{did_you_mean(playbook_id, known)}; "
            f"known: {', '.join(sorted(known)) or 'none'}"
        )
    if len(found) > 1:
        raise ReportError(
            f"playbook id '{playbook_id}' is used by {len(found)} files: {', '.join(map(str, found))}; "
            "give the file's path instead"
        )
    return found[0]
