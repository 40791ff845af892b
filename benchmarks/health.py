"""`touchflow bench health`: the daily health stage against a hand-written floor, same run.

(a) the product — `engine.health.compute.compute_day` with the project's `health.yaml`: one
INSERT … SELECT into `health_history` (that day's rows replaced); (b) the floor — the same
scores written by hand for that model (`FLOOR_SQL` below, plain SQL text per dialect), inserted
with their components' JSON (value, points, why) into a scratch table after a DELETE. Both run on
the same store in the same process, `repeat` times each; the best time counts. Then the two
sides are compared account by account: same accounts, same score (to 1e-6), same band — a
mismatch is reported with examples, never averaged away.

The floor is written for the project's `health.yaml` as it is: a model changed since makes
the two sides differ, and `mismatched` says so.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

from benchmarks.evaluate import ensure_store
from engine.health.compute import compute_day
from engine.health.load import load_health
from engine.health.spec import HealthSpec

FLOOR_TABLE = "bench_health_floor"

# One grouped pass per metric, left-joined to the accounts scored that day; points by CASE; the
# score as the weighted sum in the model's component order (weights per tier as fractions of
# 100, so both sides add the same floating-point terms in the same order).
_FLOOR = """
INSERT INTO bench_health_floor (account_id, score, band, components)
SELECT account_id, score,
       CASE WHEN score >= 70 THEN 'healthy' WHEN score >= 50 THEN 'at_risk' ELSE 'unhealthy' END,
       {obj}('adoption', {obj}('value', v_ad, 'points', p_ad, 'why', w_ad),
             'key_features', {obj}('value', v_kf, 'points', p_kf, 'why', w_kf),
             'support', {obj}('value', v_su, 'points', p_su, 'why', w_su),
             'survey', {obj}('value', v_sv, 'points', p_sv, 'why', w_sv),
             'billing', {obj}('value', v_bi, 'points', p_bi, 'why', w_bi),
             'engagement', {obj}('value', v_en, 'points', p_en, 'why', w_en),
             'relationships', {obj}('value', v_re, 'points', p_re, 'why', w_re))
