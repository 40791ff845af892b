"""Statistics for A/B experiments: pure functions of counts, standard library only.

Each arm of an experiment is reduced to two counts for one metric: `n`, the subjects in the
denominator (sent, or enrolled for a conversion metric), and `conversions`, the subjects with
the metric (opened, clicked, converted, unsubscribed, ...). `compare` turns those counts into a
report a marketer can read:

* every arm gets its rate and a Wilson score interval (the interval at level 1 - alpha);
* every non-control arm is compared with the control by a two-sided, pooled two-proportion
  z-test, and the p-values of those comparisons are Holm-corrected together, so that adding
  arms does not add false winners;
* the stopping rule below turns the numbers into a status and a winner.

Stopping rule
-------------
No verdict is given until EVERY arm, the control included, has at least `min_sample` subjects.
Until then the status is "not_enough_data", there is no winner, no arm is marked significant, and
each arm's verdict says how many more subjects it needs; rates, intervals and p-values are still
computed and shown, with that caveat. Once every arm has reached the minimum:

* "winner": at least one arm is significantly better than the control (Holm-adjusted p < alpha);
  the winner is the significantly better arm with the best rate (ties: the first in input order);
* "control_wins": no arm is significantly better, and at least one is significantly worse;
  the winner is the control;
* "no_difference": no arm differs significantly from the control; there is no winner.

"Better" means a higher rate, except for metrics where lower is better (unsubscribed, bounced,
spamreport by default), where it means a lower rate. Holdout arms are ordinary arms here: compared
with a sending control on a conversion metric, they measure the lift of sending at all.

The minimum sample only stops verdicts on tiny samples; it is not a sequential design. Looking at
the report every day after the minimum and stopping at the first significant result still
inflates the false-positive rate, so fix the sample size (or the end date) in advance when the
decision matters.

The module deliberately avoids numpy/scipy: the normal quantile comes from
`statistics.NormalDist` and the normal tail from `math.erfc`. The results agree with statsmodels
(`proportion_confint(method="wilson")`, `proportions_ztest`, `multipletests(method="holm")`) to
about 1e-12; the tests check this. Degenerate inputs (no subjects, a pooled rate of 0 or 1) give
defined values here where statsmodels returns NaN.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

__all__ = [
    "LOWER_IS_BETTER_METRICS",
    "ArmCounts",
    "ArmResult",
    "ExperimentReport",
    "compare",
    "format_percent",
    "holm",
    "two_proportion_ztest",
    "wilson_interval",
]

# Metrics where a smaller rate is the good outcome; `compare` uses it as the default direction.
LOWER_IS_BETTER_METRICS = frozenset({"unsubscribed", "bounced", "spamreport"})

_STANDARD_NORMAL = NormalDist()


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:  # also rejects NaN
        raise ValueError(f"alpha must be between 0 and 1 (exclusive), got {alpha!r}")


def _check_counts(successes: int, n: int, what: str = "") -> None:
    prefix = f"{what}: " if what else ""
    if n < 0:
        raise ValueError(f"{prefix}n must not be negative, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"{prefix}successes must be between 0 and n={n}, got {successes}")


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """The Wilson score interval at level 1 - alpha for `successes` out of `n`.

    Equal to statsmodels' `proportion_confint(successes, n, alpha=alpha, method="wilson")`, and like
    it clipped to [0, 1]. With n == 0 there is no information, so the interval is the whole range
    (0.0, 1.0); statsmodels returns (nan, nan) there. Raises ValueError for negative counts,
    successes > n, or alpha outside (0, 1).
    """
    _check_alpha(alpha)
    _check_counts(successes, n)
    if n == 0:
        return (0.0, 1.0)
    # -inv_cdf(alpha/2) rather than inv_cdf(1 - alpha/2): `1 - alpha/2` rounds away most of a tiny
    # alpha's digits, while the lower tail keeps them (this is statsmodels' norm.isf(alpha/2)).
    crit = -_STANDARD_NORMAL.inv_cdf(alpha / 2.0)
    crit2 = crit * crit
    q = successes / n
    # Same operations in the same order as statsmodels, so the two agree to the last few ulps.
    denom = 1.0 + crit2 / n
    center = (q + crit2 / (2.0 * n)) / denom
    dist = crit * math.sqrt(q * (1.0 - q) / n + crit2 / (4.0 * n * n)) / denom
    # Mathematically inside [0, 1], but rounding can step just outside; statsmodels clips the same
    # way. At the edges the bound is exactly 0 (successes == 0) or 1 (successes == n), where
    # rounding can leave 1 - 2e-16, which would put the observed rate outside its own interval;
    # there we return the exact value (statsmodels does not, a difference of one ulp).
    low = 0.0 if successes == 0 else min(max(center - dist, 0.0), 1.0)
    high = 1.0 if successes == n else min(max(center + dist, 0.0), 1.0)
    return (low, high)


def two_proportion_ztest(s1: int, n1: int, s2: int, n2: int) -> tuple[float, float]:
    """The pooled two-proportion z-test of s1/n1 against s2/n2: (z, two-sided p-value).

    z is positive when the first proportion is the larger. Equal to statsmodels'
    `proportions_ztest([s1, s2], [n1, n2])` (pooled variance, two-sided, value 0) wherever that is
    finite.

    Degenerate inputs: when n1 or n2 is 0, or the pooled proportion is 0 or 1 (no conversions at
    all, or nothing but conversions), the standard error is 0 and there is nothing to tell the two
    groups apart, so the result is z = 0.0, p = 1.0. statsmodels returns (nan, nan) there; a NaN
    would make every comparison with it false and could not be Holm-corrected, so we choose the
    value that means "no evidence of a difference". Raises ValueError for negative counts or
    successes > n.
    """
    _check_counts(s1, n1, "first group")
    _check_counts(s2, n2, "second group")
    if n1 == 0 or n2 == 0:
        return (0.0, 1.0)
    pooled = (s1 + s2) / (n1 + n2)
    variance = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)
    if variance <= 0.0:  # pooled proportion 0 or 1: both groups are identical, all 0s or all 1s
        return (0.0, 1.0)
    z = (s1 / n1 - s2 / n2) / math.sqrt(variance)
    # 2 * P(Z > |z|) = erfc(|z| / sqrt 2); erfc keeps its relative precision far into the tail,
    # where 1 - cdf(|z|) would round to 0.
    return (z, math.erfc(abs(z) / math.sqrt(2.0)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order of the input.

    Equal to statsmodels' `multipletests(p_values, method="holm")[1]`. The i-th smallest of m
    p-values is multiplied by m - i + 1 (i from 1), capped at 1, and made non-decreasing in that
    order, so an adjusted p-value is never below that of a smaller raw one. Empty input gives [].
    Raises ValueError for a value outside [0, 1] (or NaN).
    """
    for p in p_values:
        if not 0.0 <= p <= 1.0:  # also rejects NaN
            raise ValueError(f"p-values must be between 0 and 1, got {p!r}")
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        # Tied p-values end up with the same adjusted value whatever their order, since the
        # running maximum carries the first (larger-multiplier) one over the rest.
        running = max(running, min(1.0, p_values[index] * (m - rank)))
        adjusted[index] = running
    return adjusted


