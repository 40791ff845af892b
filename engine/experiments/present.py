"""How `touchflow experiments` shows a report to a person: labels, rates, intervals, lifts.

Pure text formatting over `engine.experiments.report`'s results; the numbers are computed there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from engine.experiments.report import EMAIL_METRICS, ExperimentResult
from engine.experiments.stats import format_percent
from engine.output import Layout


def all_rows(results: Iterable[ExperimentResult]) -> Iterator[dict[str, Any]]:
    """Every row of every result, in order."""
    for result in results:
        yield from result.rows()


def arm_label(arm: str, is_control: bool, holdout: bool) -> str:
    """`a (control)`, `holdout (holdout)`."""
    tags = [t for t, on in (("control", is_control), ("holdout", holdout)) if on]
    return f"{arm} ({', '.join(tags)})" if tags else arm


def ci_text(low: float, high: float) -> str:
    """`41.2% – 48.9%`."""
    return f"{format_percent(low)} – {format_percent(high)}"


def lift_text(lift_abs: float | None, lift_rel: float | None) -> str:
    """`+3.5 pts (+12.1%)`; `—` for the control."""
    if lift_abs is None:
        return "—"
    points = format_percent(lift_abs, signed=True).removesuffix("%")
    relative = f" ({format_percent(lift_rel, signed=True)})" if lift_rel is not None else ""
    return f"{points} pts{relative}"


def p_text(p: float | None) -> str:
    """`0.012`, `< 0.001`; `—` for the control."""
    if p is None:
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def rate_text(count: int, n: int, applies: bool = True) -> str:
    """count / n as a percentage; `—` when there is no denominator (or the metric does not apply)."""
    return format_percent(count / n) if applies and n else "—"


OVERVIEW_COLUMNS = ("arm", "enrolled", "sent", *EMAIL_METRICS, "converted")
"""The columns of the every-metric table: counts for enrolled and sent, rates for the rest."""

ARMS_COLUMNS = ("arm", "n", "conversions", "rate", "95% CI", "lift vs control", "p (Holm)", "verdict")
"""The columns of the comparison on the experiment's metric."""

ARMS_LAYOUT = Layout(
    columns=ARMS_COLUMNS,
    heading=("arm",),
    numeric=frozenset({"n", "conversions", "rate", "p (Holm)"}),
    detail="verdict",
    labels={"verdict": "verdict"},
)
"""The comparison: a table, or per arm a block whose verdict has a line of its own."""

OVERVIEW_LAYOUT = Layout(columns=OVERVIEW_COLUMNS, heading=("arm",), numeric=frozenset(OVERVIEW_COLUMNS[1:]))
"""Every metric per arm: a table, or per arm a block of `metric rate` pairs."""


def arm_rows(result: ExperimentResult) -> list[dict[str, str]]:
    """The comparison's rows as text, one per compared arm."""
    return [
        {
            "arm": arm_label(a.arm, a.is_control, a.holdout),
            "n": str(a.n),
            "conversions": str(a.conversions),
            "rate": rate_text(a.conversions, a.n),
            "95% CI": ci_text(a.ci_low, a.ci_high),
            "lift vs control": lift_text(a.lift_abs, a.lift_rel),
            "p (Holm)": p_text(a.p_value_holm),
            "verdict": a.verdict,
        }
        for a in result.report.arms
    ]


def overview(result: ExperimentResult) -> list[dict[str, str]]:
    """Every metric's rate per arm, as text: the second table of the report."""
    rows = []
    for a in result.arms:
        row = {"arm": arm_label(a.arm, a.is_control, a.holdout), "enrolled": str(a.enrolled), "sent": str(a.sent)}
        for m in EMAIL_METRICS:
            row[m] = rate_text(a.count(m), a.sent, applies=not a.holdout)
        row["converted"] = rate_text(a.converted, a.enrolled)
        rows.append(row)
    return rows


def heading(result: ExperimentResult) -> str:
    """`anniversary / thanks — experiment anniversary.thanks, opened (the experiment's metric)`."""
    which = (
        " (the experiment's metric)" if result.declared else f" (the experiment's metric is {result.declared_metric})"
    )
    return f"{result.playbook} / {result.step} — experiment {result.experiment}: {result.metric}{which}"