FROM (
  SELECT account_id, v_ad, p_ad, w_ad, v_kf, p_kf, w_kf, v_su, p_su, w_su, v_sv, p_sv, w_sv,
         v_bi, p_bi, w_bi, v_en, p_en, w_en, v_re, p_re, w_re,
         p_ad * CASE WHEN tier = 'high_touch' THEN 0.25 ELSE 0.35 END + p_kf * 0.1 + p_su * 0.15
           + p_sv * 0.15 + p_bi * 0.1 + p_en * 0.05
           + p_re * CASE WHEN tier = 'high_touch' THEN 0.2 ELSE 0.1 END AS score
  FROM (
    SELECT account_id, tier,
      v_ad, CASE WHEN v_ad >= 60 THEN 100.0 WHEN v_ad >= 40 THEN 80.0 WHEN v_ad >= 20 THEN 50.0
                 ELSE 0.0 END AS p_ad,
            CASE WHEN v_ad IS NULL THEN 'no value' WHEN v_ad >= 60 THEN '>= 60' WHEN v_ad >= 40 THEN '>= 40'
                 WHEN v_ad >= 20 THEN '>= 20' ELSE 'no rule met' END AS w_ad,
      v_kf, CASE WHEN v_kf >= 3 THEN 100.0 WHEN v_kf >= 2 THEN 80.0 WHEN v_kf >= 1 THEN 60.0 ELSE 20.0 END AS p_kf,
            CASE WHEN v_kf >= 3 THEN '>= 3' WHEN v_kf >= 2 THEN '>= 2' WHEN v_kf >= 1 THEN '>= 1'
                 ELSE 'no rule met' END AS w_kf,
      v_su, CASE WHEN v_su <= 0 THEN 100.0 WHEN v_su <= 2 THEN 70.0 WHEN v_su <= 4 THEN 30.0 ELSE 0.0 END AS p_su,
            CASE WHEN v_su <= 0 THEN '<= 0' WHEN v_su <= 2 THEN '<= 2' WHEN v_su <= 4 THEN '<= 4'
                 ELSE 'no rule met' END AS w_su,
      v_sv, CASE WHEN v_sv IS NULL THEN 70.0 WHEN v_sv >= 9 THEN 100.0 WHEN v_sv >= 7 THEN 70.0
                 WHEN v_sv >= 5 THEN 40.0 ELSE 10.0 END AS p_sv,
            CASE WHEN v_sv IS NULL THEN 'no value' WHEN v_sv >= 9 THEN '>= 9' WHEN v_sv >= 7 THEN '>= 7'
                 WHEN v_sv >= 5 THEN '>= 5' ELSE 'no rule met' END AS w_sv,
      v_bi, CASE WHEN v_bi IS NULL THEN 100.0 WHEN v_bi <= 14 THEN 80.0 WHEN v_bi <= 30 THEN 40.0
                 ELSE 0.0 END AS p_bi,
            CASE WHEN v_bi IS NULL THEN 'no value' WHEN v_bi <= 14 THEN '<= 14' WHEN v_bi <= 30 THEN '<= 30'
                 ELSE 'no rule met' END AS w_bi,
      v_en, CASE WHEN v_en IS NULL THEN 60.0 WHEN v_en >= 40 THEN 100.0 WHEN v_en >= 20 THEN 60.0
                 ELSE 20.0 END AS p_en,
            CASE WHEN v_en IS NULL THEN 'no value' WHEN v_en >= 40 THEN '>= 40' WHEN v_en >= 20 THEN '>= 20'
                 ELSE 'no rule met' END AS w_en,
      v_re, CASE WHEN v_re >= 2 THEN 100.0 WHEN v_re >= 1 THEN 80.0 ELSE 40.0 END AS p_re,
            CASE WHEN v_re >= 2 THEN '>= 2' WHEN v_re >= 1 THEN '>= 1' ELSE 'no rule met' END AS w_re
    FROM (
      SELECT a.id AS account_id, a.tier,
        CASE WHEN pe.n > 0 THEN CAST(coalesce(ad.n, 0) AS {real}) * 100.0 / pe.n END AS v_ad,
        CAST(coalesce(kf.n, 0) AS {real}) AS v_kf,
        CAST(coalesce(su.n, 0) AS {real}) AS v_su,
        sv.v AS v_sv,
        bi.v AS v_bi,
        CASE WHEN en.sent > 0 THEN CAST(en.hits AS {real}) * 100.0 / en.sent END AS v_en,
        CAST(coalesce(re.n, 0) AS {real}) AS v_re
      FROM accounts a
      LEFT JOIN (SELECT account_id, count(DISTINCT contact_id) AS n FROM events
                 WHERE name = 'login' AND occurred_at > :d30 AND occurred_at <= :now AND contact_id IS NOT NULL
                 GROUP BY account_id) ad ON ad.account_id = a.id
      LEFT JOIN (SELECT account_id, count(*) AS n FROM contacts GROUP BY account_id) pe ON pe.account_id = a.id
      LEFT JOIN (SELECT account_id, count(DISTINCT {text_feature}) AS n FROM events
                 WHERE name = 'feature_used' AND occurred_at > :d30 AND occurred_at <= :now
                 GROUP BY account_id) kf ON kf.account_id = a.id
      LEFT JOIN (SELECT account_id, count(*) AS n FROM events
                 WHERE name = 'support_ticket_opened' AND occurred_at > :d30 AND occurred_at <= :now
                   AND {text_priority} IN ('P1', 'P2')
                 GROUP BY account_id) su ON su.account_id = a.id
      LEFT JOIN ({latest_score}) sv ON sv.account_id = a.id
      LEFT JOIN ({latest_overdue}) bi ON bi.account_id = a.id
      LEFT JOIN (SELECT l.account_id, count(*) AS sent, count(h.send_key) AS hits
                 FROM ledger l
                 LEFT JOIN (SELECT DISTINCT send_key FROM message_events
                            WHERE event IN ('open', 'click') AND occurred_at <= :now) h ON h.send_key = l.send_key
                 WHERE l.kind = 'email' AND l.status = 'sent' AND l.created_at > :d90 AND l.created_at <= :now
                 GROUP BY l.account_id) en ON en.account_id = a.id
      LEFT JOIN (SELECT c.account_id, count(DISTINCT c.role) AS n
                 FROM contacts c JOIN events e ON e.contact_id = c.id
                 WHERE c.role IN ('champion', 'exec_sponsor') AND e.name = 'login'
                   AND e.occurred_at > :d60 AND e.occurred_at <= :now
                 GROUP BY c.account_id) re ON re.account_id = a.id
      WHERE a.contract_start <= :day AND (a.status <> 'churned' OR a.churned_on > :day)
    ) measured
  ) pointed
) scored
"""

# The latest event's number property (two at the same moment: the larger), per dialect.
_LATEST = {
    "sqlite": """SELECT e.account_id, max({num}) AS v FROM events e
                 JOIN (SELECT account_id, max(occurred_at) AS at FROM events
                       WHERE name = '{name}' AND occurred_at > :{since} AND occurred_at <= :now
                       GROUP BY account_id) m ON m.account_id = e.account_id AND m.at = e.occurred_at
                 WHERE e.name = '{name}' GROUP BY e.account_id""",
    "postgresql": """SELECT DISTINCT ON (account_id) account_id, {num} AS v FROM events e
                     WHERE name = '{name}' AND occurred_at > :{since} AND occurred_at <= :now
                     ORDER BY account_id, occurred_at DESC, {num} DESC NULLS LAST""",
}

# Typed JSON reads as the store's rows need them: a property of another type reads as NULL.
_NUM = {
    "sqlite": "CASE WHEN json_valid(e.properties) AND json_type(e.properties, '$.{key}') IN ('integer', 'real') "
    "THEN json_extract(e.properties, '$.{key}') END",
    "postgresql": "CASE WHEN jsonb_typeof(e.properties -> '{key}') = 'number' "
    "THEN (e.properties ->> '{key}')::float8 END",
}
_TEXT = {
    "sqlite": "CASE WHEN json_valid(properties) THEN json_extract(properties, '$.{key}') END",
    "postgresql": "(properties ->> '{key}')",
}
_OBJECT = {"sqlite": "json_object", "postgresql": "jsonb_build_object"}
_REAL = {"sqlite": "REAL", "postgresql": "float8"}


def floor_sql(dialect: str) -> str:
    """The floor's INSERT … SELECT for `dialect` (sqlite or postgresql)."""
    latest = _LATEST[dialect]
    num = _NUM[dialect]
    body = _FLOOR.format(
        obj=_OBJECT[dialect],
        real=_REAL[dialect],
        text_feature=_TEXT[dialect].format(key="feature"),
        text_priority=_TEXT[dialect].format(key="priority"),
        latest_score=latest.format(num=num.format(key="score"), name="nps_response", since="d365"),
        latest_overdue=latest.format(num=num.format(key="days_overdue"), name="invoice_overdue", since="d45"),
    )
    return body


