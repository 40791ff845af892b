"""A contact's timeline on SQLite and PostgreSQL: "why did this person get this email" — the
enrollment, the decisions with their reasons (a deferral, then the send), the message as sent,
and what the recipient did — found by id, email in any case, or external id."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from engine.archive import message_as_sent
from engine.cli import app
from engine.timeline import contact_timeline
from tests.approvals.helpers import HELLO, approve_now, required
from tests.factories import Store
from tests.journeys.helpers import NOW, ledger_rows, message_event, run_tick


def test_why_this_person_got_this_email(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    acc = store.account(plan="hello")
    mina = store.contact(acc, "admin", email="Mina.Park@Acme.example", external_id="crm-77")
    other = store.contact(store.account(plan="hello"), "admin")
    proj = required(tmp_path, db_url, HELLO)
    run_tick(db, proj, NOW, "t1")  # deferred: awaiting approval
    approve_now(db, proj, "hello", "greet")
    sent_at = NOW + timedelta(hours=1)
    run_tick(db, proj, sent_at, "t2")
    (row,) = ledger_rows(db, contact_id=mina)
    message_event(db, row.send_key, "delivered", sent_at + timedelta(minutes=1))
    message_event(db, row.send_key, "open", sent_at + timedelta(hours=2))
    message_event(db, row.send_key, "click", sent_at + timedelta(hours=3))

    with db.connect() as conn:
        found = contact_timeline(conn, "mina.park@acme.EXAMPLE")
        assert contact_timeline(conn, "crm-77").entries == found.entries
        assert contact_timeline(conn, str(mina)).entries == found.entries
        kept = message_as_sent(conn, row.send_key)
    assert found.contacts == (mina,)
    lines = [(e.kind, e.what, e.reason) for e in found.entries]
    assert lines == [
        ("enrollment", "enrolled", None),
        ("decision", "completed", "journey_end"),  # its account's journey, planned at once
        ("decision", "deferred", "awaiting_approval"),
        ("decision", "sent", "delivered_to_channel"),
        ("event", "delivered", None),
        ("event", "open", None),
        ("event", "click", None),
    ]
    assert [e.at for e in found.entries] == sorted(e.at for e in found.entries)
    sent = found.entries[3]
    assert (sent.send_key, sent.archived, sent.step) == (row.send_key, True, "greet")
    assert kept is not None and sent.content_hash == kept.content_hash
    assert all(e.contact_id in (mina, None) for e in found.entries)
    assert other not in {e.contact_id for e in found.entries}

    env = {"TOUCHFLOW_PROJECT_DIR": str(proj.settings.project_dir), "TOUCHFLOW_DATABASE_URL": db_url}
    result = CliRunner().invoke(app, ["timeline", "crm-77", "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == [e.as_dict() for e in found.entries]
    table = CliRunner().invoke(app, ["timeline", "crm-77"], env={**env, "COLUMNS": "250"})
    assert table.exit_code == 0 and f"touchflow archive show {row.send_key}" in table.stdout


@pytest.mark.parametrize("who", ["nobody@acme.example", "no-such-id"])
def test_an_unknown_contact_is_named(db: Engine, db_url: str, tmp_path: Path, who: str) -> None:
    proj = required(tmp_path, db_url, HELLO)
    env = {"TOUCHFLOW_PROJECT_DIR": str(proj.settings.project_dir), "TOUCHFLOW_DATABASE_URL": db_url}
    result = CliRunner().invoke(app, ["timeline", who], env=env)
    assert result.exit_code == 2 and f"no contact '{who}'" in result.stderr and "Traceback" not in result.output
