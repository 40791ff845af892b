"""The message archive's `content` for stores made when 0011 kept `mime`

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 04:50:00

Migration 0011 first created `message_archive.mime` (each email's MIME, zlib-compressed) and was
later changed in place to `content` (its parts as JSON, zlib-compressed). A store migrated by the
first version says 0011 but has `mime`: every archive write failed there ("no column named
content", logged; the sends went on). This revision converts such a table — each message's
headers, text and HTML taken from its MIME, nothing dropped — and does nothing on any other store.
"""

from __future__ import annotations

import json
import zlib
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_CHUNK = 500
_STRUCTURE = {"mime-version", "content-type", "content-transfer-encoding"}
"""MIME's own headers: the archive keeps the headers Touchflow wrote, the parts apart."""


def upgrade() -> None:
    bind = op.get_bind()
    columns = {c["name"] for c in sa.inspect(bind).get_columns("message_archive")}
    if "mime" not in columns:
        return
    # Resumable: a run that stopped part-way (SQLite keeps the added column) converts what is left.
    if "content" not in columns:
        with op.batch_alter_table("message_archive", schema=None) as batch_op:
            batch_op.add_column(sa.Column("content", sa.LargeBinary(), nullable=True))
    table = sa.table(
        "message_archive",
        sa.column("send_key", sa.String),
        sa.column("mime", sa.LargeBinary),
        sa.column("content", sa.LargeBinary),
        sa.column("size", sa.Integer),
    )
    pending = sa.select(table.c.send_key, table.c.mime).where(table.c.content.is_(None)).limit(_CHUNK)
    while rows := bind.execute(pending).all():  # a chunk at a time: a 90-day archive is large
        for send_key, mime in rows:
            body = json.dumps(readable(mime), ensure_ascii=False).encode()
            bind.execute(
                table.update()
                .where(table.c.send_key == send_key)
                .values(content=zlib.compress(body, 6), size=len(body))
            )
    with op.batch_alter_table("message_archive", schema=None) as batch_op:
        batch_op.alter_column("content", existing_type=sa.LargeBinary(), nullable=False)
        batch_op.drop_column("mime")


def downgrade() -> None:
    pass  # the archive's current layout is 0011's: nothing to undo


def parts_of(raw: bytes) -> dict[str, Any]:
    """A message's MIME as the archive keeps it now: the headers as written (MIME's own left
    out), the text and the HTML part ('' when the message had none)."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    headers = [(name, str(value)) for name, value in message.items() if name.lower() not in _STRUCTURE]
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    return {
        "headers": headers,
        "text": text.get_content() if text is not None else "",
        "html": html.get_content() if html is not None else "",
    }


def readable(stored: bytes) -> dict[str, Any]:
    """The archive's parts of one stored message; one that cannot be read keeps what it had, as
    text with a header saying why, rather than stopping the migration (or vanishing)."""
    try:
        return parts_of(zlib.decompress(stored))
    except zlib.error as exc:
        kept = stored.hex()
        why = f"the archived message could not be decompressed ({exc}); its stored bytes, in hex, are the text"
    except Exception as exc:  # a MIME message the parser refuses
        kept = zlib.decompress(stored).decode("utf-8", "replace")
        why = f"the archived MIME could not be read ({type(exc).__name__}: {exc}); it is the text as stored"
    return {"headers": [("X-Touchflow-Archive", why)], "text": kept, "html": ""}
