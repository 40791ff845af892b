"""A demo account's year of history: product activity of each contact (as busy a year ago as
today), the events that make its pattern visible to an example playbook, billing, and for an
account that churned, activity fading out before its churn day and its pattern's trouble weeks
ahead of it.

The hot loop of the demo store (~10 rows per contact): it works on tuples and shared,
precomputed property dicts. Draws come from the one `random.Random` stream given, in a fixed
order, so the same plans and stream give the same rows.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timedelta
from itertools import accumulate, repeat
from typing import Any

from demo.plan import (
    ADVOCATE,
    CHAMPION_LEFT,
    DAY,
    DETRACTOR,
    EXPANSION,
    NEW_USER,
    OVERDUE,
    QUIET,
    SPIKE,
    TICKET_HEAVY,
    USAGE_DROP,
    AccountPlan,
)
from engine.store.bulk import Row

_HISTORY_SECONDS = 180 * DAY
# A year of history, at the same pace all year: a health model backtested over it compares
# churners and stayers on the same footing at any date. Churned accounts' histories end on their
# churn day.
_YEAR_SECONDS = 365 * DAY
_FADE_SECONDS = 90 * DAY
"""Before churning, an account's product activity fades out over this long."""
_LEAD_DAYS = (14, 60)
"""A churned account's trouble (tickets, an overdue invoice, a detractor, a lost champion) came
this many days before it left: a cause precedes its effect, so a model can see it coming."""
_PRODUCT = frozenset({"login", "page_view", "feature_used"})

_FEATURES = (
    "dashboards",
    "reports",
    "automations",
    "integrations",
    "api",
    "sso",
    "exports",
    "alerts",
)
_EMPTY: dict[str, Any] = {}
# Shared, never-mutated property dicts: building a dict per event would dominate the hot loop.
_FEATURE_PROPS = tuple({"feature": feature} for feature in _FEATURES)
_PRIORITY_PROPS = tuple({"priority": f"P{level}"} for level in (1, 2, 3))
_NPS_PROPS = tuple({"score": score} for score in range(11))

# Background activity of one contact: (name, properties) picked by weight in one draw. Logins
# lead: a contact of a healthy account signs in most months, so a 30-day window can see it.
_ACTIVITY: tuple[tuple[str, dict[str, Any]], ...] = (
    ("login", _EMPTY),
    ("page_view", _EMPTY),
    *(("feature_used", props) for props in _FEATURE_PROPS),
    *(("support_ticket_opened", props) for props in _PRIORITY_PROPS),
)
_ACTIVITY_CUM = tuple(accumulate((55.0, 13.0, *([25.0 / len(_FEATURES)] * len(_FEATURES)), 0.6, 1.2, 1.2)))

_OVERDUE_PROPS = tuple({"days_overdue": days, "amount": 0.0} for days in (15, 21, 30, 45))
_LEFT_PROPS = tuple({"role": role} for role in ("champion", "exec_sponsor", "user"))


def event_rows(
    rng: random.Random,
    plans: Sequence[AccountPlan],
    now: datetime,
    first_id: int,
    more: Callable[[AccountPlan], list[_RawEvent]] | None = None,
) -> Iterator[Row]:
    """The events of `plans`' accounts, numbered from `first_id`, as rows in demo.data's column
    order; `more` adds an account's events drawn from another stream (demo/milestones.py) after
    its own, so ids do not depend on how the accounts are chunked."""
    next_id = first_id
    for plan in plans:
        raw = _account_events(rng, plan, now.date())
        if more is not None:
            raw.extend(more(plan))
        if not raw:  # a churned account whose whole history is older than a year
            continue
        # Assembled a column at a time with zip/map: this is the innermost loop of the whole
        # generation (~3M rows per 100k accounts), and C-level iteration halves its cost.
        seconds_ago, contact_ids, names, properties = zip(*raw, strict=True)
        occurred_at = map(now.__sub__, map(timedelta, repeat(0), seconds_ago))
        ids = range(next_id, next_id + len(raw))
        yield from zip(ids, repeat(plan.id), contact_ids, names, occurred_at, properties)
        next_id += len(raw)


# (seconds before now, contact id or None for account-level, name, properties)
_RawEvent = tuple[int, int | None, str, dict[str, Any]]


def _account_events(rng: random.Random, plan: AccountPlan, today: date) -> list[_RawEvent]:
    draw = rng.random
    first_contact = plan.first_contact_id
    # A gone-quiet account's users did nothing after the cutoff; billing carries on. Nobody
    # did anything before the contract started.
    earliest = plan.quiet_for if plan.pattern == QUIET else 0
    # A churned account's history is drawn as of its churn day, then moved back to it.
    end = plan.churned_on or today
    since_start = max(DAY, (end - plan.contract_start).days * DAY)
    span = max(DAY, min(_YEAR_SECONDS, since_start) - earliest)
    out: list[_RawEvent] = []
    new_user = first_contact + plan.contact_count - 1 if plan.pattern == NEW_USER and plan.contact_count > 1 else None
    for contact_id in range(first_contact, first_contact + plan.contact_count):
        if contact_id != new_user:
            out.extend(_contact_activity(rng, contact_id, earliest, span))
    if plan.pattern == ADVOCATE:
        out = [e for e in out if not (e[2] == "support_ticket_opened" and e[0] < 30 * DAY)]
    if since_start < 45 * DAY and draw() < 0.5:
        # Half of the newest customers have not used a core feature yet (activation-30d).
        out = [e for e in out if e[2] != "feature_used"]
    if plan.lifecycle_stage == "onboarding" and draw() < 0.6:
        went_live = since_start - (20 + int(draw() * 30)) * DAY
        if went_live > 0:
            out.append((went_live, first_contact, "go_live", _EMPTY))
    trouble = _pattern_events(rng, plan, new_user)
    if plan.churned_on is not None:
        lead = rng.randint(*_LEAD_DAYS) * DAY
        trouble = [(seconds_ago + lead, who, name, props) for seconds_ago, who, name, props in trouble]
    out.extend(trouble)
    if plan.pattern == QUIET:
        # The admin's last login marks the moment the account went quiet.
        out.append((plan.quiet_for, first_contact, "login", _EMPTY))
    else:
        out.append((int(draw() * 14 * DAY), first_contact, "login", _EMPTY))
    out.extend(_invoices(rng, plan.arr))
    if plan.churned_on is not None:
        churned_ago = (today - plan.churned_on).days * DAY
        out = _faded(rng, out, churned_ago)
        # The admin's last login before the fade: every account has logged in at some point.
        out.append((churned_ago + _FADE_SECONDS + int(draw() * 30 * DAY), first_contact, "login", _EMPTY))
    return out


