"""The signed unsubscribe link: `GET /unsubscribe` asks, `POST /unsubscribe` does it.

A GET never unsubscribes: mail scanners and link previews fetch every URL in a message. The
page it shows posts back to the same URL; mail clients that honour `List-Unsubscribe-Post`
(RFC 8058 one-click) post directly. Either way the token must be the HMAC of the send key
(engine/unsubscribe.py), so nobody unsubscribes someone else by guessing a send key.

A link unsubscribes the address its message was sent to (`engine.unsubscribe.recipient`), never
the contact's current one, and both pages show that address masked. A message whose address is
not known (sent before it was recorded, with no audit row naming it) gets a 410 page saying so.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from engine.audit import Decision, Reason, audit_row, ledger_fields, record
from engine.store.bulk import conflict_insert
from engine.store.models import suppressions
from engine.unsubscribe import Recipient, UnsubscribeLinks, mask_address, recipient

SOURCE = "unsubscribe_link"


@dataclass(frozen=True)
class Unsubscribed:
    """What a valid link did: the address, and whether it was newly suppressed."""

    email: str
    newly: bool


@dataclass(frozen=True)
class AddressUnknown:
    """The message exists but nobody knows which address it went to: nothing was done."""


def unsubscribe(conn: Connection, send_key: str, now: datetime, run_id: str) -> Unsubscribed | AddressUnknown | None:
    """Suppress the address the message `send_key` was sent to, with an audit row; None when the
    send key is unknown. Idempotent: a second click changes nothing."""
    found = recipient(conn, send_key)
    if found is None:
        return None
    if found.address is None:
        return AddressUnknown()
    email = found.address
    added = conn.execute(
        conflict_insert(conn, suppressions)
        .on_conflict_do_nothing(index_elements=["email"])
        .returning(suppressions.c.email)
        .values(email=email, reason="unsubscribe", source=SOURCE, created_at=now, detail=f"link in {send_key}")
    ).first()
    if added is not None:
        record(
            conn,
            [
                audit_row(
                    **ledger_fields(found.message, now, run_id),
                    decision=Decision.SUPPRESSED,
                    reason=Reason.SUPPRESSED_UNSUBSCRIBED,
                    detail=f"{email} unsubscribed with the link in message {send_key}",
                )
            ],
        )
    return Unsubscribed(email, added is not None)


def unsubscribe_routes(engine: Engine, links: UnsubscribeLinks, clock: Callable[[], datetime]) -> list[Route]:
    """`GET` and `POST /unsubscribe?k=…&t=…` over `engine`'s store."""

    async def ask(request: Request) -> Response:
        key, token = request.query_params.get("k", ""), request.query_params.get("t", "")
        if not links.valid(key, token):
            return _forged()
        found = await run_in_threadpool(_look_up, engine, key)
        if found is None:
            return _not_found()
        if found.address is None:
            return _address_unknown()
        # Relative: behind a TLS-terminating proxy the absolute URL would say http://.
        action = html.escape("?" + request.url.query, quote=True)
        form = f'<form method="post" action="{action}"><button type="submit">Unsubscribe</button></form>'
        who = mask_address(found.address)
        return _page(200, f"Unsubscribe {who} from these emails?", f"{who} will not receive them any more.", form)

    async def confirm(request: Request) -> Response:
        key, token = request.query_params.get("k", ""), request.query_params.get("t", "")
        if not links.valid(key, token):
            return _forged()
        now = clock()
        naive = now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo is not None else now
        result = await run_in_threadpool(_apply, engine, key, naive)
        if result is None:
            return _not_found()
        if isinstance(result, AddressUnknown):
            return _address_unknown()
        who = mask_address(result.email)
        return _page(200, "You are unsubscribed", f"{who} will not receive these emails any more.")

    return [Route("/unsubscribe", ask, methods=["GET"]), Route("/unsubscribe", confirm, methods=["POST"])]


def _forged() -> Response:
    return _page(403, "This unsubscribe link is not valid", "Please use the link from the email itself.")


def _not_found() -> Response:
    return _page(404, "We could not find this message", "It may have been removed; contact us to unsubscribe.")


def _address_unknown() -> Response:
    # 410: this link will never work, and guessing (the contact's address now) could unsubscribe,
    # or reveal, someone the message was never sent to.
    return _page(
        410,
        "We cannot tell which address this message was sent to",
        "It was sent before Touchflow recorded the address of each message, so this link cannot unsubscribe "
        "anyone. Please use the link in a more recent email, or contact us to unsubscribe.",
    )


def _look_up(engine: Engine, send_key: str) -> Recipient | None:
    with engine.connect() as conn:
        return recipient(conn, send_key)


def _apply(engine: Engine, send_key: str, now: datetime) -> Unsubscribed | AddressUnknown | None:
    with engine.begin() as conn:
        return unsubscribe(conn, send_key, now, f"unsubscribe-link/{uuid.uuid4().hex[:12]}")


def _page(status: int, title: str, text: str, extra: str = "") -> Response:
    body = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{extra}</body></html>"
    )
    return HTMLResponse(body, status_code=status)
