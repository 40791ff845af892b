"""The emails of a window, kept as they go out (engine/archive.py), in the commit that marks them
`sending`: each message's MIME as the channel builds it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection

from engine.archive import ToArchive, archive_messages
from engine.dispatch.channels import OutgoingEmail

log = logging.getLogger("touchflow.archive")


def archive_window(conn: Connection, emails: Sequence[OutgoingEmail], now: datetime) -> int:
    """Archive `emails` (their MIME bytes, the rendered subject, the recipient, the content hash).
    A message whose MIME cannot be built is left out (its channel fails it with the reason);
    a failed write loses the copies, never the sends. Returns the messages archived."""
    kept = []
    for email in emails:
        try:
            mime = email.to_mime().as_bytes()
        except Exception as exc:  # an unsafe header: the channel refuses this message itself
            log.warning("not archived: %s: %s", email.send_key, exc)
            continue
        kept.append(
            ToArchive(email.send_key, email.rendered.content_hash, email.to_email, email.rendered.subject, mime)
        )
    return archive_messages(conn, kept, now)
