"""Typed traits: a trait the project declares (`traits: {account: {trial_ends_on: date}}` in
touchflow.yaml) is a field of that type — operators, dates relative to now, date triggers — on
SQLite and PostgreSQL. A stored value that is not of the declared type reads as NULL: that row
does not match, and the statement never fails.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from engine.delivery_config import load_delivery
from engine.load import load_playbook_text
from engine.problems import ProblemsFound
from engine.render import EmailRenderer
from engine.spec.traits import TraitTypes
from engine.validate import check_playbook
from tests.conftest import REPO
from tests.factories import Store
from tests.language.helpers import compiled as compile_text
from tests.language.helpers import enrolled_ids, playbook_yaml, run, who

NOW = datetime(2026, 11, 23, 9, 0)
TODAY = NOW.date()
TRAITS = TraitTypes.model_validate(
    {
        "account": {"trial_ends_on": "date", "mrr": "number", "beta": "boolean", "segment_code": "text"},
        "contact": {"birthday": "date", "score": "number"},
    }
)

# Values of the wrong type, or dates that are not dates: each must read as NULL, never raise.
NOT_DATES = ["2026-02-31", "2026-13-01", "0000-01-01", "soon", "26-11-2026", "2026-11-25T10:00:00", "", 20261125, True]


def in_days(n: int) -> str:
    return (TODAY + timedelta(days=n)).isoformat()


def test_a_declared_date_trait_takes_relative_dates(db: Engine) -> None:
    store = Store(db, NOW)
    soon = store.account(traits={"trial_ends_on": in_days(5)})
    later = store.account(traits={"trial_ends_on": in_days(30)})
    past = store.account(traits={"trial_ends_on": in_days(-3)})
    store.account(traits={})
    bad = [store.account(traits={"trial_ends_on": value}) for value in NOT_DATES]

    assert who(db, "{traits.trial_ends_on: {within_next: 7d}}", NOW, traits=TRAITS) == {soon}
    assert who(db, "{traits.trial_ends_on: {further_than: 7d}}", NOW, traits=TRAITS) == {later}
    assert who(db, "{traits.trial_ends_on: {within_last: 7d}}", NOW, traits=TRAITS) == {past}
    assert who(db, f"{{traits.trial_ends_on: {{lt: {TODAY.isoformat()}}}}}", NOW, traits=TRAITS) == {past}
    # Only the well-formed dates exist as dates; every malformed value reads as NULL.
    assert who(db, "{traits.trial_ends_on: {exists: true}}", NOW, traits=TRAITS) == {soon, later, past}
    assert set(bad) <= who(db, "{traits.trial_ends_on: {exists: false}}", NOW, traits=TRAITS)


def test_a_date_trigger_on_a_declared_trait_enrolls_once_per_date(db: Engine) -> None:
    store = Store(db, NOW)
    week_out = store.account(traits={"trial_ends_on": in_days(7)})
    store.account(traits={"trial_ends_on": in_days(8)})
    store.account(traits={"trial_ends_on": "2026-02-31"})
    store.account(traits={"trial_ends_on": 7})
    playbook = compile_text(playbook_yaml("{date: traits.trial_ends_on, offset: -7d}"), TRAITS)

    assert run(db, playbook, NOW) == [(week_out, in_days(7))]
    assert enrolled_ids(db, playbook, NOW + timedelta(hours=1)) == []  # same date: already entered


def test_an_anniversary_of_a_declared_date_trait(db: Engine) -> None:
    store = Store(db, NOW)
    signed = store.account(traits={"trial_ends_on": "2024-11-23"})
    store.account(traits={"trial_ends_on": "2024-11-24"})
    store.account(traits={"trial_ends_on": "not a date"})
    playbook = compile_text(playbook_yaml("{date: traits.trial_ends_on, every_year: true}"), TRAITS)

    assert run(db, playbook, NOW) == [(signed, "2026")]


def test_declared_number_boolean_and_text_traits_read_only_their_type(db: Engine) -> None:
    store = Store(db, NOW)
    rich = store.account(traits={"mrr": 1500, "beta": True, "segment_code": "7"})
    poor = store.account(traits={"mrr": 200.5, "beta": False, "segment_code": "8"})
    wrong = store.account(traits={"mrr": "1500", "beta": "true", "segment_code": 7})

    assert who(db, "{traits.mrr: {gt: 1000}}", NOW, traits=TRAITS) == {rich}
    assert who(db, "{traits.mrr: {between: [100, 300]}}", NOW, traits=TRAITS) == {poor}
    assert who(db, "{traits.beta: true}", NOW, traits=TRAITS) == {rich}
    assert who(db, "{traits.beta: {exists: false}}", NOW, traits=TRAITS) == {wrong}
    # Declared text: the number 7 is not the text "7" (undeclared, it would be compared as text).
    assert who(db, '{traits.segment_code: "7"}', NOW, traits=TRAITS) == {rich}
    assert who(db, '{traits.segment_code: {in: ["7", "8"]}}', NOW, traits=TRAITS) == {rich, poor}
    assert who(db, '{traits.segment_code: {contains: "8"}}', NOW, traits=TRAITS) == {poor}


def test_contact_traits_are_declared_apart_from_account_traits(db: Engine) -> None:
    store = Store(db, NOW)
    account = store.account(traits={"birthday": in_days(2)})  # an account key of the same name: not declared
    birthday = store.contact(account, traits={"birthday": in_days(2), "score": 9})
    store.contact(account, traits={"birthday": "tomorrow", "score": "9"})

    condition = "{contact.traits.birthday: {within_next: 3d}}"
    assert who(db, condition, NOW, subject="contact", traits=TRAITS) == {birthday}
    assert who(db, "{traits.score: {gte: 9}}", NOW, subject="contact", traits=TRAITS) == {birthday}


def test_a_declared_date_trait_that_is_not_json_reads_as_null(db: Engine, db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's jsonb rejects a document that is not JSON on write")
    store = Store(db, NOW)
    good = store.account(traits={"trial_ends_on": in_days(3)})
    bad = store.account(traits={"trial_ends_on": in_days(3)})
    with db.begin() as conn:
        conn.exec_driver_sql("UPDATE accounts SET traits = '{\"trial_ends_on\":' WHERE id = ?", (bad,))

    assert who(db, "{traits.trial_ends_on: {within_next: 7d}}", NOW, traits=TRAITS) == {good}
    playbook = compile_text(playbook_yaml("{date: traits.trial_ends_on, offset: -3d}"), TRAITS)
    assert enrolled_ids(db, playbook, NOW) == [good]


# --- validation -----------------------------------------------------------------------------------


def problems(text: str, traits: TraitTypes) -> list[str]:
    loaded = load_playbook_text(text, "p.yaml")
    return [p.message for p in check_playbook(loaded, EmailRenderer(REPO / "templates" / "email"), traits=traits)]


def test_an_undeclared_trait_used_as_a_date_says_how_to_declare_it() -> None:
    trigger = playbook_yaml("{date: traits.trial_ends_on, offset: -7d}")
    relative = playbook_yaml("{traits.trial_ends_on: {within_next: 7d}}")
    hint = "declare it in touchflow.yaml: traits: {account: {trial_ends_on: date}}"

    assert [hint in m for m in problems(trigger, TraitTypes())] == [True]
    assert "is a json field, not a date" in problems(trigger, TraitTypes())[0]
    assert [hint in m for m in problems(relative, TraitTypes())] == [True]
    assert problems(trigger, TRAITS) == []
    assert problems(relative, TRAITS) == []


def test_values_are_checked_against_the_declared_type() -> None:
    assert problems(playbook_yaml("{traits.mrr: {gt: lots}}"), TRAITS) == [
        "'traits.mrr' is a number field; gt needs a number, e.g. 20000 (got 'lots')"
    ]
    assert problems(playbook_yaml("{traits.trial_ends_on: {lt: 5}}"), TRAITS) == [
        "'traits.trial_ends_on' is a date field; lt needs a date, e.g. 2026-01-31 (got 5)"
    ]
    assert problems(playbook_yaml("{traits.mrr: {contains: '1'}}"), TRAITS) == [
        "'contains' applies to text fields; 'traits.mrr' is a number field"
    ]
    assert problems(playbook_yaml("{date: traits.mrr}"), TRAITS) == ["'traits.mrr' is a number field, not a date"]


def test_declarations_in_touchflow_yaml_are_read_and_checked_with_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "touchflow.yaml").write_text(
        "channel: outbox\ntraits:\n  account: {trial_ends_on: date, mrr: number}\n", encoding="utf-8"
    )
    assert load_delivery(tmp_path).traits.declared("account", "trial_ends_on") == "date"
    assert load_delivery(tmp_path).traits.declared("contact", "trial_ends_on") is None

    (tmp_path / "touchflow.yaml").write_text(
        "traits:\n  account:\n    trial_ends_on: datetime\n  contacts: {}\n", encoding="utf-8"
    )
    with pytest.raises(ProblemsFound) as found:
        load_delivery(tmp_path)
    where = sorted((p.line, p.col) for p in found.value.problems)
    assert where == [(3, 5), (4, 3)]
    messages = " | ".join(p.message for p in found.value.problems)
    assert "'date', 'number', 'boolean' or 'text'" in messages


def test_the_projects_own_declarations_parse() -> None:
    declared = load_delivery(REPO).traits
    assert declared.declared("account", "trial_ends_on") == "date"
