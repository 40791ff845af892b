"""The emails of a window, kept as they go out (engine/archive.py), in the commit that marks them
`sending`: the header values every channel writes (already checked), the subject, text and HTML."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache

from sqlalchemy import Connection

from engine.addresses import display_address
from engine.archive import ToArchive, archive_messages
from engine.dispatch.channels import OutgoingEmail

log = logging.getLogger("touchflow.archive")


def archive_window(conn: Connection, emails: Sequence[OutgoingEmail], now: datetime) -> int:
    """Archive `emails`. A message whose headers cannot be written is left out (its channel fails
    it with the reason); a failed write loses the copies, never the sends. Returns the count."""
    kept = []
    for email in emails:
        try:
            kept.append(_parts(email))
        except Exception as exc:  # an unsafe header: the channel refuses this message itself
            log.warning("not archived: %s: %s", email.send_key, exc)
    return archive_messages(conn, kept, now)


def _parts(email: OutgoingEmail) -> ToArchive:
    values = email.header_values  # what every channel writes, checked once per email (cached)
    # No Message-ID: each channel draws its own as it sends (the ledger's `provider_message_id`).
    # As a mail client shows them: a display name quoted where it must be, never re-parsed apart.
    sender = display_address(values.sender_name, values.sender_email)
    recipient = display_address(values.to_name, values.to_email)
    headers = [
        ("From", sender),
        ("To", recipient),
        ("Subject", values.subject),
        ("Date", _date(email.at)),
        *values.tags,
        *email.list_unsubscribe_headers().items(),
    ]
    rendered = email.rendered
    return ToArchive(
        email.send_key,
        rendered.content_hash,
        email.to_email,
        rendered.subject,
        tuple(headers),
        rendered.text,
        rendered.html,
    )


@lru_cache(maxsize=16)
def _date(at: datetime) -> str:
    """The Date header of `at` (a window's emails share their moment: formatted once)."""
    return format_datetime(at.replace(tzinfo=UTC))
