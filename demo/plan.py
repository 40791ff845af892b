"""One demo account's plan (its row, and what its contacts and events are drawn from) and the
patterns an account can be given: shared by `demo.data`, which draws the plans, and
`demo.events`, which draws each account's history from its plan."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from engine.store.bulk import Row

DAY = 86_400

# Account patterns, picked once per account: the rest are "normal". Each one is what an example
# playbook in playbooks/ looks for, so every example fires on the demo store.
QUIET, SPIKE, DETRACTOR, NORMAL = "gone_quiet", "support_spike", "detractor", "normal"
USAGE_DROP, EXPANSION, OVERDUE = "usage_drop", "expansion", "invoice_overdue"
CHAMPION_LEFT, TICKET_HEAVY, NEW_USER, ADVOCATE = "champion_left", "ticket_heavy", "new_user", "advocate"
PATTERN_CUM = (
    (0.08, QUIET),
    (0.13, SPIKE),
    (0.23, DETRACTOR),
    (0.28, USAGE_DROP),
    (0.32, EXPANSION),
    (0.35, OVERDUE),
    (0.37, CHAMPION_LEFT),
    (0.40, TICKET_HEAVY),
    (0.45, NEW_USER),
    (0.51, ADVOCATE),
)


# Yearly odds of churning per pattern: the accounts a health model should flag (gone quiet,
# usage dropping, detractors, support-heavy, champion gone, unpaid) churn far more often than
# advocates and expanding ones, so a backtest has a signal to find — and noise, as real churn has.
CHURN_ODDS = {
    QUIET: 0.35,
    USAGE_DROP: 0.30,
    DETRACTOR: 0.15,
    TICKET_HEAVY: 0.20,
    CHAMPION_LEFT: 0.30,
    OVERDUE: 0.25,
    ADVOCATE: 0.02,
    EXPANSION: 0.02,
}
BASE_CHURN_ODDS = 0.06


@dataclass(slots=True)
class AccountPlan:
    """One account's row plus what its contacts and events are generated from."""

    id: int
    name: str
    slug: str
    tier: str
    plan: str
    arr: float
    seats_purchased: int
    lifecycle_stage: str
    contract_start: date
    renewal_date: date
    csm_id: int | None
    status: str
    timezone: str
    locale: str
    traits: dict[str, Any]
    pattern: str
    # Seconds before `now` of a gone-quiet account's last login (0 for other patterns).
    quiet_for: int
    first_contact_id: int
    contact_count: int
    # The day an account that churned left (its contract not renewed); None while it is a customer.
    churned_on: date | None = None

    def row(self) -> Row:
        """The account's row, in the column order demo.data loads."""
        return (
            self.id,
            self.name,
            self.tier,
            self.plan,
            self.arr,
            self.seats_purchased,
            self.lifecycle_stage,
            self.contract_start,
            self.renewal_date,
            self.csm_id,
            self.status,
            self.timezone,
            self.locale,
            self.traits,
            self.churned_on,
        )