def floor_params(now: datetime) -> dict[str, Any]:
    """The floor's parameters at `now`."""
    windows = {f"d{n}": now - timedelta(days=n) for n in (30, 45, 60, 90, 365)}
    return {"now": now, "day": now.date(), **windows}


@dataclass(frozen=True)
class HealthBench:
    """The figures `bench health` prints."""

    product_s: float
    floor_s: float
    accounts: int
    scored: int
    dialect: str
    store_reused: bool
    build_s: float
    peak_rss_mb: float
    mismatched: int
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Product time / floor time."""
        return self.product_s / self.floor_s if self.floor_s else float("inf")

    def as_dict(self) -> dict[str, Any]:
        """One JSON object."""
        return {
            "product_s": round(self.product_s, 3),
            "floor_s": round(self.floor_s, 3),
            "ratio": round(self.ratio, 3),
            "accounts": self.accounts,
            "scored": self.scored,
            "dialect": self.dialect,
            "store_reused": self.store_reused,
            "build_s": round(self.build_s, 1),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "mismatched": self.mismatched,
            "examples": self.examples,
        }


def _time_product(engine: Engine, spec: HealthSpec, now: datetime) -> tuple[float, int]:
    started = time.perf_counter()
    with engine.begin() as conn:
        written = compute_day(conn, spec, now, replace=True) or 0
    return time.perf_counter() - started, written


def _time_floor(engine: Engine, now: datetime) -> float:
    sql = text(floor_sql(engine.dialect.name))
    params = floor_params(now)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text(f"DELETE FROM {FLOOR_TABLE}"))
        conn.execute(sql, params)
    return time.perf_counter() - started


def _create_floor_table(engine: Engine) -> None:
    json_type = "TEXT" if engine.dialect.name == "sqlite" else "JSONB"
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {FLOOR_TABLE}"))
        conn.execute(
            text(
                f"CREATE TABLE {FLOOR_TABLE} (account_id INTEGER PRIMARY KEY, score FLOAT, "
                f"band VARCHAR(40), components {json_type})"
            )
        )


def mismatches(conn: Connection, now: datetime, limit: int = 10) -> tuple[int, list[dict[str, Any]]]:
    """Accounts whose product score (that day's `health_history`) and floor score differ: in one
    side only, a score more than 1e-6 apart, or another band. (count, the first `limit`)."""
    compared = f"""
        SELECT coalesce(h.account_id, f.account_id) AS account_id,
               h.score AS product_score, f.score AS floor_score, h.band AS product_band, f.band AS floor_band
        FROM (SELECT account_id, score, band FROM health_history WHERE computed_on = :day) h
        FULL OUTER JOIN {FLOOR_TABLE} f ON f.account_id = h.account_id
        WHERE h.account_id IS NULL OR f.account_id IS NULL
           OR abs(h.score - f.score) > 1e-6 OR h.band <> f.band
    """
    count = conn.execute(text(f"SELECT count(*) FROM ({compared}) d"), {"day": now.date()}).scalar_one()
    rows = conn.execute(text(f"{compared} ORDER BY 1 LIMIT {int(limit)}"), {"day": now.date()})
    return int(count), [dict(r._mapping) for r in rows]


def run(
    engine: Engine,
    n_accounts: int,
    seed: int,
    now: datetime,
    spec: HealthSpec,
    build: Callable[[Engine, int, int, datetime], Any],
    repeat: int = 3,
) -> HealthBench:
    """Build or reuse the store, time the product and the floor `repeat` times each, compare."""
    reused, build_s = ensure_store(engine, n_accounts, seed, now, build)
    _create_floor_table(engine)
    product_times, floor_times = [], []
    scored = 0
    for _ in range(repeat):
        floor_times.append(_time_floor(engine, now))
        elapsed, scored = _time_product(engine, spec, now)
        product_times.append(elapsed)
    with engine.connect() as conn:
        count, examples = mismatches(conn, now)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {FLOOR_TABLE}"))
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return HealthBench(
        product_s=min(product_times),
        floor_s=min(floor_times),
        accounts=n_accounts,
        scored=scored,
        dialect=engine.dialect.name,
        store_reused=reused,
        build_s=build_s,
        peak_rss_mb=peak_kb / 1024,
        mismatched=count,
        examples=[{k: (round(v, 4) if isinstance(v, float) else v) for k, v in e.items()} for e in examples],
    )


def score_store(engine: Engine, now: datetime, project_dir: Path) -> int:
    """Score every account of a freshly built store on `now`'s day with the project's model, as
    the tick's daily stage would before its playbooks run; the rows written (0 without a model)."""
    spec = load_health(project_dir)
    if spec is None:
        return 0
    with engine.begin() as conn:
        return compute_day(conn, spec, now, replace=True) or 0
