"""The signed unsubscribe link: `GET /unsubscribe` asks, `POST /unsubscribe` does it.

A GET never unsubscribes: mail scanners and link previews fetch every URL in a message. The
page it shows posts back to the same URL; mail clients that honour `List-Unsubscribe-Post`
(RFC 8058 one-click) post directly. Either way the token must be the HMAC of the send key
(engine/unsubscribe.py), so nobody unsubscribes someone else by guessing a send key.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from engine.audit import Decision, Reason, audit_row, ledger_fields, record
from engine.store.bulk import conflict_insert
from engine.store.models import contacts, ledger, suppressions
from engine.unsubscribe import UnsubscribeLinks

SOURCE = "unsubscribe_link"


@dataclass(frozen=True)
class Unsubscribed:
    """What a valid link did: the address, and whether it was newly suppressed."""

    email: str
    newly: bool


def unsubscribe(conn: Connection, send_key: str, now: datetime, run_id: str) -> Unsubscribed | None:
    """Suppress the address the message `send_key` went to, with an audit row; None when the
    send key is unknown (or its contact is gone). Idempotent: a second click changes nothing."""
    found = conn.execute(
        select(ledger, contacts.c.email.label("contact_email"))
        .join(contacts, contacts.c.id == ledger.c.contact_id)
        .where(ledger.c.send_key == send_key)
    ).first()
    if found is None or not found.contact_email:
        return None
    email = found.contact_email.strip().lower()
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
                    **ledger_fields(found, now, run_id),
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
            return _page(403, "This unsubscribe link is not valid", "Please use the link from the email itself.")
        # Relative: behind a TLS-terminating proxy the absolute URL would say http://.
        action = html.escape("?" + request.url.query, quote=True)
        form = f'<form method="post" action="{action}"><button type="submit">Unsubscribe</button></form>'
        return _page(200, "Unsubscribe from these emails?", "You will not receive these emails any more.", form)

    async def confirm(request: Request) -> Response:
        key, token = request.query_params.get("k", ""), request.query_params.get("t", "")
        if not links.valid(key, token):
            return _page(403, "This unsubscribe link is not valid", "Please use the link from the email itself.")
        now = clock()
        naive = now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo is not None else now
        result = await run_in_threadpool(_apply, engine, key, naive)
        if result is None:
            return _page(404, "We could not find this message", "It may have been removed; contact us to unsubscribe.")
        return _page(200, "You are unsubscribed", f"{result.email} will not receive these emails any more.")

    return [Route("/unsubscribe", ask, methods=["GET"]), Route("/unsubscribe", confirm, methods=["POST"])]


def _apply(engine: Engine, send_key: str, now: datetime) -> Unsubscribed | None:
    with engine.begin() as conn:
        return unsubscribe(conn, send_key, now, f"unsubscribe-link/{uuid.uuid4().hex[:12]}")


def _page(status: int, title: str, text: str, extra: str = "") -> Response:
    body = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{extra}</body></html>"
    )
    return HTMLResponse(body, status_code=status)
