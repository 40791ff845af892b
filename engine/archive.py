"""The message as sent: each email's parts exactly as they were handed to the channel — the
headers Touchflow wrote (From, To, Subject, Date, Message-ID, List-Unsubscribe, its tracing
headers), the recipient, the subject, the text and the HTML — as JSON, zlib-compressed, by send key.

Written by dispatch in the same commit that marks the message `sending` (so nothing sent lacks
its archive), inside a savepoint (so a write that fails costs the archive, never the send).
Linked from the audit by send key and content hash; read back as stored, never re-rendered from
today's templates; pruned after the retention of `touchflow.yaml` (`archive: {retention: 90d}`),
by the tick's `now`. The parts, not a MIME rendering, are kept: building MIME costs ~10 ms a
message in the email library, which would halve a SendGrid dispatch that never builds it; `eml()`
writes the same parts as a message file on demand.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from sqlalchemy import Connection, delete, select

from engine.store.bulk import conflict_insert
from engine.store.models import message_archive

log = logging.getLogger("touchflow.archive")

COMPRESSION_LEVEL = 6
"""zlib's default: HTML email compresses ~5×; higher levels cost time at dispatch for little."""


@dataclass(frozen=True)
class ToArchive:
    """One message as it goes out: its headers in order (name, value as written), recipient,
    subject, text and HTML."""

    send_key: str
    content_hash: str | None
    recipient: str
    subject: str
    headers: tuple[tuple[str, str], ...]
    text: str
    html: str


@dataclass(frozen=True)
class ArchivedMessage:
    """A message as it was sent, read back from the archive."""

    send_key: str
    content_hash: str | None
    archived_at: datetime
    recipient: str
    subject: str
    headers: tuple[tuple[str, str], ...]
    text: str
    html: str

    def header(self, name: str) -> str | None:
        """The first header of that name (any case), as written."""
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)

    @property
    def mime(self) -> bytes:
        """The message as an .eml (`eml()`): what a download or a mail client takes."""
        return self.eml()

    def message(self) -> EmailMessage:
        """The message parsed as a mail client reads it (headers, text and HTML parts)."""
        parsed = BytesParser(policy=policy.default).parsebytes(self.eml())
        assert isinstance(parsed, EmailMessage)
        return parsed

    def parts(self) -> dict[str, str]:
        """The text and HTML bodies as sent, by content type."""
        return {"text/plain": self.text, "text/html": self.html}

    def eml(self) -> bytes:
        """The message as a file a mail client opens (multipart/alternative: text, then HTML),
        with the headers exactly as stored."""
        message = EmailMessage(policy=policy.SMTP)
        for name, value in self.headers:
            message[name] = value
        message.set_content(self.text)
        message.add_alternative(self.html, subtype="html")
        return message.as_bytes()


def archive_messages(conn: Connection, messages: Sequence[ToArchive], now: datetime) -> int:
    """Keep `messages` (a send key already kept stays as first written: the send it names went out
    once). Runs in a savepoint of the caller's transaction: on a failure the archive of these
    messages is lost and logged, the caller's writes (the `sending` marks) stand. Returns the
    messages written."""
    if not messages:
        return 0
    rows = []
    for m in messages:
        body = json.dumps({"headers": m.headers, "text": m.text, "html": m.html}, ensure_ascii=False).encode()
        rows.append(
            {
                "send_key": m.send_key,
                "content_hash": m.content_hash,
                "archived_at": now,
                "recipient": m.recipient,
                "subject": m.subject,
                "size": len(body),
                "content": zlib.compress(body, COMPRESSION_LEVEL),
            }
        )
    try:
        with conn.begin_nested():
            conn.execute(_keep_first(conn), rows)
    except Exception as exc:  # the send matters more than its copy: say it and go on
        log.error("could not archive %d message(s) (first %s): %s", len(rows), rows[0]["send_key"], exc)
        return 0
    return len(rows)


def message_as_sent(conn: Connection, send_key: str) -> ArchivedMessage | None:
    """The message `send_key` names exactly as it went out; None when it was never archived or is
    past the retention."""
    row = conn.execute(select(message_archive).where(message_archive.c.send_key == send_key)).first()
    if row is None:
        return None
    parts: dict[str, Any] = json.loads(zlib.decompress(row.content))
    return ArchivedMessage(
        send_key=row.send_key,
        content_hash=row.content_hash,
        archived_at=row.archived_at,
        recipient=row.recipient,
        subject=row.subject,
        headers=tuple((str(n), str(v)) for n, v in parts["headers"]),
        text=str(parts["text"]),
        html=str(parts["html"]),
    )


def archived_keys(conn: Connection, send_keys: Sequence[str]) -> set[str]:
    """Which of `send_keys` have their message in the archive (for links from audit rows)."""
    if not send_keys:
        return set()
    query = select(message_archive.c.send_key).where(message_archive.c.send_key.in_(sorted(set(send_keys))))
    return set(conn.execute(query).scalars())


def prune_archive(conn: Connection, now: datetime, retention: timedelta) -> int:
    """Drop messages archived before `now - retention`; the number dropped. The caller commits."""
    result = conn.execute(delete(message_archive).where(message_archive.c.archived_at < now - retention))
    return int(result.rowcount or 0)


_KEEP_FIRST: dict[type, Any] = {}


def _keep_first(conn: Connection) -> Any:
    """The archive's INSERT … ON CONFLICT (send_key) DO NOTHING for the connection's database,
    built once per dialect (every window of every dispatch runs it)."""
    kind = type(conn.dialect)
    if kind not in _KEEP_FIRST:
        _KEEP_FIRST[kind] = conflict_insert(conn, message_archive).on_conflict_do_nothing(index_elements=["send_key"])
    return _KEEP_FIRST[kind]
