"""Hostile customer rows cost that row, never the tick.

SQLite stores whatever bytes it is given: a TEXT column that is not UTF-8, a JSON column that is
not JSON, a date column that is not a date. Each such row is skipped with an `unreadable_row`
audit row saying what is wrong and where, while every other subject and playbook goes on. A
JSON column holding an array instead of an object is possible on PostgreSQL too.
"""

from __future__ import annotations

import email
import email.policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select

from engine.store.models import accounts, contacts
from tests.factories import Store
from tests.journeys.helpers import NOW, audit, enrollment, ledger_rows, load, playbook, run_tick, task_rows

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
NOT_UTF8 = "CAST(x'fffe41' AS TEXT)"
NOT_JSON = "'{\"a\":'"

MAIL = playbook("mail", "  - id: hello\n    email: {to: {role: [admin, champion]}, template: welcome/hello}\n")
CALL = playbook("call", '  - id: call\n    task: {title: "Call {{ account.name }}"}\n')


def corrupt(engine: Engine, table: str, row_id: int, column: str, sql_value: str) -> None:
    """Store a value the model's type cannot read, as a foreign writer would (SQLite only)."""
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE {table} SET {column} = {sql_value} WHERE id = ?", (row_id,))


def sent_to(proj: Any) -> list[str]:
    """The addresses of the messages in the outbox."""
    files = sorted(proj.settings.outbox_dir.glob("*.eml")) if proj.settings.outbox_dir.exists() else []
    messages = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]
    return sorted(m["To"].addresses[0].addr_spec for m in messages)  # type: ignore[attr-defined]


