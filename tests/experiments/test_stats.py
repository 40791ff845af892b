"""The experiment statistics agree with statsmodels, and `compare` applies the stopping rule.

statsmodels is the reference implementation here only; the engine computes with the standard library.
Hypothesis runs derandomized (a fixed sequence of examples, no example database) so CI is stable.
"""

from __future__ import annotations

import gc
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, event, example, given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from engine.experiments.stats import (
    ArmCounts,
    compare,
    format_percent,
    holm,
    two_proportion_ztest,
    wilson_interval,
)

# deadline=None: the first statsmodels call imports submodules lazily and would trip the default deadline.
DETERMINISTIC = settings(derandomize=True, max_examples=200, database=None, deadline=None)
TOL = 1e-9
ALPHAS = st.one_of(st.sampled_from([0.001, 0.01, 0.05, 0.1, 0.2]), st.floats(1e-6, 0.9))


@contextmanager
def quiet_numpy() -> Iterator[None]:
    """statsmodels divides by zero on degenerate input; we only want its return value."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def statsmodels_holm(p_values: list[float]) -> list[float]:
    """statsmodels' Holm-adjusted p-values, as floats."""
    # multipletests(method="holm") calls gc.collect() on every call: 50-100 ms under pytest, which
    # made these property tests take 40 s. The collection cannot change the result, so skip it.
    with mock.patch.object(gc, "collect", return_value=0):
        return [float(x) for x in multipletests(p_values, method="holm")[1]]


@st.composite
def successes_of(draw: Callable[..., Any], max_n: int = 100_000) -> tuple[int, int]:
    """(successes, n) with n >= 1, hitting the edges 0 and n often."""
    n = draw(st.one_of(st.integers(1, 30), st.integers(1, max_n)))
    successes = draw(st.one_of(st.just(0), st.just(n), st.integers(0, n)))
    return successes, n


@st.composite
def two_groups(draw: Callable[..., Any]) -> tuple[int, int, int, int]:
    """(s1, n1, s2, n2): independent counts, or a second group near the first's rate (moderate p-values)."""
    s1, n1 = draw(successes_of())
    n2 = draw(st.one_of(st.integers(1, 30), st.integers(1, 100_000)))
    if draw(st.booleans()):
        s2 = draw(st.integers(0, n2))
    else:
        spread = max(1, round(3 * math.sqrt(n2)))
        s2 = min(n2, max(0, round(s1 / n1 * n2) + draw(st.integers(-spread, spread))))
    return s1, n1, s2, n2


# ---------------------------------------------------------------- Wilson


@DETERMINISTIC
@given(successes_of(), ALPHAS)
@example((0, 1), 0.05)
@example((1, 1), 0.05)
@example((0, 1000), 0.01)
@example((1000, 1000), 0.01)
@example((0, 100_000), 1e-6)
@example((100_000, 100_000), 0.5)
def test_wilson_matches_statsmodels(counts: tuple[int, int], alpha: float) -> None:
    successes, n = counts
    low, high = wilson_interval(successes, n, alpha)
    ref_low, ref_high = proportion_confint(successes, n, alpha=alpha, method="wilson")
    assert low == pytest.approx(ref_low, abs=TOL)
    assert high == pytest.approx(ref_high, abs=TOL)
    assert 0.0 <= low <= successes / n <= high <= 1.0


def test_wilson_edges_are_exact() -> None:
    assert wilson_interval(0, 50)[0] == 0.0
    assert wilson_interval(50, 50)[1] == 1.0


def test_wilson_with_no_subjects_is_the_whole_range_where_statsmodels_gives_nan() -> None:
    # Deliberate difference: no data means every rate is possible, and a NaN would poison the report.
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with quiet_numpy():
        assert all(math.isnan(x) for x in proportion_confint(0, 0, method="wilson"))


@pytest.mark.parametrize(("successes", "n", "alpha"), [(-1, 10, 0.05), (11, 10, 0.05), (0, -1, 0.05), (1, 10, 0.0)])
def test_wilson_rejects_bad_input(successes: int, n: int, alpha: float) -> None:
    with pytest.raises(ValueError):
        wilson_interval(successes, n, alpha)


# ---------------------------------------------------------------- z-test


@DETERMINISTIC
@given(two_groups())
@example((1, 10, 0, 10))
@example((100, 1000, 200, 1000))
@example((0, 1, 1, 1))
@example((5, 83, 12, 99))  # the example of statsmodels' docstring: p = 0.159
def test_ztest_matches_statsmodels(groups: tuple[int, int, int, int]) -> None:
    s1, n1, s2, n2 = groups
    assume(0 < s1 + s2 < n1 + n2)  # a zero standard error is the degenerate case, tested below
    z, p = two_proportion_ztest(s1, n1, s2, n2)
    ref_z, ref_p = proportions_ztest([s1, s2], [n1, n2])
    assert z == pytest.approx(float(ref_z), rel=TOL, abs=TOL)
    # relative as well as absolute: tiny p-values must keep their digits (erfc does, 1 - cdf would not)
    assert p == pytest.approx(float(ref_p), rel=TOL, abs=1e-300)
    assert 0.0 <= p <= 1.0
    assert (z > 0) == (s1 / n1 > s2 / n2)


