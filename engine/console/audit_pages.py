"""The audit in the console: every filter `touchflow audit` has, keyset pages newest first, and
the filtered set as a CSV download.

The filters are read from the query string exactly as the command reads its options
(`engine.audit_report`: `parse_moment`, `find_contacts`), so a page, its download and
`touchflow audit --format csv` with the same values show the same rows. Pages are keyset pages
(`audit_page`): the next link carries the cursor of the page's last row; the previous link
carries the cursor its page was fetched after, kept in `back` — a short trail of the pages walked
(`TRAIL` of them; past that, "previous" starts again from the newest). The download is streamed
row by row from a server-side cursor (`stream_csv`), never held in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Connection, Engine
from starlette.datastructures import QueryParams
from starlette.responses import Response, StreamingResponse

from engine.archive import archived_keys
from engine.audit import Decision
from engine.audit_report import AuditFilter, Cursor, audit_page, find_contacts, parse_moment, stream_csv
from engine.console.pages import SECURITY_HEADERS, PageContext
from engine.console.params import BIGINT_MAX, whole_number
from engine.console.permissions import Page

FILTERS = ("playbook", "contact", "account", "reason", "decision", "since", "until")
"""The query parameters that filter, named as `touchflow audit`'s options."""
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
TRAIL = 20
"""How many earlier cursors the previous link remembers (a link stays short however deep the walk)."""
NEWEST = "~"
"""In the trail: a page fetched after nothing (the newest). No cursor is only `~`."""


@dataclass
class AuditQuery:
    """The filter a request asks for, its values as given (to refill the form and build links),
    and what is wrong with them."""

    where: AuditFilter
    values: dict[str, str]
    errors: list[str] = field(default_factory=list)


def read_filter(conn: Connection, params: QueryParams, ctx: PageContext) -> AuditQuery:
    """The `AuditFilter` of the query string; every value that is not one is named in `errors`."""
    values = {k: params[k].strip() for k in FILTERS if params.get(k, "").strip()}
    errors: list[str] = []
    now = ctx.console.clock()
    window: dict[str, Any] = {}
    for key in ("since", "until"):
        if key in values:
            try:
                window[key] = parse_moment(values[key], now)
            except ValueError as exc:
                errors.append(f"{key}: {exc}")
    people = None
    if "contact" in values:
        try:
            people = contacts_named(conn, values["contact"])
        except LookupError as exc:
            errors.append(f"contact: {exc.args[0]}")
    account = None
    if "account" in values:
        account = whole_number(values["account"], 0)
        if account is None:
            errors.append(f"account: '{values['account']}' is not an account id (a whole number)")
    decision = values.get("decision")
    if decision is not None and decision not in {d.value for d in Decision}:
        errors.append(f"decision: '{decision}' is not one of {', '.join(d.value for d in Decision)}")
    where = AuditFilter(
        playbook=values.get("playbook"),
        contacts=people,
        account=account,
        reason=values.get("reason"),
        decision=decision,
        since=window.get("since"),
        until=window.get("until"),
    )
    return AuditQuery(where, values, errors)


def contacts_named(conn: Connection, value: str) -> tuple[int, ...]:
    """`find_contacts`, refusing a number no store could hold with the same LookupError."""
    text = value.strip()
    if text.isascii() and text.isdigit() and whole_number(text, 0) is None:
        raise LookupError(f"no contact '{value}' (looked up by id, email or external id)")
    return find_contacts(conn, text)


def _size(params: QueryParams) -> int:
    size = whole_number(params.get("size"), 0)
    return min(MAX_PAGE_SIZE, max(1, size)) if size is not None else PAGE_SIZE


def _link(values: dict[str, str], size: int, after: str | None, back: list[str]) -> str:
    query = dict(values)
    if size != PAGE_SIZE:
        query["size"] = str(size)
    if after:
        query["after"] = after
    if back:
        query["back"] = ",".join(back[-TRAIL:])
    return "/audit?" + urlencode(query)


def audit(ctx: PageContext) -> Response:
    """One page of the filtered decisions, newest first, with links to the next and previous pages,
    to each contact's timeline and to each message as sent."""
    params = ctx.request.query_params
    size = _size(params)
    after_token = params.get("after", "") or None
    back = [t for t in params.get("back", "").split(",") if t]
    with ctx.console.engine.connect() as conn:
        query = read_filter(conn, params, ctx)
        after = None
        if after_token is not None:
            try:
                after = Cursor.parse(after_token)
                if after.id > BIGINT_MAX:
                    raise ValueError(f"'{after_token[:80]}' is not a page cursor (AT~ID)")
            except ValueError as exc:
                query.errors.append(f"after: {exc}")
        values: dict[str, Any] = {
            "title": "Audit",
            "filters": query.values,
            "decisions": [d.value for d in Decision],
            "errors": query.errors,
            "rows": [],
            "archived": set(),
            "next_url": None,
            "prev_url": None,
            "newest_url": None,
            "csv_url": "/audit/csv?" + urlencode(query.values),
        }
        if query.errors:
            return ctx.render("audit.html", values, status=400)
        page = audit_page(conn, query.where, after=after, size=size)
        keys = [r["send_key"] for r in page.rows if r["send_key"] and r["decision"] == "sent"]
        values["archived"] = archived_keys(conn, keys)
    values["rows"] = page.rows
    if page.next is not None:
        values["next_url"] = _link(query.values, size, page.next.token(), [*back, after_token or NEWEST])
    if after_token is not None:
        # The page before this one was fetched after the trail's last cursor.
        earlier = back[-1] if back else NEWEST
        values["prev_url"] = _link(query.values, size, None if earlier == NEWEST else earlier, back[:-1])
        values["newest_url"] = _link(query.values, size, None, [])
    return ctx.render("audit.html", values)


def audit_csv(ctx: PageContext) -> Response:
    """The filtered set as CSV, streamed: what `touchflow audit --format csv` prints for it."""
    with ctx.console.engine.connect() as conn:
        query = read_filter(conn, ctx.request.query_params, ctx)
    if query.errors:
        return ctx.render("error.html", {"status": 400, "message": "; ".join(query.errors)}, status=400)
    headers = {**SECURITY_HEADERS, "Content-Disposition": 'attachment; filename="touchflow-audit.csv"'}
    return StreamingResponse(_csv_body(ctx.console.engine, query.where), media_type="text/csv", headers=headers)


def _csv_body(engine: Engine, where: AuditFilter) -> Iterator[bytes]:
    # The connection lives as long as the download: rows are read as the client takes them.
    with engine.connect() as conn:
        for chunk in stream_csv(conn, where):
            yield chunk.encode("utf-8")


PAGES = [
    Page("/audit", audit, "audit", name="audit"),
    Page("/audit/csv", audit_csv, "audit", name="audit_csv"),
]
