"""A demo account's lifecycle milestones in the year of history: going live past onboarding, and
a `renewal_signed` event for every term of its contract that ended (or is about to end) in the
year and was signed by `now`. With them a cohort of last year reaches the funnel's late stages.

An account past onboarding went live 20 to 50 days after its contract started (accounts still
onboarding get theirs, or not yet, with their events: demo/events.py).

Terms are a year long and end on the anniversary of `renewal_date`, the next one still ahead.
An active account renewed every term that ended, since it is still a customer; the upcoming one is
signed only if its signing day has come. Most renewals are signed in the 60 days before the term
ends (the book's target is 30 to 60 days early, seeds L2012), a few up to two weeks late (rolled
forward with the same dates). A churned account left at a renewal it did not sign, and its
earlier ones ended over a year ago: it has none.

Draws come from their own stream (demo.data's `milestones`), so adding milestones left every
other row of a seed's store as it was.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

from demo.plan import AccountPlan

RawEvent = tuple[int, int | None, str, dict[str, Any]]
"""(seconds before now, contact id or None, name, properties), as demo/events.py builds them."""

RENEWAL_EVENT = "renewal_signed"
GO_LIVE_EVENT = "go_live"
_GO_LIVE_DAYS = (20, 50)
"""How long after its contract started an account went live."""
_EARLY_DAYS = 60
"""The earliest a renewal is signed before its term ends."""
_LATE_DAYS = 14
"""The latest a renewal is signed after its term ended."""
_TERM = timedelta(days=365)
_EMPTY: dict[str, Any] = {}


def milestones(rng: random.Random, plan: AccountPlan, now: datetime) -> list[RawEvent]:
    """The go-live and `renewal_signed` events of `plan`'s account in the year before `now`, as
    demo/events.py's raw events (seconds before `now`, contact, name, properties)."""
    if plan.churned_on is not None:
        return []
    out: list[RawEvent] = []
    went_live = plan.contract_start + timedelta(days=rng.randint(*_GO_LIVE_DAYS))
    at = datetime.combine(went_live, time()) + timedelta(seconds=rng.randint(8 * 3600, 18 * 3600))
    if plan.lifecycle_stage != "onboarding" and now - _TERM < at <= now:
        out.append((_seconds(now - at), plan.first_contact_id, GO_LIVE_EVENT, _EMPTY))
    for end in _term_ends(plan.renewal_date, plan.contract_start, now.date()):
        signed = end - timedelta(days=rng.randint(-_LATE_DAYS, _EARLY_DAYS))
        # Office hours of the signing day; a signature later than `now` has not happened yet.
        at = datetime.combine(signed, time()) + timedelta(seconds=rng.randint(8 * 3600, 18 * 3600))
        if signed <= plan.contract_start or not now - _TERM < at <= now:
            continue
        props: dict[str, Any] = {"term_end": end.isoformat(), "arr": plan.arr}
        out.append((_seconds(now - at), plan.first_contact_id, RENEWAL_EVENT, props))
    return out


def _seconds(delta: timedelta) -> int:
    return delta.days * 86400 + delta.seconds


def _term_ends(renewal: date, start: date, today: date) -> Iterator[date]:
    """The ends of the terms a signature in the year before `today` can belong to: the upcoming
    one (`renewal`), then each earlier anniversary after the contract's first year, newest first."""
    end = renewal
    while end - start >= _TERM and end + timedelta(days=_LATE_DAYS) > today - _TERM:
        if end - timedelta(days=_EARLY_DAYS) <= today:
            yield end
        end -= _TERM