def format_percent(x: float, *, signed: bool = False) -> str:
    """A proportion as a percentage with at most two decimals: 0.05 -> "5%", 0.1234 -> "12.34%".

    With `signed`, positive values get a "+" (for lifts). Values that round to zero print as "0%".
    """
    text = f"{x * 100:.2f}".rstrip("0").rstrip(".")
    if text in ("0", "-0"):
        return "0%"
    if signed and not text.startswith("-"):
        text = "+" + text
    return text + "%"


@dataclass(frozen=True)
class ArmCounts:
    """The counts of one experiment arm for one metric."""

    arm: str
    n: int  # subjects in the denominator for the metric (e.g. sent, or enrolled for conversion)
    conversions: int  # subjects with the metric (opened, clicked, converted, ...)
    is_control: bool = False
    holdout: bool = False


@dataclass(frozen=True)
class ArmResult:
    """One arm of an `ExperimentReport`: its rate, interval and comparison with the control."""

    arm: str
    is_control: bool
    holdout: bool
    n: int
    conversions: int
    rate: float  # conversions / n, 0.0 when n == 0
    ci_low: float  # Wilson interval at level 1 - alpha (per arm, not corrected for multiplicity)
    ci_high: float
    lift_abs: float | None  # rate - control rate; None for the control itself
    lift_rel: float | None  # (rate - control) / control; None for the control or when the control rate is 0
    z: float | None  # positive when this arm's rate is above the control's; None for the control
    p_value: float | None  # two-sided, against the control; None for the control
    p_value_holm: float | None  # Holm-adjusted over the non-control arms; None for the control
    significant: bool  # p_value_holm < alpha and every arm has enough data; False for the control
    verdict: str  # plain English for a marketer