@pytest.mark.parametrize(
    ("s1", "n1", "s2", "n2"),
    [
        (0, 10, 0, 20),  # pooled proportion 0
        (10, 10, 20, 20),  # pooled proportion 1
        (0, 0, 5, 10),  # first group empty
        (5, 10, 0, 0),  # second group empty
        (0, 0, 0, 0),
    ],
)
def test_ztest_degenerate_is_no_evidence_where_statsmodels_gives_nan(s1: int, n1: int, s2: int, n2: int) -> None:
    # Deliberate difference: statsmodels returns (nan, nan) when the standard error is 0; we return
    # z = 0, p = 1 ("nothing to distinguish") so Holm and the comparisons downstream stay defined.
    assert two_proportion_ztest(s1, n1, s2, n2) == (0.0, 1.0)
    with quiet_numpy():
        ref_z, ref_p = proportions_ztest([s1, s2], [n1, n2])
    assert math.isnan(ref_z)
    assert math.isnan(ref_p)


@pytest.mark.parametrize(("s1", "n1", "s2", "n2"), [(-1, 10, 1, 10), (11, 10, 1, 10), (1, 10, 1, -1)])
def test_ztest_rejects_bad_input(s1: int, n1: int, s2: int, n2: int) -> None:
    with pytest.raises(ValueError):
        two_proportion_ztest(s1, n1, s2, n2)


# ---------------------------------------------------------------- Holm

P_VALUE = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1e-6, 0.01, 0.025, 0.05, 0.5, 1.0]))


@DETERMINISTIC
@given(st.lists(P_VALUE, min_size=1, max_size=8))
@example([0.01, 0.04, 0.03, 0.5])
@example([0.05, 0.05, 0.05])  # ties
@example([1.0, 0.9])
def test_holm_matches_statsmodels(p_values: list[float]) -> None:
    ours = holm(p_values)
    assert ours == pytest.approx(statsmodels_holm(p_values), abs=1e-12)
    assert all(a >= p for a, p in zip(ours, p_values, strict=True))


def test_holm_of_nothing_is_nothing() -> None:
    assert holm([]) == []


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan])
def test_holm_rejects_values_that_are_not_probabilities(bad: float) -> None:
    with pytest.raises(ValueError):
        holm([0.1, bad])


# ---------------------------------------------------------------- compare


def test_not_enough_data_gives_no_verdict_even_for_a_huge_effect() -> None:
    report = compare(
        [ArmCounts("a", 500, 50, is_control=True), ArmCounts("b", 40, 40)],
        "clicked",
    )
    assert report.status == "not_enough_data"
    assert report.winner is None
    assert report.summary == "Not enough data yet: arm b has 40 of the 100 subjects needed."
    control, b = report.arms
    assert not control.significant and not b.significant
    # the p-values are computed and would be significant; the stopping rule alone withholds the verdict
    assert b.p_value_holm is not None and b.p_value_holm < 1e-6
    assert "needs 60 more subjects" in b.verdict and "40 of 100" in b.verdict
    assert "waiting for the other arms" in control.verdict
    # rates and intervals are shown with the caveat
    assert (b.rate, b.ci_low, b.ci_high) == (1.0, *wilson_interval(40, 40))
    assert (control.rate, control.ci_low, control.ci_high) == (0.1, *wilson_interval(50, 500))


def test_not_enough_data_counts_the_control_too() -> None:
    report = compare(
        [ArmCounts("b", 150, 30), ArmCounts("ctl", 99, 10, is_control=True), ArmCounts("c", 1, 0)],
        "opened",
    )
    assert report.status == "not_enough_data"
    assert report.summary == "Not enough data yet: arm ctl has 99 and arm c has 1 of the 100 subjects needed."
    assert "needs 1 more subject " in report.arms[1].verdict
    assert "needs 99 more subjects" in report.arms[2].verdict


def test_no_difference() -> None:
    report = compare(
        [ArmCounts("a", 1000, 100, is_control=True), ArmCounts("b", 1000, 108), ArmCounts("h", 1000, 97, holdout=True)],
        "converted",
    )
    assert report.status == "no_difference"
    assert report.winner is None
    assert report.summary == (
        "No arm differs from the control at the 5% level (Holm-corrected); keep collecting or stop."
    )
    assert not any(arm.significant for arm in report.arms)
    assert [arm.holdout for arm in report.arms] == [False, False, True]
    assert report.arms[2].verdict.startswith("No clear difference from the control")


