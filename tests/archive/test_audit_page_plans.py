"""The audit's keyset pages stay index-served under every filter, on SQLite and PostgreSQL.

A page must never sort all of a filter's matches: on 5M rows that is the difference between a
millisecond and tens of them. The database is asked for the plan of exactly the statement
`audit_page` sends (captured from the connection, parameters included). On PostgreSQL sorting is
priced out (`enable_sort = off`), so a Sort node appears only when no index can deliver
(at DESC, id DESC) under the filter; on SQLite a sort shows as a temporary B-tree. The pages of
each filter, walked at several sizes, are exactly the unpaged result, newest first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, text

from engine.audit import Decision, Reason, audit_row, record
from engine.audit_report import FIELDS, AuditFilter, Cursor, audit_page, query_audit
from tests.journeys.helpers import NOW

REASONS = [
    (Decision.SENT, Reason.DELIVERED_TO_CHANNEL),
    (Decision.DEFERRED, Reason.AWAITING_APPROVAL),
    (Decision.DEFERRED, Reason.CAPPED_CONTACT_DAILY),
    (Decision.SKIPPED, Reason.INVALID_EMAIL),
]

# One filter per index of migration 0011, plus the time bounds and the combinations the console
# builds (one person's email in several accounts gives several contact ids).
FILTERS = {
    "none": AuditFilter(),
    "playbook": AuditFilter(playbook="renewal"),
    "account": AuditFilter(account=102),
    "contact": AuditFilter(contacts=(204,)),
    "reason": AuditFilter(reason="awaiting_approval"),
    "decision": AuditFilter(decision="deferred"),
    "since": AuditFilter(since=NOW + timedelta(minutes=30)),
    "until": AuditFilter(until=NOW + timedelta(minutes=50)),
    "playbook_decision": AuditFilter(playbook="welcome", decision="deferred"),
    "account_window": AuditFilter(account=101, since=NOW + timedelta(minutes=5), until=NOW + timedelta(minutes=70)),
}
INDEXED = ["none", "playbook", "account", "contact", "reason", "decision", "until"]
"""The filters `touchflow audit` and the console page by that each have an index of their own."""


def _seed(db: Engine, count: int = 300) -> None:
    rows = []
    for n in range(count):
        decision, reason = REASONS[n % len(REASONS)]
        rows.append(
            audit_row(
                # Runs of five decisions at one moment: pages end inside a tie, broken by id.
                at=NOW + timedelta(minutes=n // 5),
                run_id=f"r{n}",
                playbook_id=("welcome", "renewal", "nps")[n % 3],
                playbook_version="v1",
                decision=decision,
                reason=reason,
                detail=f"decision {n}",
                step_id="greet",
                account_id=100 + n % 7,
                contact_id=200 + n % 11,
                channel="email",
                send_key=f"k{n:04d}",
            )
        )
    with db.begin() as conn:
        record(conn, rows)


@contextmanager
def _statements(conn: Connection) -> Iterator[list[tuple[str, Any]]]:
    """The (statement, parameters) pairs sent to the database while the block runs."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        sent.append((statement, parameters))

    event.listen(conn, "before_cursor_execute", capture)
    try:
        yield sent
    finally:
        event.remove(conn, "before_cursor_execute", capture)


def _plan(conn: Connection, where: AuditFilter, after: Cursor | None) -> str:
    """The plan the database picks for the page query `audit_page` sends, as one text."""
    with _statements(conn) as sent:
        audit_page(conn, where, after=after, size=10)
    [(statement, parameters)] = sent
    conn.rollback()  # end the page's read transaction: the settings below apply to one of their own
    if conn.dialect.name == "postgresql":
        with conn.begin():
            conn.execute(text("SET LOCAL enable_sort = off"))
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            lines = conn.exec_driver_sql("EXPLAIN " + statement, parameters).scalars().all()
        return "\n".join(str(line) for line in lines)
    rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
    return "\n".join(str(row[-1]) for row in rows)


@pytest.mark.parametrize("name", INDEXED)
@pytest.mark.parametrize("deep", [False, True], ids=["first", "deep"])
def test_every_filters_page_is_read_from_an_index_in_order(db: Engine, name: str, deep: bool) -> None:
    _seed(db)
    where = FILTERS[name]
    with db.connect() as conn:
        after = None
        if deep:
            # The cursor of a page in the middle of the filter's set, as the console carries it.
            first = audit_page(conn, where, size=len(list(query_audit(conn, where))) // 2)
            assert first.next is not None
            after = first.next
        plan = _plan(conn, where, after)
    if db.dialect.name == "postgresql":
        assert "Sort" not in plan, f"{name}: the page sorts the filter's matches\n{plan}"
        assert "Index Scan Backward" in plan, plan
    else:
        assert "TEMP B-TREE" not in plan, f"{name}: the page sorts the filter's matches\n{plan}"
        assert "USING INDEX ix_audit_log_" in plan, plan


def _walk(conn: Connection, where: AuditFilter, size: int) -> list[dict[str, Any]]:
    walked: list[dict[str, Any]] = []
    after: Cursor | None = None
    while True:
        page = audit_page(conn, where, after=after, size=size)
        assert len(page.rows) <= size
        walked += page.rows
        if page.next is None:
            return walked
        after = Cursor.parse(page.next.token())  # as a link carries it


@pytest.mark.parametrize("name", [*FILTERS, "two_contacts"])
def test_pages_at_any_size_are_the_unpaged_result_newest_first(db: Engine, name: str) -> None:
    _seed(db)
    where = FILTERS.get(name) or AuditFilter(contacts=(203, 207))
    with db.connect() as conn:
        expected = list(reversed(list(query_audit(conn, where))))
        assert len(expected) > 10, "the filter matches several pages"
        for size in (1, 4, 5, 7, len(expected), len(expected) + 1):
            walked = _walk(conn, where, size)
            assert [{k: r[k] for k in FIELDS} for r in walked] == expected, f"size {size}"
            assert len({r["id"] for r in walked}) == len(walked), f"size {size}: a row shown twice"


def test_a_cursor_past_the_oldest_row_is_an_empty_last_page(db: Engine) -> None:
    _seed(db, count=20)
    with db.connect() as conn:
        page = audit_page(conn, AuditFilter(playbook="nps"), after=Cursor(NOW - timedelta(days=1), 1))
    assert page.rows == []
    assert page.next is None


def test_reading_the_whole_set_leaves_the_connection_as_it_was(db: Engine) -> None:
    # The streamed read (CSV downloads) uses a server-side cursor for its own statement only: the
    # pages and statements that follow on the same connection are ordinary queries.
    _seed(db, count=20)
    with db.connect() as conn:
        before = dict(conn.get_execution_options())
        assert len(list(query_audit(conn, AuditFilter()))) == 20
        assert dict(conn.get_execution_options()) == before
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
