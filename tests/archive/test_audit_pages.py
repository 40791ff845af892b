"""The audit at scale, on SQLite and PostgreSQL: keyset pages (newest first) walk every filter's
set exactly once, ties on `at` included; the streamed CSV of a filter is byte for byte what
`touchflow audit --format csv` prints for the same filter."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from engine.audit import Decision, Reason, audit_row, record
from engine.audit_report import FIELDS, AuditFilter, Cursor, audit_page, query_audit, stream_csv
from engine.cli import app
from tests.journeys.helpers import NOW

REASONS = [
    (Decision.SENT, Reason.DELIVERED_TO_CHANNEL),
    (Decision.DEFERRED, Reason.AWAITING_APPROVAL),
    (Decision.DEFERRED, Reason.CAPPED_CONTACT_DAILY),
    (Decision.SKIPPED, Reason.INVALID_EMAIL),
]


def _seed(db: Engine) -> None:
    rows = []
    for n in range(60):
        decision, reason = REASONS[n % len(REASONS)]
        rows.append(
            audit_row(
                at=NOW + timedelta(minutes=n // 3),  # three decisions per moment: ties broken by id
                run_id=f"r{n}",
                playbook_id=("welcome", "renewal", "nps")[n % 3],
                playbook_version="v1",
                decision=decision,
                reason=reason,
                detail=f'decision {n}, with "quotes", a comma\nand a second line',
                step_id="greet",
                account_id=100 + n % 5,
                contact_id=200 + n % 7,
                channel="email",
                send_key=f"k{n:03d}",
            )
        )
    with db.begin() as conn:
        record(conn, rows)


FILTERS = {
    "all": (AuditFilter(), []),
    "playbook": (AuditFilter(playbook="renewal"), ["--playbook", "renewal"]),
    "contact": (AuditFilter(contacts=(203,)), ["--contact", "203"]),
    "account": (AuditFilter(account=101), ["--account", "101"]),
    "reason": (AuditFilter(reason="awaiting_approval"), ["--reason", "awaiting_approval"]),
    "decision": (AuditFilter(decision="deferred"), ["--decision", "deferred"]),
    "window": (
        AuditFilter(since=NOW + timedelta(minutes=4), until=NOW + timedelta(minutes=11)),
        ["--since", (NOW + timedelta(minutes=4)).isoformat(), "--until", (NOW + timedelta(minutes=11)).isoformat()],
    ),
    "combined": (
        AuditFilter(playbook="welcome", decision="deferred"),
        ["--playbook", "welcome", "--decision", "deferred"],
    ),
}


@pytest.mark.parametrize("name", list(FILTERS))
def test_pages_walk_the_filtered_set_once_newest_first(db: Engine, name: str) -> None:
    _seed(db)
    where, _ = FILTERS[name]
    with db.connect() as conn:
        expected = list(reversed(list(query_audit(conn, where))))
        assert expected, "the filter matches something"
        walked, after, pages = [], None, 0
        while True:
            page = audit_page(conn, where, after=after, size=4)
            walked += page.rows
            pages += 1
            if page.next is None:
                break
            after = Cursor.parse(page.next.token())  # as a link carries it
        assert [{k: r[k] for k in FIELDS} for r in walked] == expected
        assert len({r["id"] for r in walked}) == len(walked)
        assert pages == -(-len(expected) // 4)


def test_a_bad_cursor_says_what_it_is() -> None:
    with pytest.raises(ValueError, match="is not a page cursor"):
        Cursor.parse("2026-11-02~x")


@pytest.mark.parametrize("name", ["all", "contact", "window", "combined"])
def test_streamed_csv_equals_the_command(db: Engine, db_url: str, tmp_path: Path, name: str) -> None:
    _seed(db)
    where, options = FILTERS[name]
    with db.connect() as conn:
        streamed = "".join(stream_csv(conn, where))
        matched = len(list(query_audit(conn, where)))
    env = {"TOUCHFLOW_PROJECT_DIR": str(tmp_path), "TOUCHFLOW_DATABASE_URL": db_url}
    result = CliRunner().invoke(app, ["audit", *options, "--format", "csv"], env=env)
    assert result.exit_code == 0, result.output
    assert streamed == result.stdout
    assert streamed.count("decision ") == matched