def test_clear_winner() -> None:
    report = compare([ArmCounts("a", 1000, 100, is_control=True), ArmCounts("b", 1000, 200)], "clicked")
    assert report.status == "winner"
    assert report.winner == "b"
    control, b = report.arms
    assert control.is_control and not control.significant
    assert control.lift_abs is control.lift_rel is control.z is control.p_value is control.p_value_holm is None
    assert b.significant
    assert b.rate == 0.2
    assert b.lift_abs == pytest.approx(0.1)
    assert b.lift_rel == pytest.approx(1.0)
    assert b.z is not None and b.z > 0
    assert report.summary.startswith("Arm b wins: 20% clicked vs 10% for the control (arm a), +10 percentage points")
    assert b.verdict.startswith("Winner")


def test_the_winner_is_the_best_of_the_significantly_better_arms() -> None:
    report = compare(
        [
            ArmCounts("a", 1000, 100, is_control=True),
            ArmCounts("b", 1000, 150),
            ArmCounts("c", 1000, 210),
            ArmCounts("d", 1000, 60),
        ],
        "clicked",
    )
    assert report.status == "winner"
    assert report.winner == "c"
    assert [arm.significant for arm in report.arms] == [False, True, True, True]
    assert "arm c did better still" in report.arms[1].verdict
    assert report.arms[3].verdict.startswith("Worse than the control")


def test_lower_is_better_metric() -> None:
    arms = [ArmCounts("a", 1000, 30, is_control=True), ArmCounts("b", 1000, 8)]
    report = compare(arms, "unsubscribed")
    assert report.status == "winner"
    assert report.winner == "b"
    assert "(lower is better)" in report.summary
    # the same counts on a higher-is-better metric: the control wins
    assert compare(arms, "clicked").status == "control_wins"
    # and the direction can be given explicitly
    assert compare(arms, "unsubscribed", lower_is_better=False).status == "control_wins"
    assert compare(arms, "clicked", lower_is_better=True).winner == "b"


@pytest.mark.parametrize("metric", ["bounced", "spamreport"])
def test_other_lower_is_better_metrics(metric: str) -> None:
    report = compare([ArmCounts("a", 2000, 100, is_control=True), ArmCounts("b", 2000, 150)], metric)
    assert report.status == "control_wins"
    assert report.winner == "a"


def test_control_wins() -> None:
    report = compare(
        [ArmCounts("ctl", 1000, 200, is_control=True), ArmCounts("b", 1000, 100), ArmCounts("c", 1000, 195)],
        "clicked",
    )
    assert report.status == "control_wins"
    assert report.winner == "ctl"
    assert [arm.significant for arm in report.arms] == [False, True, False]
    assert report.summary == (
        "The control (arm ctl) wins: no arm beats it, and arm b is significantly worse"
        " at the 5% level (Holm-corrected)."
    )


def test_holm_decides_significance() -> None:
    # raw p ≈ 0.04 for both arms: significant alone, not after correcting for two comparisons
    control = ArmCounts("a", 2000, 200, is_control=True)
    arm = ArmCounts("b", 2000, 240)
    alone = compare([control, arm], "clicked")
    assert alone.arms[1].p_value is not None and 0.01 < alone.arms[1].p_value < 0.05
    assert alone.status == "winner"
    both = compare([control, arm, ArmCounts("c", 2000, 240)], "clicked")
    assert both.status == "no_difference"


def test_zero_control_rate_has_no_relative_lift() -> None:
    report = compare([ArmCounts("a", 200, 0, is_control=True), ArmCounts("b", 200, 20)], "converted")
    b = report.arms[1]
    assert b.lift_abs == 0.1
    assert b.lift_rel is None
    assert report.winner == "b"


def test_empty_arms_with_no_minimum() -> None:
    report = compare([ArmCounts("a", 0, 0, is_control=True), ArmCounts("b", 0, 0)], "opened", min_sample=0)
    assert report.status == "no_difference"
    assert [(arm.rate, arm.ci_low, arm.ci_high) for arm in report.arms] == [(0.0, 0.0, 1.0)] * 2
    assert report.arms[1].p_value == 1.0


