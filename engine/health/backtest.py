"""Did the score predict churn? For each past day with scores, the accounts scored that day and
whether they churned within the horizon after it (`accounts.churned_on`).

Two grouped statements do the counting — (score, churned) and (band, churned) over every
(account, day) pair — so the work does not grow with Python loops over accounts. Only days whose
horizon has fully passed by `now` count: a churn not yet seen is not a retention.

- AUC: the chance that an account that churned had a lower score that day than one that did not
  (ties count half); 0.5 is a coin, 1 is perfect. Interval: Hanley & McNeil (1982), 95 %.
- churn rate per band, with Wilson 95 % intervals.

An account is counted once per day it was scored, so the pairs are not independent; the intervals
are therefore narrower than they should be, and say so in `note`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Date, and_, case, func, literal, select, union_all

from engine.experiments.stats import wilson_interval
from engine.store.models import accounts, health_history

NOTE = "each account counts once per day it was scored: intervals are narrower than for independent samples"


@dataclass(frozen=True)
class BandRate:
    """Churn within the horizon among the (account, day) pairs of one band."""

    band: str
    n: int
    churned: int
    rate: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Backtest:
    """The backtest's figures."""

    horizon_days: int
    days: int
    n: int
    churned: int
    auc: float | None
    auc_low: float | None
    auc_high: float | None
    bands: list[BandRate] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """One JSON object: auc, horizon_days, n and the churn rate per band."""
        return {
            "auc": _round(self.auc),
            "auc_low": _round(self.auc_low),
            "auc_high": _round(self.auc_high),
            "horizon_days": self.horizon_days,
            "days": self.days,
            "n": self.n,
            "churned": self.churned,
            "bands": {
                b.band: {
                    "n": b.n,
                    "churned": b.churned,
                    "rate": _round(b.rate),
                    "low": _round(b.low),
                    "high": _round(b.high),
                }
                for b in self.bands
            },
            "note": NOTE,
        }


def backtest(conn: Connection, now: datetime, horizon: timedelta, band_order: list[str] | None = None) -> Backtest:
    """Score against churn for every scored day whose horizon ended by `now`."""
    h = health_history
    last = now.date() - horizon
    days: list[date] = list(
        conn.execute(select(h.c.computed_on).where(h.c.computed_on <= last).distinct().order_by(h.c.computed_on))
        .scalars()
        .all()
    )
    horizon_days = horizon.days
    if not days:
        return Backtest(horizon_days, 0, 0, 0, None, None, None)
    # The days and their horizon's end as a literal table: no date arithmetic in SQL.
    spans = union_all(
        *(
            select(literal(d, Date()).label("day"), literal(d + timedelta(days=horizon_days), Date()).label("until"))
            for d in days
        )
    ).subquery("spans")
    churned = case((and_(accounts.c.churned_on > spans.c.day, accounts.c.churned_on <= spans.c.until), 1), else_=0)
    pairs = (
        select(h.c.score.label("score"), h.c.band.label("band"), churned.label("churned"))
        .select_from(h.join(spans, h.c.computed_on == spans.c.day).join(accounts, accounts.c.id == h.c.account_id))
        .subquery("pairs")
    )

    def counted(key: Any) -> list[tuple[Any, int, int]]:
        query = select(key, pairs.c.churned, func.count()).group_by(key, pairs.c.churned)
        return [(r[0], int(r[1]), int(r[2])) for r in conn.execute(query)]

    by_score: dict[float, list[int]] = {}
    for score, label, n in counted(pairs.c.score):
        by_score.setdefault(float(score), [0, 0])[label] += n
    by_band: dict[str, list[int]] = {}
    for band, label, n in counted(pairs.c.band):
        by_band.setdefault(str(band), [0, 0])[label] += n
    kept, lost = sum(v[0] for v in by_score.values()), sum(v[1] for v in by_score.values())
    auc = _auc(by_score, kept, lost)
    low, high = _hanley_mcneil(auc, lost, kept) if auc is not None else (None, None)
    order = [b for b in (band_order or []) if b in by_band] + sorted(set(by_band) - set(band_order or []))
    rates = []
    for band in order:
        stay, gone = by_band[band]
        n = stay + gone
        lo, hi = wilson_interval(gone, n) if n else (None, None)
        rates.append(BandRate(band, n, gone, gone / n if n else None, lo, hi))
    return Backtest(horizon_days, len(days), kept + lost, lost, auc, low, high, rates)


def _auc(by_score: dict[float, list[int]], kept: int, lost: int) -> float | None:
    """P(score of a churned pair < score of a retained pair), ties half (Mann–Whitney)."""
    if not kept or not lost:
        return None
    above = kept  # retained pairs with a score at or above the current one
    wins = 0.0
    for score in sorted(by_score):
        stay, gone = by_score[score]
        above -= stay
        wins += gone * (above + 0.5 * stay)
    return wins / (kept * lost)


def _hanley_mcneil(auc: float, positives: int, negatives: int) -> tuple[float, float]:
    """A 95 % interval for an AUC from its standard error (Hanley & McNeil, 1982)."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (
        positives * negatives
    )
    se = math.sqrt(max(variance, 0.0))
    return max(0.0, auc - 1.96 * se), min(1.0, auc + 1.96 * se)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
