"""A contact's timeline and the message as sent.

The timeline answers "why did this person get this email": `engine.timeline.contact_timeline`
gives the entries, decisions with their reasons and numbers, sends and what the recipient did;
each send kept in the archive links to the message as sent. That page shows the archived MIME
exactly as it went out (`engine.archive.message_as_sent`) — headers, the text part, and the HTML
part in `<iframe sandbox srcdoc>` (no scripts, an opaque origin, under the console's CSP) — never
re-rendered from today's templates.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.responses import Response

from engine.archive import message_as_sent
from engine.console.audit_pages import contacts_named
from engine.console.pages import PageContext
from engine.console.permissions import Page
from engine.store.models import contacts, ledger
from engine.timeline import contact_timeline

LIMIT = 500
"""The latest entries shown: a contact in many journeys for years still gets a page that loads."""
SHOWN_HEADERS = ("From", "To", "Reply-To", "Subject", "Date", "Message-ID", "List-Unsubscribe")


def timeline(ctx: PageContext) -> Response:
    """The timeline of the contact `?contact=` names (an id, an email or an external id)."""
    value = ctx.request.query_params.get("contact", "").strip()
    values: dict[str, Any] = {"title": "Contact timeline", "contact": value, "people": [], "entries": []}
    if not value:
        return ctx.render("timeline.html", values)
    with ctx.console.engine.connect() as conn:
        try:
            contacts_named(conn, value)  # refuses, before any SQL, a number no store holds
            found = contact_timeline(conn, value, limit=LIMIT)
        except LookupError as exc:
            return ctx.render("timeline.html", {**values, "error": exc.args[0]}, status=404)
        query = select(contacts.c.id, contacts.c.name, contacts.c.email, contacts.c.account_id)
        people = conn.execute(query.where(contacts.c.id.in_(found.contacts)).order_by(contacts.c.id)).all()
    values.update(
        people=people,
        ids=found.contacts,
        entries=found.entries,
        truncated=len(found.entries) >= LIMIT,
        limit=LIMIT,
    )
    return ctx.render("timeline.html", values)


def message(ctx: PageContext) -> Response:
    """One message exactly as it was sent, from the archive."""
    key = ctx.request.path_params["send_key"]
    with ctx.console.engine.connect() as conn:
        kept = message_as_sent(conn, key)
        row = conn.execute(
            select(ledger.c.playbook_id, ledger.c.step_id, ledger.c.variant, ledger.c.contact_id, ledger.c.status)
            .where(ledger.c.send_key == key)
            .limit(1)
        ).first()
    if kept is None:
        said = "No message with this send key is in the archive (never sent, or past the retention)."
        return ctx.render("error.html", {"status": 404, "message": said}, status=404)
    parsed = kept.message()
    headers = [(name, str(parsed[name])) for name in SHOWN_HEADERS if parsed[name] is not None]
    try:
        parts = kept.parts()
    except (LookupError, ValueError, UnicodeError):  # a charset Python cannot decode: show the bytes
        parts = {"text/plain": kept.mime.decode("utf-8", errors="replace")}
    values = {
        "title": f"As sent: {kept.subject}",
        "kept": kept,
        "ledger": row,
        "headers": headers,
        "html": parts.get("text/html"),
        "text": parts.get("text/plain"),
        "size": len(kept.mime),
    }
    return ctx.render("message.html", values)


PAGES = [
    Page("/timeline", timeline, "audit", name="timeline"),
    Page("/messages/{send_key}", message, "audit", name="message"),
]
