"""Field conditions — operators, contact subjects, relative dates, JSON traits: exactly who matches.

Each test builds a tiny store on SQLite and on PostgreSQL with subjects just inside and just
outside each boundary, and pins the exact set of subject ids.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine

from tests.factories import Store
from tests.language.helpers import who

NOW = datetime(2026, 11, 23, 9, 0)
TODAY = NOW.date()


def test_field_operators(db: Engine) -> None:
    store = Store(db, NOW)
    csm1, csm2 = store.csm(), store.csm()
    a1 = store.account(name="Acme Analytics", tier="high_touch", plan="pro", arr=5000.0, csm_id=csm1)
    a2 = store.account(name="Beta Analytics Ltd", tier="low_touch", plan="enterprise", arr=20000.0, seats_purchased=9)
    a3 = store.account(name="Gamma", plan="starter", arr=4999.99, seats_purchased=50, status="churned", csm_id=csm2)
    a4 = store.account(name="Delta 100% a_c", plan="starter", arr=20000.01)

    assert who(db, "{tier: high_touch}", NOW) == {a1}  # a bare value is eq
    assert who(db, "{tier: {eq: low_touch}}", NOW) == {a2}
    assert who(db, "{plan: {ne: enterprise}}", NOW) == {a1, a3, a4}
    assert who(db, "{arr: {lt: 5000}}", NOW) == {a3}
    assert who(db, "{arr: {lte: 5000}}", NOW) == {a1, a3}
    assert who(db, "{arr: {gt: 20000}}", NOW) == {a4}
    assert who(db, "{arr: {gte: 20000}}", NOW) == {a2, a4}
    assert who(db, "{arr: {gt: 4999.99, lt: 20000.01}}", NOW) == {a1, a2}  # several operators: all hold
    assert who(db, "{tier: {in: [low_touch, tech_touch]}}", NOW) == {a2, a3, a4}
    assert who(db, "{tier: {not_in: [low_touch, tech_touch]}}", NOW) == {a1}
    assert who(db, "{csm_id: {exists: true}}", NOW) == {a1, a3}
    assert who(db, "{csm_id: {exists: false}}", NOW) == {a2, a4}
    assert who(db, f"{{csm_id: {{ne: {csm1}}}}}", NOW) == {a3}  # a missing value does not match ne
    assert who(db, f"{{csm_id: {{not_in: [{csm1}]}}}}", NOW) == {a3}  # nor not_in
    assert who(db, "{name: {contains: Analytics}}", NOW) == {a1, a2}
    assert who(db, "{name: {contains: '0%'}}", NOW) == {a4}  # LIKE wildcards are plain text
    assert who(db, "{name: {contains: 'a_c'}}", NOW) == {a4}
    assert who(db, "{name: {contains: '%'}}", NOW) == {a4}
    assert who(db, "{arr: {between: [5000, 20000]}}", NOW) == {a1, a2}  # both ends included
    assert who(db, "{seats_purchased: {between: [9, 10]}}", NOW) == {a1, a2, a4}

    # Several fields in one mapping must all hold; all / any / not nest.
    assert who(db, "{tier: tech_touch, plan: starter, status: active}", NOW) == {a4}
    assert who(db, "{all: [{tier: {in: [low_touch, tech_touch]}}, {not: {status: churned}}]}", NOW) == {a2, a4}
    assert who(db, "{any: [{plan: pro}, {seats_purchased: {gte: 50}}]}", NOW) == {a1, a3}
    assert who(db, "{not: {any: [{plan: pro}, {seats_purchased: {gte: 50}}]}}", NOW) == {a2, a4}
    assert who(db, "{any: [{all: [{plan: starter}, {arr: {gt: 10000}}]}, {not: {not: {tier: low_touch}}}]}", NOW) == {
        a2,
        a4,
    }
    assert who(db, "{all: [{tier: high_touch}, {tier: low_touch}]}", NOW) == set()


def test_contains_is_case_sensitive(db: Engine) -> None:
    store = Store(db, NOW)
    upper = store.account(name="Acme Analytics")
    lower = store.account(name="acme analytics")
    assert who(db, "{name: {contains: analytics}}", NOW) == {lower}
    assert who(db, "{name: {contains: Analytics}}", NOW) == {upper}


def test_contact_subject_fields(db: Engine) -> None:
    store = Store(db, NOW)
    high = store.account(tier="high_touch", locale="en")
    low = store.account(tier="low_touch", locale="ko")
    high_admin = store.contact(high, "admin", locale="ko")
    high_user = store.contact(high, "user")
    low_admin = store.contact(low, "admin")

    def contacts(condition: str) -> set[int]:
        return who(db, condition, NOW, subject="contact")

    assert contacts("{role: admin}") == {high_admin, low_admin}
    assert contacts("{contact.role: user}") == {high_user}
    assert contacts("{tier: high_touch}") == {high_admin, high_user}  # no contact field: the account's
    assert contacts("{locale: ko}") == {high_admin}  # the contact's own locale, not its account's
    assert contacts("{account.locale: ko}") == {low_admin}
    assert contacts("{locale: {exists: false}}") == {high_user, low_admin}
    assert contacts("{all: [{role: admin}, {account.tier: low_touch}]}") == {low_admin}
    assert contacts("{role: admin, tier: high_touch}") == {high_admin}
    assert contacts("{account.id: " + str(low) + "}") == {low_admin}


def test_relative_dates(db: Engine) -> None:
    store = Store(db, NOW)
    neutral_start = TODAY - timedelta(days=100)
    neutral_renewal = TODAY + timedelta(days=120)
    renews = {
        days: store.account(renewal_date=TODAY + timedelta(days=days), contract_start=neutral_start)
        for days in (-1, 0, 90, 91, 180, 181)
    }
    started = {
        days: store.account(contract_start=TODAY - timedelta(days=days), renewal_date=neutral_renewal)
        for days in (-1, 0, 30, 31, 365, 366)
    }

    for now in (NOW, NOW.replace(hour=0, minute=0), NOW.replace(hour=23, minute=59)):  # date fields: by day
        assert who(db, "{renewal_date: {within_next: 90d}}", now) == {renews[0], renews[90]}
        assert who(db, "{renewal_date: {further_than: 180d}}", now) == {renews[181]}
        assert who(db, "{contract_start: {within_last: 30d}}", now) == {started[0], started[30]}
        assert who(db, "{contract_start: {older_than: 365d}}", now) == {started[366]}
    assert who(db, "{renewal_date: {within_next: 13w}}", NOW) == {renews[0], renews[90], renews[91]}  # 91 days
    assert who(db, "{renewal_date: {within_last: 1d}}", NOW) == {renews[-1], renews[0]}
    assert who(db, "{contract_start: {further_than: 0d}}", NOW) == {started[-1]}
    assert who(db, "{all: [{renewal_date: {within_next: 200d}}, {contract_start: {older_than: 30d}}]}", NOW) == {
        renews[0],
        renews[90],
        renews[91],
        renews[180],
        renews[181],
        started[31],
        started[365],
        started[366],
    }


def test_json_traits(db: Engine) -> None:
    store = Store(db, NOW)
    saas = store.account(traits={"industry": "saas", "employees": 250, "region": "apac"})
    fintech = store.account(traits={"industry": "fintech", "employees": 100, "region": "emea"})
    retail = store.account(traits={"industry": "retail", "employees": 100.5})
    empty = store.account(traits={})
    null = store.account(traits={"industry": None})

    assert who(db, "{traits.industry: saas}", NOW) == {saas}
    assert who(db, "{traits.industry: {in: [saas, fintech]}}", NOW) == {saas, fintech}
    assert who(db, "{traits.employees: {gt: 100}}", NOW) == {saas, retail}
    assert who(db, "{traits.employees: {gte: 100}}", NOW) == {saas, fintech, retail}
    assert who(db, "{traits.employees: 100}", NOW) == {fintech}
    assert who(db, "{traits.industry: {ne: retail}}", NOW) == {saas, fintech}  # missing keys do not match
    assert who(db, "{traits.industry: {not_in: [retail]}}", NOW) == {saas, fintech}
    assert who(db, "{traits.industry: {exists: false}}", NOW) == {empty, null}
    assert who(db, "{traits.region: {exists: true}}", NOW) == {saas, fintech}
    assert who(db, "{all: [{traits.industry: {in: [saas, fintech]}}, {traits.region: apac}]}", NOW) == {saas}
    assert who(db, "{traits.nothing: x}", NOW) == set()


def test_numeric_trait_ignores_non_numeric_values(db: Engine) -> None:
    store = Store(db, NOW)
    big = store.account(traits={"employees": 250})
    store.account(traits={"employees": "n/a"})
    store.account(traits={"employees": "50"})
    assert who(db, "{traits.employees: {gt: 100}}", NOW) == {big}
