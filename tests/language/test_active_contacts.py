"""`active_contacts`: how many different contacts of an account had an event in a window.

`at_most` keeps the accounts where nobody had it (NOT IN, not a join on the events); events
without a contact count for nobody; one contact's many events count once.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite

from engine.load import load_playbook_text
from engine.problems import ProblemsFound
from engine.render import EmailRenderer
from engine.validate import check_playbook
from tests.conftest import REPO
from tests.factories import Store
from tests.language.helpers import add_events, compiled, playbook_yaml, who

NOW = datetime(2026, 11, 23, 9, 0)


def team(store: Store, active: int, *, idle: int = 1) -> tuple[int, list[int]]:
    """An account with `active` contacts who logged in twice lately and `idle` who did not."""
    account = store.account()
    people = [store.contact(account) for _ in range(active + idle)]
    for contact in people[:active]:
        add_events(store.engine, NOW, account, "login", [1, 3], contact_id=contact)
    return account, people


def test_at_least_counts_different_contacts_not_events(db: Engine) -> None:
    store = Store(db, NOW)
    three, _ = team(store, 3)
    two, people = team(store, 2)
    add_events(db, NOW, two, "login", [0.5, 2, 4, 6], contact_id=people[0])  # many logins, one person
    add_events(db, NOW, two, "login", [1, 2, 3])  # account-level events: nobody's
    store.account()

    assert who(db, "{active_contacts: {name: login, within: 14d, at_least: 3}}", NOW) == {three}
    assert who(db, "{active_contacts: {name: login, within: 14d, at_least: 2}}", NOW) == {three, two}


def test_at_most_includes_accounts_where_nobody_did_it(db: Engine) -> None:
    store = Store(db, NOW)
    three, _ = team(store, 3)
    two, _ = team(store, 2)
    nobody, people = team(store, 0, idle=4)
    add_events(db, NOW, nobody, "login", [20, 30], contact_id=people[0])  # outside the window
    add_events(db, NOW, nobody, "export", [1], contact_id=people[1])  # another event
    empty = store.account()  # no contacts at all

    assert who(db, "{active_contacts: {name: login, within: 14d, at_most: 2}}", NOW) == {two, nobody, empty}
    assert who(db, "{active_contacts: {name: login, within: 14d, at_most: 0}}", NOW) == {nobody, empty}
    both = "{active_contacts: {name: login, within: 14d, at_least: 1, at_most: 2}}"
    assert who(db, both, NOW) == {two}
    assert who(db, "{active_contacts: {name: login, within: 30d, at_least: 3}}", NOW) == {three}


def test_where_filters_the_events_counted(db: Engine) -> None:
    store = Store(db, NOW)
    account = store.account()
    admins = [store.contact(account) for _ in range(2)]
    for contact in admins:
        add_events(db, NOW, account, "feature_used", [1], contact_id=contact, properties={"feature": "reports"})
    other = store.account()
    add_events(db, NOW, other, "feature_used", [1], contact_id=store.contact(other), properties={"feature": "api"})

    condition = "{active_contacts: {name: feature_used, within: 7d, at_least: 2, where: {feature: reports}}}"
    assert who(db, condition, NOW) == {account}
    fewer = "{active_contacts: {name: feature_used, within: 7d, at_most: 1, where: {feature: reports}}}"
    assert who(db, fewer, NOW) == {other}


def test_for_contact_subjects_it_counts_the_contacts_account(db: Engine) -> None:
    store = Store(db, NOW)
    busy, busy_people = team(store, 3, idle=1)
    _, quiet_people = team(store, 1, idle=1)

    condition = "{active_contacts: {name: login, within: 14d, at_most: 2}}"
    assert who(db, condition, NOW, subject="contact") == set(quiet_people)
    assert busy not in who(db, condition, NOW) and set(busy_people).isdisjoint(who(db, condition, NOW, "contact"))


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "postgresql"])
def test_it_is_one_grouped_statement_with_not_in_for_at_most(dialect: object) -> None:
    text = playbook_yaml("{active_contacts: {name: login, within: 14d, at_least: 1, at_most: 2}}")
    sql = str(compiled(text).matching_subjects(NOW).compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    assert sql.count("count(DISTINCT events.contact_id)") == 2
    assert "GROUP BY events.account_id" in sql and "NOT IN (SELECT events.account_id" in sql


def test_a_bound_is_required_and_checked() -> None:
    renderer = EmailRenderer(REPO / "templates" / "email")
    ok = load_playbook_text(playbook_yaml("{active_contacts: {name: login, within: 14d, at_most: 2}}"), "p.yaml")
    assert check_playbook(ok, renderer) == []
    with pytest.raises(ProblemsFound, match="give at_least, at_most, or both"):
        load_playbook_text(playbook_yaml("{active_contacts: {name: login, within: 14d}}"), "p.yaml")