@dataclass(frozen=True)
class ExperimentReport:
    """The comparison of all arms of an experiment on one metric; see the module docstring."""

    metric: str
    alpha: float
    min_sample: int
    arms: list[ArmResult]
    status: str  # "not_enough_data" | "no_difference" | "winner" | "control_wins" (stable codes)
    summary: str  # one plain-English sentence
    winner: str | None


def _subjects(k: int, more: bool = False) -> str:
    return f"{k} {'more ' if more else ''}{'subject' if k == 1 else 'subjects'}"


def _points(difference: float) -> str:
    """A difference of two rates in percentage points: +10 percentage points, -1 percentage point."""
    number = format_percent(difference, signed=True).removesuffix("%")
    return f"{number} percentage point" if number.lstrip("+-") == "1" else f"{number} percentage points"


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _format_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _validate(arms: Sequence[ArmCounts], alpha: float, min_sample: int) -> ArmCounts:
    """Check the inputs of `compare`; returns the control arm."""
    _check_alpha(alpha)
    if min_sample < 0:
        raise ValueError(f"min_sample must not be negative, got {min_sample}")
    if not arms:
        raise ValueError("an experiment needs arms to compare, got none")
    duplicates = sorted(name for name, count in Counter(a.arm for a in arms).items() if count > 1)
    if duplicates:
        raise ValueError(f"arm names must be unique; repeated: {', '.join(duplicates)}")
    for a in arms:
        if a.n < 0:
            raise ValueError(f"arm {a.arm}: n must not be negative, got {a.n}")
        if not 0 <= a.conversions <= a.n:
            raise ValueError(f"arm {a.arm}: conversions must be between 0 and n={a.n}, got {a.conversions}")
    controls = [a.arm for a in arms if a.is_control]
    if len(controls) != 1:
        found = f"{len(controls)} ({', '.join(controls)})" if controls else "none"
        raise ValueError(f"exactly one arm must be the control (is_control=True); found {found}")
    if len(arms) < 2:
        raise ValueError(f"an experiment needs at least one arm besides the control {controls[0]}")
    return next(a for a in arms if a.is_control)


