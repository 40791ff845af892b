"""Trait and event-property keys with dots, quotes, `$`, brackets or spaces: one meaning on
SQLite and PostgreSQL, and never part of the JSON path's syntax.

`traits.plan.tier` names the key `plan.tier` — the key an `update` step writes, and the one a
template reads as `account.traits["plan.tier"]` — never the path plan → tier.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Engine

from tests.factories import Store
from tests.language.helpers import add_events, who

NOW = datetime(2026, 11, 23, 9, 0)

# Keys that mean something in a SQLite JSON path ($."a"."b", $.a[0], $.a.b) or in SQL text.
HOSTILE_KEYS = [
    "plan.tier",
    'a"."b',
    'say "hi"',
    "it's",
    "$",
    "$.x",
    "a[0]",
    "with space",
    "back\\slash",
    "a.b.c",
    ".lead",
    "trail.",
    "ünï.cödé",
]


def test_a_dotted_trait_key_is_the_literal_key_on_both_databases(db: Engine) -> None:
    store = Store(db, NOW)
    literal = store.account(traits={"plan.tier": "gold"})
    nested = store.account(traits={"plan": {"tier": "gold"}})
    both = store.account(traits={"plan.tier": "gold", "plan": {"tier": "silver"}})
    numbers = store.account(traits={"usage.seats": 12, "usage": {"seats": 99}})
    flags = store.account(traits={"billing.on_hold": True, "billing": {"on_hold": False}})

    assert who(db, "{traits.plan.tier: gold}", NOW) == {literal, both}
    assert who(db, "{traits.plan.tier: silver}", NOW) == set()
    assert who(db, "{traits.plan.tier: {exists: true}}", NOW) == {literal, both}
    assert who(db, "{traits.plan.tier: {exists: false}}", NOW) == {nested, numbers, flags}
    assert who(db, "{traits.usage.seats: {gt: 50}}", NOW) == set()
    assert who(db, "{traits.usage.seats: {lt: 50}}", NOW) == {numbers}
    assert who(db, "{traits.billing.on_hold: true}", NOW) == {flags}
    assert who(db, "{traits.plan: {exists: true}}", NOW) == {nested, both}


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_any_trait_key_reads_exactly_that_key(db: Engine, key: str) -> None:
    store = Store(db, NOW)
    text = store.account(traits={key: "yes"})
    number = store.account(traits={key: 7})
    flag = store.account(traits={key: True})
    # Decoys: what the key would reach were its characters read as JSON path syntax.
    store.account(traits={"a": {"b": "yes"}, "plan": {"tier": "yes"}, "x": "yes", "a.b": {"c": "yes"}})
    store.account(traits={"a": ["yes", 7]})
    store.account(traits={})

    quoted = key.replace("'", "''")
    assert who(db, f"{{'traits.{quoted}': 'yes'}}", NOW) == {text}
    assert who(db, f"{{'traits.{quoted}': {{gt: 6}}}}", NOW) == {number}
    assert who(db, f"{{'traits.{quoted}': true}}", NOW) == {flag}
    assert who(db, f"{{'traits.{quoted}': {{exists: true}}}}", NOW) == {text, number, flag}


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_any_event_property_key_reads_exactly_that_key(db: Engine, key: str) -> None:
    store = Store(db, NOW)
    hit, miss = store.account(), store.account()
    add_events(db, NOW, hit, "exported", [1], properties={key: "csv"})
    add_events(db, NOW, miss, "exported", [1], properties={"a": {"b": "csv"}, "plan": {"tier": "csv"}, "x": "csv"})
    quoted = key.replace("'", "''")
    condition = f"{{events: {{name: exported, within: 7d, where: {{'{quoted}': csv}}}}}}"
    assert who(db, condition, NOW) == {hit}
