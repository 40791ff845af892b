"""Migration 0014: a store whose archive table was made by 0011's first version (`mime`) gets
`content`, every message converted — headers, text and HTML kept — and the archive works again."""

from __future__ import annotations

import zlib
from datetime import datetime
from email.message import EmailMessage

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from engine.archive import ToArchive, archive_messages, message_as_sent
from engine.store.db import migrate
from engine.store.models import Base

AT = datetime(2026, 12, 5, 22, 0)


def old_mime(send_key: str, name: str) -> bytes:
    """An email as 0011's first archive kept it: the whole MIME message."""
    message = EmailMessage()
    message["From"] = "Customer Success <success@touchflow.example>"
    message["To"] = f"{name} <person@example.com>"
    message["Subject"] = f"Welcome, {name} — 환영합니다"
    message["Date"] = "Sat, 05 Dec 2026 22:00:00 +0000"
    message["List-Unsubscribe"] = f"<https://touchflow.example/u/{send_key}>"
    message.set_content(f"Hello {name}\n")
    message.add_alternative(f"<p>Hello {name}</p>", subtype="html")
    return message.as_bytes()


def make_it_old(db: Engine, messages: dict[str, bytes]) -> None:
    """The archive table as 0011's first version made it, with `messages`; the store at 0013."""
    moment, binary = ("TIMESTAMP", "BYTEA") if db.dialect.name == "postgresql" else ("DATETIME", "BLOB")
    with db.begin() as conn:
        conn.execute(text("DROP TABLE message_archive"))
        conn.execute(
            text(
                "CREATE TABLE message_archive (send_key VARCHAR(64) NOT NULL PRIMARY KEY, content_hash VARCHAR(64),"
                f" archived_at {moment} NOT NULL, recipient VARCHAR(320) NOT NULL, subject TEXT NOT NULL,"
                f" size INTEGER NOT NULL, mime {binary} NOT NULL)"
            )
        )
        conn.execute(text("CREATE INDEX ix_message_archive_archived_at ON message_archive (archived_at)"))
        for key, raw in messages.items():
            conn.execute(
                text(
                    "INSERT INTO message_archive (send_key, archived_at, recipient, subject, size, mime)"
                    " VALUES (:k, :at, 'person@example.com', 's', :n, :m)"
                ),
                {"k": key, "at": AT, "n": len(raw), "m": zlib.compress(raw)},
            )
        conn.execute(text("UPDATE alembic_version SET version_num = '0013'"))


def test_an_archive_made_with_mime_is_converted_and_works_again(db: Engine) -> None:
    make_it_old(db, {"k1": old_mime("k1", "Ada"), "k2": old_mime("k2", "Grace")})
    migrate(db)
    columns = {c["name"] for c in inspect(db).get_columns("message_archive")}
    assert "content" in columns and "mime" not in columns
    with db.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        kept = message_as_sent(conn, "k2")
    assert kept is not None
    assert kept.header("To") == "Grace <person@example.com>"
    assert kept.header("Subject") == "Welcome, Grace — 환영합니다"
    assert kept.header("List-Unsubscribe") == "<https://touchflow.example/u/k2>"
    assert kept.header("Content-Type") is None and kept.header("MIME-Version") is None
    assert (kept.text, kept.html.strip()) == ("Hello Grace\n", "<p>Hello Grace</p>")
    # New messages are archived again (before, every write failed on the missing column).
    new = ToArchive("k3", None, "x@example.com", "Hi", (("To", "x@example.com"),), "t\n", "<p>h</p>")
    with db.begin() as conn:
        assert archive_messages(conn, [new], AT) == 1
    with db.connect() as conn:
        again = message_as_sent(conn, "k3")
    assert again is not None and again.html == "<p>h</p>"


def test_on_a_current_store_it_changes_nothing(db: Engine) -> None:
    new = ToArchive("k1", "h", "x@example.com", "Hi", (("To", "x@example.com"),), "t\n", "<p>h</p>")
    with db.begin() as conn:
        archive_messages(conn, [new], AT)
        conn.execute(text("UPDATE alembic_version SET version_num = '0013'"))
    migrate(db)
    with db.connect() as conn:
        kept = message_as_sent(conn, "k1")
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0014"
    assert kept is not None and (kept.text, kept.html, kept.content_hash) == ("t\n", "<p>h</p>", "h")


def test_a_run_that_stopped_part_way_is_finished_and_an_unreadable_row_costs_nothing_else(db: Engine) -> None:
    make_it_old(db, {"k1": old_mime("k1", "Ada"), "k2": old_mime("k2", "Grace")})
    with db.begin() as conn:  # as SQLite leaves it: the column added, no row converted yet
        conn.execute(text(f"ALTER TABLE message_archive ADD COLUMN content {binary_type(db)}"))
        conn.execute(
            text("INSERT INTO message_archive (send_key, archived_at, recipient, subject, size, mime)"
                 " VALUES ('bad', :at, 'x@example.com', 's', 3, :m)"),
            {"at": AT, "m": b"not zlib at all"},
        )  # fmt: skip
    migrate(db)
    with db.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        good, bad = message_as_sent(conn, "k1"), message_as_sent(conn, "bad")
    assert good is not None and good.header("To") == "Ada <person@example.com>"
    assert bad is not None and bad.text == b"not zlib at all".hex()
    assert "could not be decompressed" in (bad.header("X-Touchflow-Archive") or "")


def binary_type(db: Engine) -> str:
    return "BYTEA" if db.dialect.name == "postgresql" else "BLOB"