@SQLITE
def test_a_contact_name_that_is_not_utf8_costs_that_contact(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    acc = store.account(plan="mail")
    bad = store.contact(acc, "admin")
    good = store.contact(acc, "champion")
    other = store.account(plan="call")
    corrupt(db, "contacts", bad, "name", NOT_UTF8)
    proj = load(tmp_path, db_url, MAIL, CALL)

    result = run_tick(db, proj, NOW)

    assert (result["mail"].enrolled, result["mail"].emails, result["mail"].skipped) == (1, 1, 1)
    assert (result["call"].enrolled, result["call"].tasks) == (1, 1)
    assert sent_to(proj) == [f"person{good}@acme.example"]
    (skipped,) = audit(db, decision="skipped")
    assert (skipped.reason, skipped.contact_id, skipped.step_id) == ("unreadable_row", bad, "hello")
    assert skipped.detail == f"contact {bad}: name is not valid UTF-8 text"
    (row,) = [r for r in ledger_rows(db, playbook_id="mail") if r.contact_id == bad]
    assert (row.status, row.error) == ("skipped", skipped.detail)
    assert [t.account_id for t in task_rows(db)] == [other]


@SQLITE
@pytest.mark.parametrize(
    "condition",
    ["traits.industry: saas", "traits.employees: {gt: 10}", "traits.beta: true"],
    ids=["text", "number", "boolean"],
)
def test_traits_that_are_not_json_make_the_condition_false_for_that_row(
    db: Engine, db_url: str, tmp_path: Path, condition: str
) -> None:
    store = Store(db, NOW)
    traits = {"industry": "saas", "employees": 50, "beta": True}
    good = store.account(plan="saas", traits=traits)
    store.contact(good, "admin")
    bad = store.account(plan="saas", traits=traits)
    store.contact(bad, "admin")
    corrupt(db, "accounts", bad, "traits", NOT_JSON)
    segmented = playbook(
        "saas",
        "  - id: hello\n    email: {to: {role: [admin]}, template: welcome/hello}\n",
        f"segment: {{{condition}}}\n",
    )
    proj = load(tmp_path, db_url, segmented)

    result = run_tick(db, proj, NOW)["saas"]

    assert (result.matched, result.enrolled, result.emails) == (1, 1, 1)
    assert enrollment(db, good).status == "completed"


@SQLITE
def test_an_account_whose_traits_are_not_json_is_skipped_at_dispatch(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    bad = store.account(plan="mail", name="Broken Co")
    store.contact(bad, "admin")
    good = store.account(plan="mail")
    kept = store.contact(good, "admin")
    corrupt(db, "accounts", bad, "traits", NOT_JSON)
    proj = load(tmp_path, db_url, MAIL, CALL)

    result = run_tick(db, proj, NOW)["mail"]

    assert (result.enrolled, result.emails, result.skipped) == (2, 1, 1)
    assert sent_to(proj) == [f"person{kept}@acme.example"]
    (skipped,) = audit(db, decision="skipped")
    assert (skipped.reason, skipped.account_id) == ("unreadable_row", bad)
    assert skipped.detail.startswith(f"account {bad}: traits is not valid JSON (")
    assert [r.status for r in ledger_rows(db, account_id=bad)] == ["skipped"]


@SQLITE
def test_a_contact_whose_traits_are_not_json_is_skipped_at_dispatch(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    acc = store.account(plan="mail")
    bad = store.contact(acc, "admin")
    good = store.contact(acc, "champion")
    corrupt(db, "contacts", bad, "traits", NOT_JSON)
    proj = load(tmp_path, db_url, MAIL)

    result = run_tick(db, proj, NOW)["mail"]

    assert (result.emails, result.skipped) == (1, 1)
    assert sent_to(proj) == [f"person{good}@acme.example"]
    (skipped,) = audit(db, decision="skipped")
    assert (skipped.reason, skipped.contact_id) == ("unreadable_row", bad)
    assert skipped.detail.startswith(f"contact {bad}: traits is not valid JSON (")


@SQLITE
def test_a_csm_whose_name_is_not_utf8_costs_the_deliveries_that_need_it(
    db: Engine, db_url: str, tmp_path: Path
) -> None:
    store = Store(db, NOW)
    broken_csm = store.csm()
    fine_csm = store.csm(name="Jun Lee")
    theirs = store.account(plan="call", csm_id=broken_csm)
    ours = store.account(plan="call", csm_id=fine_csm)
    corrupt(db, "csms", broken_csm, "name", NOT_UTF8)
    proj = load(tmp_path, db_url, CALL)

    result = run_tick(db, proj, NOW)["call"]

    assert (result.tasks, result.skipped) == (1, 1)
    assert [t.account_id for t in task_rows(db)] == [ours]
    (skipped,) = audit(db, decision="skipped")
    assert (skipped.reason, skipped.account_id) == ("unreadable_row", theirs)
    assert skipped.detail == f"csm {broken_csm}: name is not valid UTF-8 text"


@SQLITE
def test_event_properties_that_are_not_json_are_ignored_by_the_trigger(db: Engine, db_url: str, tmp_path: Path) -> None:
    detractor = """id: detractor
name: Detractor
trigger: {event: {name: nps_response, where: {score: {lte: 6}}, within: 2d}}
steps:
  - id: call
    task: {title: "Call {{ account.name }}"}
"""
    store = Store(db, NOW)
    bad = store.account()
    store.events(bad, "nps_response", [0.5])
    good = store.account()
    store.events(good, "nps_response", [0.5])
    with db.begin() as conn:
        conn.exec_driver_sql(f"UPDATE events SET properties = {NOT_JSON} WHERE account_id = ?", (bad,))
        conn.exec_driver_sql("""UPDATE events SET properties = '{"score": 3}' WHERE account_id = ?""", (good,))
    proj = load(tmp_path, db_url, detractor)

    result = run_tick(db, proj, NOW)["detractor"]

    assert (result.matched, result.enrolled, result.tasks) == (1, 1, 1)
    assert [t.account_id for t in task_rows(db)] == [good]


UPDATE = playbook(
    "update",
    """\
  - id: tag
    update: {set: {traits.health_call: done}, tag: [vip]}
  - id: call
    task: {title: "Call {{ account.name }}"}
""",
)


@SQLITE
def test_an_update_step_never_overwrites_traits_it_cannot_read(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    bad = store.account(plan="update")
    good = store.account(plan="update", traits={"region": "apac"})
    corrupt(db, "accounts", bad, "traits", NOT_JSON)
    proj = load(tmp_path, db_url, UPDATE)

    result = run_tick(db, proj, NOW)["update"]

    assert result.enrolled == 2
    with db.connect() as conn:
        raw = conn.exec_driver_sql("SELECT traits FROM accounts WHERE id = ?", (bad,)).scalar_one()
        kept = conn.execute(select(accounts.c.traits).where(accounts.c.id == good)).scalar_one()
    assert raw == '{"a":'  # left as it was: the customer's data is theirs to fix
    assert kept == {"region": "apac", "health_call": "done", "tags": ["vip"]}
    (skipped,) = audit(db, decision="skipped", account_id=bad, step_id="tag")
    assert skipped.reason == "unreadable_row"
    assert skipped.detail.startswith(f"account {bad}: traits is not valid JSON (")
    assert [(r.decision, r.step_id) for r in audit(db, decision="updated")] == [("updated", "tag")]


def test_traits_that_are_not_an_object_cost_that_row(db: Engine, db_url: str, tmp_path: Path) -> None:
    """Valid JSON of the wrong shape (PostgreSQL's jsonb accepts it too): that contact is skipped."""
    store = Store(db, NOW)
    acc = store.account(plan="mail")
    bad = store.contact(acc, "admin", traits=["not", "an", "object"])
    good = store.contact(acc, "champion")
    proj = load(tmp_path, db_url, MAIL, CALL)
    other = store.account(plan="call")

    result = run_tick(db, proj, NOW)

    assert (result["mail"].emails, result["mail"].skipped, result["call"].tasks) == (1, 1, 1)
    assert sent_to(proj) == [f"person{good}@acme.example"]
    (skipped,) = audit(db, decision="skipped")
    assert (skipped.reason, skipped.contact_id) == ("unreadable_row", bad)
    assert skipped.detail == f"contact {bad}: traits is a JSON array, not an object"
    assert [t.account_id for t in task_rows(db)] == [other]


@SQLITE
def test_read_rows_keeps_the_readable_rows_and_says_what_is_wrong_with_the_others(db: Engine) -> None:
    store = Store(db, NOW)
    ids = [store.account(name=f"Account {i}", traits={"n": i}) for i in range(7)]
    corrupt(db, "accounts", ids[1], "name", NOT_UTF8)
    corrupt(db, "accounts", ids[1], "traits", NOT_JSON)
    corrupt(db, "accounts", ids[4], "renewal_date", "'soon'")
    corrupt(db, "accounts", ids[6], "traits", "'\"text\"'")
    stmt = select(accounts).where(accounts.c.id.in_(ids)).order_by(accounts.c.id.desc())
    from engine.store.readable import read_rows

    with db.connect() as conn:
        read = read_rows(conn, stmt, accounts)

    assert [r.id for r in read.rows] == sorted(ids, reverse=True)  # every row, in the query's order
    by_id = {r.id: r for r in read.rows}
    assert set(read.problems) == {ids[1], ids[4], ids[6]}
    assert read.problems[ids[1]].startswith(
        f"account {ids[1]}: name is not valid UTF-8 text; traits is not valid JSON ("
    )
    assert read.problems[ids[4]] == f"account {ids[4]}: renewal_date cannot be read (Invalid isoformat string: 'soon')"
    assert read.problems[ids[6]] == f"account {ids[6]}: traits is a JSON string, not an object"
    assert (by_id[ids[1]].name, by_id[ids[1]].traits, by_id[ids[1]].tier) == (None, None, "tech_touch")
    assert by_id[ids[4]].renewal_date is None and by_id[ids[6]].traits is None
    assert [by_id[i].traits for i in (ids[0], ids[2], ids[3], ids[5])] == [{"n": 0}, {"n": 2}, {"n": 3}, {"n": 5}]


def test_read_rows_costs_nothing_extra_when_every_row_is_readable(db: Engine) -> None:
    store = Store(db, NOW)
    acc = store.account()
    ids = [store.contact(acc, "admin", traits={"i": i}) for i in range(3)]
    statements: list[str] = []
    from engine.store.readable import read_rows

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(db, "before_cursor_execute", count)
    try:
        with db.connect() as conn:
            read = read_rows(
                conn, select(contacts).where(contacts.c.account_id == acc).order_by(contacts.c.id), contacts
            )
    finally:
        event.remove(db, "before_cursor_execute", count)
    assert [r.id for r in read.rows] == ids and read.problems == {}
    assert len(statements) == 1
