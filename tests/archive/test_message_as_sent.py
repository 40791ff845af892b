"""The message as sent, on SQLite and PostgreSQL: every email that went out (or may have) is kept
compressed, byte for byte what the channel sent, linked from its audit row; a later edit of the
template does not change it; a failing archive write never loses the send; old ones are pruned."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, select, text
from typer.testing import CliRunner

from engine import tick
from engine.archive import message_as_sent, prune_archive
from engine.cli import app
from engine.dispatch.channels import OutgoingEmail, SendError
from engine.store.models import message_archive
from tests.approvals.helpers import HELLO, reload, template, with_settings
from tests.factories import Store
from tests.journeys.helpers import NOW, audit, ledger_rows, load, run_tick


def _one_sent(db: Engine, db_url: str, tmp_path: Path) -> tuple[object, str]:
    store = Store(db, NOW)
    acc = store.account(plan="hello", name="Acme <Analytics> & Co")
    store.contact(acc, "admin", name="Mina Park", email="Mina.Park@Acme.example")
    proj = load(tmp_path, db_url, HELLO)
    run_tick(db, proj, NOW, "t1")
    (row,) = ledger_rows(db, playbook_id="hello")
    assert row.status == "sent"
    return proj, row.send_key


def test_kept_exactly_as_sent_and_linked_from_the_audit(db: Engine, db_url: str, tmp_path: Path) -> None:
    proj, key = _one_sent(db, db_url, tmp_path)
    eml = (proj.settings.outbox_dir / f"{key}.eml").read_bytes()  # type: ignore[attr-defined]
    with db.connect() as conn:
        kept = message_as_sent(conn, key)
        stored = conn.execute(select(message_archive).where(message_archive.c.send_key == key)).one()
    assert kept is not None
    assert len(stored.content) < stored.size  # compressed
    (sent,) = audit(db, decision="sent")
    assert (sent.send_key, sent.content_hash) == (key, kept.content_hash)
    # What the outbox wrote is what the archive holds: every header as a client reads it, both parts.
    written = email.message_from_bytes(eml, policy=email.policy.default)
    for name in ("From", "To", "Subject", "Date", "List-Unsubscribe", "X-Touchflow-Send-Key"):
        assert kept.header(name) == str(written[name]).strip(), name
    body = written.get_body(("plain",))
    html = written.get_body(("html",))
    assert body is not None and html is not None
    # (the email library ends a part it writes with a line break)
    assert kept.text == body.get_content() and html.get_content() in (kept.html, kept.html + "\n")
    assert kept.recipient == "Mina.Park@Acme.example" and kept.subject == written["Subject"]
    assert "Acme &lt;Analytics&gt; &amp; Co" in kept.html
    again_parsed = email.message_from_bytes(kept.eml(), policy=email.policy.default)
    assert [(n, str(v)) for n, v in again_parsed.items() if n in ("From", "To", "Subject")] == [
        (n, str(written[n])) for n in ("From", "To", "Subject")
    ]

    # Editing the template afterwards changes what is rendered, not what was sent.
    hello = template(proj, "welcome/hello.en.html")  # type: ignore[arg-type]
    hello.write_text(hello.read_text(encoding="utf-8").replace("Welcome aboard.", "Changed."), "utf-8")
    reload(proj.settings)  # type: ignore[attr-defined]
    with db.connect() as conn:
        again = message_as_sent(conn, key)
    assert again == kept and "Changed." not in again.html


class _TimedOut:
    """A channel whose request went out and whose answer never came: the outcome is unknown."""

    name = "outbox"

    def send(self, email: OutgoingEmail) -> str:
        raise SendError("ambiguous", "timed out after the request went out")


def test_a_message_that_may_have_gone_is_kept_too(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    acc = store.account(plan="hello")
    store.contact(acc, "admin")
    proj = load(tmp_path, db_url, HELLO)
    tick.run_stages(db, proj, ["hello"], NOW, "t1", _TimedOut())  # type: ignore[arg-type]
    (row,) = ledger_rows(db, playbook_id="hello")
    assert row.status == "unknown"
    with db.connect() as conn:
        assert message_as_sent(conn, row.send_key) is not None


def test_a_failed_archive_write_never_loses_the_send(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    acc = store.account(plan="hello")
    store.contact(acc, "admin")
    proj = load(tmp_path, db_url, HELLO)
    with db.begin() as conn:
        conn.execute(text("DROP TABLE message_archive"))  # every archive write now fails
    try:
        run_tick(db, proj, NOW, "t1")
        (row,) = ledger_rows(db, playbook_id="hello")
        assert row.status == "sent"
        assert [r.send_key for r in audit(db, decision="sent")] == [row.send_key]
    finally:
        with db.begin() as conn:
            message_archive.create(conn)


def test_pruned_after_the_retention(db: Engine, db_url: str, tmp_path: Path) -> None:
    proj, key = _one_sent(db, db_url, tmp_path)
    with db.begin() as conn:
        assert prune_archive(conn, NOW + timedelta(days=89), timedelta(days=90)) == 0
    proj = with_settings(proj, "archive: {retention: 30d}\n")  # type: ignore[arg-type]
    assert proj.delivery.archive.retention == timedelta(days=30)
    env = {"TOUCHFLOW_PROJECT_DIR": str(proj.settings.project_dir), "TOUCHFLOW_DATABASE_URL": db_url}
    runner = CliRunner()
    shown = runner.invoke(app, ["archive", "show", key, "--raw"], env=env)
    assert shown.exit_code == 0
    raw = email.message_from_bytes(shown.stdout_bytes, policy=email.policy.default)
    outboxed = email.message_from_bytes(
        (proj.settings.outbox_dir / f"{key}.eml").read_bytes(), policy=email.policy.default
    )
    assert (raw["To"], raw["Subject"]) == (outboxed["To"], outboxed["Subject"])
    kept = runner.invoke(app, ["archive", "prune", "--now", (NOW + timedelta(days=29)).isoformat()], env=env)
    assert kept.exit_code == 0 and "pruned 0 archived message(s) older than 30d" in kept.stdout
    dropped = runner.invoke(app, ["archive", "prune", "--now", (NOW + timedelta(days=31)).isoformat()], env=env)
    assert dropped.exit_code == 0 and "pruned 1 archived" in dropped.stdout
    gone = runner.invoke(app, ["archive", "show", key], env=env)
    assert gone.exit_code == 1 and "past the retention" in gone.stderr