def compare(
    arms: Sequence[ArmCounts],
    metric: str,
    alpha: float = 0.05,
    min_sample: int = 100,
    *,
    lower_is_better: bool | None = None,
) -> ExperimentReport:
    """Compare every arm with the control on `metric` and apply the stopping rule.

    Each non-control arm is tested against the control with `two_proportion_ztest`, and the
    p-values are Holm-corrected together. No arm is significant and there is no winner until every
    arm, the control included, has `n >= min_sample` (status "not_enough_data"); after that the
    status is "winner", "control_wins" or "no_difference" as described in the module docstring.
    `lower_is_better` defaults to `metric in LOWER_IS_BETTER_METRICS`.

    Raises ValueError unless exactly one arm is the control, arm names are unique, there is at
    least one other arm, the counts are consistent (0 <= conversions <= n), 0 < alpha < 1 and
    min_sample >= 0.
    """
    control = _validate(arms, alpha, min_sample)
    if lower_is_better is None:
        lower_is_better = metric in LOWER_IS_BETTER_METRICS
    level = format_percent(alpha)
    ci_level = format_percent(1.0 - alpha)

    def rate_of(a: ArmCounts) -> float:
        return a.conversions / a.n if a.n else 0.0

    def is_better(rate: float, than: float) -> bool:
        return rate < than if lower_is_better else rate > than

    control_rate = rate_of(control)
    others = [a for a in arms if not a.is_control]
    # Arm first, control second: z > 0 means the arm's rate is above the control's.
    tests = {a.arm: two_proportion_ztest(a.conversions, a.n, control.conversions, control.n) for a in others}
    adjusted = dict(zip(tests, holm([p for _, p in tests.values()]), strict=True))
    enough = all(a.n >= min_sample for a in arms)

    def significant(a: ArmCounts) -> bool:
        return enough and not a.is_control and adjusted[a.arm] < alpha

    better = [a for a in others if significant(a) and is_better(rate_of(a), control_rate)]
    worse = [a for a in others if significant(a) and not is_better(rate_of(a), control_rate)]

    winner: str | None
    if not enough:
        status, winner = "not_enough_data", None
        short = [a for a in arms if a.n < min_sample]
        summary = (
            f"Not enough data yet: {_join([f'arm {a.arm} has {a.n}' for a in short])}"
            f" of the {_subjects(min_sample)} needed."
        )
    elif better:
        # min/max return the first of equal rates, i.e. ties go to the earlier arm in the input.
        best = (min if lower_is_better else max)(better, key=rate_of)
        status, winner = "winner", best.arm
        direction = " (lower is better)" if lower_is_better else ""
        summary = (
            f"Arm {best.arm} wins: {format_percent(rate_of(best))} {metric} vs {format_percent(control_rate)}"
            f" for the control (arm {control.arm}), {_points(rate_of(best) - control_rate)}{direction},"
            f" significant at the {level} level (Holm-corrected)."
        )
    elif worse:
        status, winner = "control_wins", control.arm
        verb = "is" if len(worse) == 1 else "are"
        summary = (
            f"The control (arm {control.arm}) wins: no arm beats it, and"
            f" {_join([f'arm {a.arm}' for a in worse])} {verb} significantly worse"
            f" at the {level} level (Holm-corrected)."
        )
    else:
        status, winner = "no_difference", None
        summary = f"No arm differs from the control at the {level} level (Holm-corrected); keep collecting or stop."

    def verdict(a: ArmCounts, low: float, high: float) -> str:
        rate = rate_of(a)
        observed = f"{format_percent(rate)} {metric} ({ci_level} CI {format_percent(low)} to {format_percent(high)})"
        if not enough:
            if a.n < min_sample:
                need = _subjects(min_sample - a.n, more=True)
                wait = f"Not enough data yet: needs {need} (has {a.n} of {min_sample})."
            else:
                wait = f"Has the {_subjects(min_sample)} needed; waiting for the other arms."
            return f"{wait} So far {observed}; too early to conclude."
        if a.is_control:
            outcome = {
                "winner": f"arm {winner} beats it",
                "control_wins": "no arm beats it and at least one is significantly worse, so keep the control",
                "no_difference": "no arm differs significantly from it",
            }[status]
            return f"Control: {observed}; {outcome}."
        versus = (
            f"{observed} vs {format_percent(control_rate)} for the control,"
            f" {_points(rate - control_rate)}"
            f" (Holm-adjusted {_format_p(adjusted[a.arm])})"
        )
        if not significant(a):
            return f"No clear difference from the control: {versus}; the gap could be chance."
        if not is_better(rate, control_rate):
            return f"Worse than the control: {versus}."
        if a.arm == winner:
            return f"Winner, better than the control: {versus}."
        return f"Better than the control: {versus}, but arm {winner} did better still."

    results: list[ArmResult] = []
    for a in arms:
        rate = rate_of(a)
        low, high = wilson_interval(a.conversions, a.n, alpha)
        lift_abs: float | None = None
        lift_rel: float | None = None
        z: float | None = None
        p_value: float | None = None
        p_holm: float | None = None
        if not a.is_control:
            lift_abs = rate - control_rate
            lift_rel = lift_abs / control_rate if control_rate else None
            z, p_value = tests[a.arm]
            p_holm = adjusted[a.arm]
        results.append(
            ArmResult(
                arm=a.arm,
                is_control=a.is_control,
                holdout=a.holdout,
                n=a.n,
                conversions=a.conversions,
                rate=rate,
                ci_low=low,
                ci_high=high,
                lift_abs=lift_abs,
                lift_rel=lift_rel,
                z=z,
                p_value=p_value,
                p_value_holm=p_holm,
                significant=significant(a),
                verdict=verdict(a, low, high),
            )
        )
    return ExperimentReport(
        metric=metric,
        alpha=alpha,
        min_sample=min_sample,
        arms=results,
        status=status,
        summary=summary,
        winner=winner,
    )