def _faded(rng: random.Random, history: list[_RawEvent], churned_ago: int) -> list[_RawEvent]:
    """A churned account's history, moved back to end on its churn day: product activity thins
    out over the months before (the later, the rarer), what is older than a year is dropped."""
    draw = rng.random
    out: list[_RawEvent] = []
    for seconds_ago, contact_id, name, props in history:
        if name in _PRODUCT and seconds_ago < _FADE_SECONDS and draw() * _FADE_SECONDS > seconds_ago:
            continue
        moved = seconds_ago + churned_ago
        if moved <= _YEAR_SECONDS:
            out.append((moved, contact_id, name, props))
    return out


def _pattern_events(rng: random.Random, plan: AccountPlan, new_user: int | None) -> list[_RawEvent]:
    """The events that make this account's pattern visible to its playbook."""
    draw = rng.random
    first, count = plan.first_contact_id, plan.contact_count
    out: list[_RawEvent] = []

    def someone() -> int:
        return first + int(draw() * count)

    def tickets(n: int, days: int) -> None:
        for _ in range(n):
            out.append((int(draw() * days * DAY), someone(), "support_ticket_opened", _PRIORITY_PROPS[int(draw() * 3)]))

    if plan.pattern == SPIKE:
        tickets(rng.randint(5, 9), 7)
    elif plan.pattern == TICKET_HEAVY:
        tickets(rng.randint(10, 26), 30)
    elif plan.pattern == DETRACTOR:
        # Most answered within the month; a third in the last two days (the event trigger's window).
        days = 2 if draw() < 0.35 else 30
        out.append((int(draw() * days * DAY), someone(), "nps_response", _NPS_PROPS[int(draw() * 7)]))
    elif plan.pattern == USAGE_DROP:
        before, after = 12 + int(draw() * 10), int(draw() * 5)
        out.extend(
            (30 * DAY + int(draw() * 30 * DAY), someone(), "feature_used", _FEATURE_PROPS[0]) for _ in range(before)
        )
        out.extend((int(draw() * 30 * DAY), someone(), "feature_used", _FEATURE_PROPS[1]) for _ in range(after))
    elif plan.pattern == EXPANSION:
        out.extend((int(draw() * 20 * DAY), contact, "login", _EMPTY) for contact in range(first, first + count))
    elif plan.pattern == OVERDUE:
        out.append((int(draw() * 2 * DAY), None, "invoice_overdue", _OVERDUE_PROPS[int(draw() * 4)]))
    elif plan.pattern == CHAMPION_LEFT:
        out.append((int(draw() * 2 * DAY), someone(), "contact_left", _LEFT_PROPS[int(draw() * 3)]))
    elif plan.pattern == ADVOCATE and draw() < 0.2:
        # Healthy (no recent tickets: see _account_events); a few have already written a review.
        out.append((int(draw() * 180 * DAY), first, "review_submitted", _EMPTY))
    if new_user is not None:
        first_login = (7 + int(draw() * 7)) * DAY - 3600
        out.append((first_login, new_user, "login", _EMPTY))
        out.extend((int(draw() * 7 * DAY), new_user, "page_view", _EMPTY) for _ in range(int(draw() * 3)))
    return out


def _contact_activity(rng: random.Random, contact_id: int, earliest: int, span: int) -> list[_RawEvent]:
    draw = rng.random
    # 3–14 events per six months, at that pace over the whole span (up to a year).
    picks = rng.choices(
        _ACTIVITY, cum_weights=_ACTIVITY_CUM, k=max(1, round((3 + draw() * 12) * span / _HISTORY_SECONDS))
    )
    out: list[_RawEvent] = [(earliest + int(draw() * span), contact_id, name, props) for name, props in picks]
    if draw() < 0.3:
        seconds_ago = earliest + int(draw() * span)
        # Background scores in the last 30 days stay passive/promoter (7-10): recent
        # detractors are a pattern given to chosen accounts only.
        score = 7 + int(draw() * 4) if seconds_ago < 30 * DAY else int(draw() * 11)
        out.append((seconds_ago, contact_id, "nps_response", _NPS_PROPS[score]))
    return out


def _invoices(rng: random.Random, arr: float) -> list[_RawEvent]:
    # Quarterly billing: two invoices in the 180-day window, each paid 3-30 days after issue
    # unless that is still in the future.
    amount = {"amount": round(arr / 4, 2)}
    phase = int(rng.random() * 90 * DAY)
    out: list[_RawEvent] = []
    for issued in (phase, phase + 90 * DAY):
        out.append((issued, None, "invoice_issued", amount))
        paid = issued - rng.randint(3 * DAY, 30 * DAY)
        if paid >= 0:
            out.append((paid, None, "invoice_paid", amount))
    return out
