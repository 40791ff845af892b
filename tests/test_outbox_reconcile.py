"""Reconciling the outbox from the disk, on SQLite and PostgreSQL.

For the outbox the truth is on disk: a row a dead dispatcher left `sending` (or `unknown`) is
`sent` when its `<send_key>.eml` is committed and whole, and back to `planned` when it is not
(nothing went out, so sending it is safe). Rows of a provider channel keep the provider rule:
never resent blindly.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, update

from engine.dispatch import OutboxChannel
from engine.store.models import ledger
from engine.tick import reconcile_pending
from tests.journeys.helpers import NOW, audit, ledger_rows, load, playbook, run_tick
from tests.test_outbox_durability import hello_store

HELLO = playbook("hello", "  - id: hello\n    email: {to: {role: [admin, champion]}, template: welcome/hello}\n")
LATER = NOW + timedelta(hours=1)


def set_rows(db: Engine, row_id: int, **values: object) -> None:
    with db.begin() as conn:
        conn.execute(update(ledger).where(ledger.c.id == row_id).values(**values))


def test_stranded_outbox_rows_are_settled_by_what_is_on_disk(db: Engine, db_url: str, tmp_path: Path) -> None:
    hello_store(db, 4)
    proj = load(tmp_path, db_url, HELLO)
    outbox = proj.settings.outbox_dir
    assert run_tick(db, proj, NOW)["hello"].emails == 8
    rows = ledger_rows(db, playbook_id="hello")
    written, missing, unknown_written, unknown_missing, truncated, busy, provider, foreign = rows
    # What kill -9 leaves: outcomes not written (sending), or written `unknown` by an older rule;
    # some files committed before the kill, some never written, one torn by a non-atomic copy,
    # one holding another message.
    for r in (written, missing, truncated):
        set_rows(db, r.id, status="sending", updated_at=NOW, provider_message_id=None, claim_token="dead")
    for r in (unknown_written, unknown_missing, foreign):
        set_rows(db, r.id, status="unknown", updated_at=NOW, provider_message_id=None, error="no answer")
    set_rows(db, busy.id, status="sending", updated_at=LATER - timedelta(minutes=1), claim_token="alive")
    set_rows(db, provider.id, status="sending", updated_at=NOW, channel="sendgrid")
    for r in (missing, unknown_missing, provider):
        (outbox / f"{r.send_key}.eml").unlink()
    torn = outbox / f"{truncated.send_key}.eml"
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])
    (outbox / f"{foreign.send_key}.eml").write_bytes((outbox / f"{busy.send_key}.eml").read_bytes())
    before = {r.send_key: (outbox / f"{r.send_key}.eml").read_bytes() for r in (written, unknown_written, busy)}
    message_ids = {r.send_key: r.provider_message_id for r in rows}

    result = reconcile_pending(db, proj, LATER, "reconcile")  # the project's outbox, as every tick

    after = {r.id: r for r in ledger_rows(db, playbook_id="hello")}
    assert (result.found_on_disk, result.not_on_disk, result.unknown) == (2, 4, 1)
    for r in (written, unknown_written):
        assert (after[r.id].status, after[r.id].provider_message_id) == ("sent", message_ids[r.send_key])
        assert after[r.id].error is None
    for r in (missing, unknown_missing, truncated, foreign):
        assert (after[r.id].status, after[r.id].claim_token, after[r.id].attempts) == ("planned", None, 0)
    assert after[busy.id].status == "sending"  # a live dispatcher's: not reconciled yet
    assert after[provider.id].status == "unknown"  # SendGrid: never resent blindly
    found = {a.send_key for a in audit(db, decision="reconciled", reason="found_in_outbox")}
    requeued = {a.send_key for a in audit(db, decision="deferred", reason="not_in_outbox")}
    assert found == {written.send_key, unknown_written.send_key}
    assert requeued == {missing.send_key, unknown_missing.send_key, truncated.send_key, foreign.send_key}

    # The next tick sends what was not on disk, and only that.
    assert run_tick(db, proj, LATER)["hello"].emails == 4
    final = {r.id: r for r in ledger_rows(db, playbook_id="hello")}
    assert {final[r.id].status for r in rows if r.id not in (busy.id, provider.id)} == {"sent"}
    for key, data in before.items():
        assert (outbox / f"{key}.eml").read_bytes() == data  # found on disk: not written again
    for r in (missing, unknown_missing, truncated, foreign):
        assert OutboxChannel(outbox).committed(r.send_key) == final[r.id].provider_message_id
    assert not (outbox / f"{provider.send_key}.eml").exists()


def test_a_sendgrid_project_never_checks_the_outbox(db: Engine, db_url: str, tmp_path: Path) -> None:
    """Rows of a project whose channel is not the outbox follow the provider rule even when they
    are labelled `outbox` and a file of that name happens to be on disk."""
    hello_store(db, 1)
    proj = load(tmp_path, db_url, HELLO)
    (proj.settings.project_dir / "touchflow.yaml").write_text("channel: sendgrid\n", encoding="utf-8")
    from engine.project import load_project

    proj = load_project(proj.settings)
    assert proj.delivery.channel == "sendgrid"
    assert run_tick(db, proj, NOW)["hello"].emails == 2  # delivered through the outbox channel object
    on_disk, gone = ledger_rows(db, playbook_id="hello")
    (proj.settings.outbox_dir / f"{gone.send_key}.eml").unlink()
    for r in (on_disk, gone):
        set_rows(db, r.id, status="sending", updated_at=NOW)
    result = reconcile_pending(db, proj, LATER, "reconcile")
    assert (result.unknown, result.found_on_disk, result.not_on_disk) == (2, 0, 0)
    assert {r.status for r in ledger_rows(db, playbook_id="hello")} == {"unknown"}