@pytest.mark.parametrize(
    ("arms", "message"),
    [
        ([ArmCounts("a", 10, 1), ArmCounts("b", 10, 1)], "exactly one arm must be the control"),
        (
            [ArmCounts("a", 10, 1, is_control=True), ArmCounts("b", 10, 1, is_control=True)],
            "exactly one arm must be the control",
        ),
        ([ArmCounts("a", 10, 1, is_control=True), ArmCounts("a", 10, 1)], "unique"),
        ([ArmCounts("a", 10, 1, is_control=True)], "at least one arm besides the control"),
        ([], "needs arms"),
        ([ArmCounts("a", 10, 11, is_control=True), ArmCounts("b", 10, 1)], "conversions"),
        ([ArmCounts("a", 10, 1, is_control=True), ArmCounts("b", -1, 0)], "negative"),
    ],
)
def test_compare_rejects_bad_arms(arms: list[ArmCounts], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compare(arms, "clicked")


@pytest.mark.parametrize(("alpha", "min_sample"), [(0.0, 100), (1.0, 100), (0.05, -1)])
def test_compare_rejects_bad_parameters(alpha: float, min_sample: int) -> None:
    arms = [ArmCounts("a", 10, 1, is_control=True), ArmCounts("b", 10, 1)]
    with pytest.raises(ValueError):
        compare(arms, "clicked", alpha=alpha, min_sample=min_sample)


@st.composite
def experiments(draw: Callable[..., Any]) -> list[ArmCounts]:
    """2..6 arms, one of them (anywhere) the control, with counts that give a mix of outcomes."""
    k = draw(st.integers(2, 6))
    control_index = draw(st.integers(0, k - 1))
    arms = []
    for i in range(k):
        n = draw(st.one_of(st.integers(100, 3000), st.integers(0, 3000)))  # mostly past the minimum
        rate = draw(st.sampled_from([0.0, 0.05, 0.1, 0.12, 0.2, 1.0]))
        conversions = min(n, max(0, round(n * rate) + draw(st.integers(-20, 20))))
        arms.append(ArmCounts(f"arm{i}", n, conversions, is_control=i == control_index, holdout=draw(st.booleans())))
    return arms


@DETERMINISTIC
@given(experiments(), st.sampled_from(["clicked", "unsubscribed"]), st.sampled_from([0.01, 0.05, 0.1]))
def test_compare_agrees_with_statsmodels_and_keeps_its_invariants(
    arms: list[ArmCounts], metric: str, alpha: float
) -> None:
    report = compare(arms, metric, alpha=alpha, min_sample=100)
    event(report.status)
    control = next(a for a in arms if a.is_control)
    results = {r.arm: r for r in report.arms}
    others = [results[a.arm] for a in arms if not a.is_control]
    raw = [r.p_value for r in others if r.p_value is not None]
    assert len(raw) == len(others)
    # Holm over the raw p-values of the non-control arms, as statsmodels computes it
    assert [r.p_value_holm for r in others] == pytest.approx(statsmodels_holm(raw), abs=1e-12)
    for a in arms:
        r = results[a.arm]
        assert (r.n, r.conversions, r.holdout, r.is_control) == (a.n, a.conversions, a.holdout, a.is_control)
        assert (r.ci_low, r.ci_high) == wilson_interval(a.conversions, a.n, alpha)
        if a.is_control or a.n == 0 or control.n == 0 or a.conversions + control.conversions in (0, a.n + control.n):
            continue
        ref_z, ref_p = proportions_ztest([a.conversions, control.conversions], [a.n, control.n])
        assert r.z == pytest.approx(float(ref_z), rel=TOL, abs=TOL)
        assert r.p_value == pytest.approx(float(ref_p), rel=TOL, abs=1e-300)

    lower = metric == "unsubscribed"
    control_rate = results[control.arm].rate
    significant = [r for r in others if r.significant]
    better = [r for r in significant if (r.rate < control_rate if lower else r.rate > control_rate)]
    if any(a.n < 100 for a in arms):
        assert report.status == "not_enough_data"
        assert report.winner is None and not significant
        assert report.summary.startswith("Not enough data yet")
    else:
        assert {r.arm for r in significant} == {
            r.arm for r in others if r.p_value_holm is not None and r.p_value_holm < alpha
        }
        if better:
            best = (min if lower else max)(r.rate for r in better)
            assert report.status == "winner"
            assert results[report.winner or ""].rate == best
        elif significant:
            assert (report.status, report.winner) == ("control_wins", control.arm)
        else:
            assert (report.status, report.winner) == ("no_difference", None)


def test_alpha_changes_the_level_in_the_summary() -> None:
    report = compare([ArmCounts("a", 1000, 100, is_control=True), ArmCounts("b", 1000, 101)], "opened", alpha=0.01)
    assert "at the 1% level" in report.summary
    assert "99% CI" in report.arms[0].verdict


@pytest.mark.parametrize(
    ("x", "signed", "text"),
    [(0.05, False, "5%"), (0.1234, False, "12.34%"), (0.0004, False, "0.04%"), (1.0, False, "100%"), (0.0, True, "0%")]
    + [(0.1, True, "+10%"), (-0.015, True, "-1.5%"), (-0.00001, True, "0%"), (0.999, False, "99.9%")],
)
def test_format_percent(x: float, signed: bool, text: str) -> None:
    assert format_percent(x, signed=signed) == text
