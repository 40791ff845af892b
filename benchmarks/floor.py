"""The floor of `bench evaluate`: each example playbook's predicate written by hand as SQL.

This is what a careful engineer would write for the store directly, with the same windows and
thresholds as the playbooks in `playbooks/`. Each statement selects the ids of the subjects
(one row per subject) that segment ∧ trigger select at `now`; the bench inserts them into a
scratch table. JSON reads differ per dialect: `{num(col, key)}` and `{text(col, key)}`.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta
from typing import Any

ACTIVE_LOGIN_WINDOW = "e.name = 'login' AND e.occurred_at > :{since} AND e.occurred_at <= :now"

FLOOR: dict[str, str] = {
    "renewal-90d": """
        SELECT id FROM accounts
        WHERE status = 'active' AND tier IN ('low_touch', 'tech_touch')
          AND renewal_date > :renewal_lo AND renewal_date <= :renewal_hi""",
    "inactive-60d": """
        SELECT a.id FROM accounts a
        WHERE a.status = 'active' AND a.tier IN ('low_touch', 'tech_touch')
          AND NOT EXISTS (SELECT 1 FROM events e WHERE e.account_id = a.id
                          AND e.name = 'login' AND e.occurred_at > :d60 AND e.occurred_at <= :now)
          AND EXISTS (SELECT 1 FROM events e WHERE e.account_id = a.id
                      AND e.name = 'login' AND e.occurred_at > :d180 AND e.occurred_at <= :now)""",
    "support-spike": """
        SELECT a.id FROM accounts a
        JOIN (SELECT account_id FROM events
              WHERE name = 'support_ticket_opened' AND occurred_at > :d7 AND occurred_at <= :now
              GROUP BY account_id HAVING count(*) >= 5) s ON s.account_id = a.id
        WHERE a.status = 'active'""",
    "welcome": """
        SELECT id FROM accounts
        WHERE status = 'active' AND contract_start > :start_lo AND contract_start <= :today""",
    "onboarding-go-live": """
        SELECT a.id FROM accounts a
        WHERE a.status = 'active' AND a.lifecycle_stage = 'onboarding' AND a.contract_start < :day56
          AND NOT EXISTS (SELECT 1 FROM events e WHERE e.account_id = a.id
                          AND e.name = 'go_live' AND e.occurred_at > :d365 AND e.occurred_at <= :now)""",
    "activation-30d": """
        SELECT a.id FROM accounts a
        WHERE a.status = 'active' AND a.contract_start > :act_lo AND a.contract_start <= :act_hi
          AND NOT EXISTS (SELECT 1 FROM events e WHERE e.account_id = a.id
                          AND e.name = 'feature_used' AND e.occurred_at > :d30 AND e.occurred_at <= :now)""",
    "new-user-stall": """
        SELECT c.id FROM contacts c JOIN accounts a ON a.id = c.account_id
        WHERE a.status = 'active'
          AND c.id IN (SELECT contact_id FROM events WHERE name = 'login' AND occurred_at <= :now
                       GROUP BY contact_id HAVING min(occurred_at) > :d14 AND min(occurred_at) < :d7)
          AND c.id NOT IN (SELECT contact_id FROM events
                           WHERE name = 'page_view' AND occurred_at > :d7 AND occurred_at <= :now
                             AND contact_id IS NOT NULL
                           GROUP BY contact_id HAVING count(*) > 2)""",
    "nps-detractor": """
        SELECT DISTINCT e.account_id FROM events e JOIN accounts a ON a.id = e.account_id
        WHERE a.status = 'active' AND e.name = 'nps_response'
          AND e.occurred_at > :d2 AND e.occurred_at <= :now AND {num(e.properties, score)} <= 6""",
    "support-volume-by-tier": """
        SELECT a.id FROM accounts a
        JOIN (SELECT account_id, count(*) AS n FROM events
              WHERE name = 'support_ticket_opened' AND occurred_at > :d30 AND occurred_at <= :now
              GROUP BY account_id) s ON s.account_id = a.id
        WHERE a.status = 'active'
          AND ((a.tier = 'high_touch' AND s.n >= 10) OR (a.tier = 'low_touch' AND s.n >= 20))""",
    "usage-drop": """
        SELECT a.id FROM accounts a
        JOIN (SELECT account_id,
                     sum(CASE WHEN occurred_at > :d30 THEN 1 ELSE 0 END) AS cur,
                     sum(CASE WHEN occurred_at <= :d30 THEN 1 ELSE 0 END) AS prev
              FROM events
              WHERE name = 'feature_used' AND occurred_at > :d60 AND occurred_at <= :now
              GROUP BY account_id) t ON t.account_id = a.id
        WHERE a.status = 'active' AND a.tier IN ('high_touch', 'low_touch')
          AND t.prev >= 10 AND t.cur * 100 <= t.prev * 75""",
    "expansion-seats": """
        SELECT a.id FROM accounts a
        JOIN (SELECT account_id, count(DISTINCT contact_id) AS n FROM events
              WHERE name = 'login' AND occurred_at > :d30 AND occurred_at <= :now AND contact_id IS NOT NULL
              GROUP BY account_id) s ON s.account_id = a.id
        WHERE a.status = 'active' AND a.seats_purchased > 0 AND s.n * 100 >= a.seats_purchased * 80""",
    "invoice-overdue": """
        SELECT DISTINCT e.account_id FROM events e JOIN accounts a ON a.id = e.account_id
        WHERE a.status = 'active' AND e.name = 'invoice_overdue'
          AND e.occurred_at > :d2 AND e.occurred_at <= :now AND {num(e.properties, days_overdue)} >= 15""",
    "champion-left": """
        SELECT DISTINCT e.account_id FROM events e JOIN accounts a ON a.id = e.account_id
        WHERE a.status = 'active' AND e.name = 'contact_left'
          AND e.occurred_at > :d2 AND e.occurred_at <= :now
          AND {text(e.properties, role)} IN ('champion', 'exec_sponsor')""",
    "review-request": """
        SELECT a.id FROM accounts a
        WHERE a.status = 'active'
          AND a.id IN (SELECT h.account_id FROM health_history h
                       JOIN (SELECT account_id, max(computed_on) AS day FROM health_history
                             WHERE computed_on <= :today GROUP BY account_id) l
                         ON l.account_id = h.account_id AND l.day = h.computed_on
                       WHERE h.score > 85)
          AND NOT EXISTS (SELECT 1 FROM events e WHERE e.account_id = a.id AND e.name = 'support_ticket_opened'
                          AND e.occurred_at > :d30 AND e.occurred_at <= :now)
          AND NOT EXISTS (SELECT 1 FROM events e WHERE e.account_id = a.id AND e.name = 'review_submitted'
                          AND e.occurred_at > :d730 AND e.occurred_at <= :now)""",
    "survey-low-health": """
        SELECT DISTINCT e.account_id FROM events e JOIN accounts a ON a.id = e.account_id
        WHERE a.status = 'active' AND a.tier IN ('low_touch', 'tech_touch') AND e.name = 'nps_response'
          AND e.occurred_at > :d7 AND e.occurred_at <= :now
          AND {num(e.properties, score)} >= 7 AND {num(e.properties, score)} <= 8
          AND a.id IN (SELECT h.account_id FROM health_history h
                       JOIN (SELECT account_id, max(computed_on) AS day FROM health_history
                             WHERE computed_on <= :today GROUP BY account_id) l
                         ON l.account_id = h.account_id AND l.day = h.computed_on
                       WHERE h.score < 70)""",
    # One branch per day of the 3-day window: the month-day falls on that day (a 29 February start
    # on the 28th in common years) and the contract started in an earlier calendar year than that
    # day — a window reaching back over New Year spans two years.
    "anniversary": """
        SELECT id FROM accounts
        WHERE status = 'active'
          AND (({month_day(contract_start)} IN (:md0, :leap0) AND contract_start < :year0)
            OR ({month_day(contract_start)} IN (:md1, :leap1) AND contract_start < :year1)
            OR ({month_day(contract_start)} IN (:md2, :leap2) AND contract_start < :year2))""",
}

_JSON = {
    "sqlite": {
        "num": "json_extract({col}, '$.{key}')",
        "text": "json_extract({col}, '$.{key}')",
        "month_day": "strftime('%m-%d', {col})",
    },
    "postgresql": {
        "num": "({col} ->> '{key}')::numeric",
        "text": "({col} ->> '{key}')",
        "month_day": "to_char({col}, 'MM-DD')",
    },
}


def floor_sql(playbook_id: str, dialect: str) -> str:
    """The hand-written SELECT for one playbook on one dialect."""
    import re

    sql = FLOOR[playbook_id]

    def expand(m: re.Match[str]) -> str:
        fn, args = m.group(1), [a.strip() for a in m.group(2).split(",")]
        return _JSON[dialect][fn].format(col=args[0], key=args[1] if len(args) > 1 else "")

    return re.sub(r"\{(num|text|month_day)\(([^)]*)\)\}", expand, sql)


def floor_params(now: datetime) -> dict[str, Any]:
    """The bind values of every floor statement at `now` (naive UTC)."""
    today: date = now.date()
    days = {f"d{n}": now - timedelta(days=n) for n in (2, 7, 14, 30, 60, 180, 365, 730)}
    anniversary: dict[str, Any] = {}
    for k in range(3):
        day = today - timedelta(days=k)
        anniversary[f"md{k}"] = day.strftime("%m-%d")
        common_28th = (day.month, day.day) == (2, 28) and not calendar.isleap(day.year)
        anniversary[f"leap{k}"] = "02-29" if common_28th else anniversary[f"md{k}"]
        anniversary[f"year{k}"] = date(day.year, 1, 1)
    return {
        "now": now,
        "today": today,
        **days,
        **anniversary,
        "renewal_lo": today + timedelta(days=90) - timedelta(days=7),
        "renewal_hi": today + timedelta(days=90),
        "start_lo": today - timedelta(days=3),
        "day56": today - timedelta(days=56),
        "act_lo": today - timedelta(days=30) - timedelta(days=3),
        "act_hi": today - timedelta(days=30),
    }
