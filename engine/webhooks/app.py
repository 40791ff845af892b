"""The ASGI face of the SendGrid Event Webhook: ``POST /webhooks/sendgrid`` and ``GET /healthz``.

Everything that decides lives in `engine.webhooks.sendgrid`; this module reads the request, bounds
its size, reads the clock, owns the transaction and maps outcomes to status codes. SendGrid
retries a batch on any non-2xx answer, so only a database failure (500) invites a retry worth
making; 403/400/413 are final for that body.

Run it with e.g. ``uvicorn --factory`` on a function that calls `create_app` with the store's
Engine and the verification key from SendGrid's Event Webhook settings.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.ingest.api.routes import ingest_routes
from engine.unsubscribe import UnsubscribeLinks
from engine.webhooks.sendgrid import (
    DEFAULT_TOLERANCE,
    ApplyResult,
    EventParseError,
    ProviderEvent,
    apply_events,
    check_request,
    load_public_key,
    parse_events,
)
from engine.webhooks.unsubscribe import unsubscribe_routes

#: SendGrid posts batches of a few hundred events (well under 1 MB); 5 MB leaves room and caps memory.
MAX_BODY_BYTES = 5 * 1024 * 1024
PATH = "/webhooks/sendgrid"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    engine: Engine,
    public_key_b64: str | None,
    clock: Callable[[], datetime] = _utc_now,
    *,
    tolerance: timedelta = DEFAULT_TOLERANCE,
    max_body_bytes: int = MAX_BODY_BYTES,
    links: UnsubscribeLinks | None = None,
) -> Starlette:
    """The webhook app over `engine`'s store, verifying with SendGrid's base64 DER P-256 key,
    and with `links`, the signed unsubscribe pages (engine/webhooks/unsubscribe.py).

    `clock` is read once per request (aware or naive UTC); tests pass a fixed one. Raises
    ValueError at once when `public_key_b64` is not a P-256 key, rather than 403 every event.
    Without a key there is no event webhook route (an unverifiable webhook is never served).
    """
    if public_key_b64 is not None:
        load_public_key(public_key_b64)

    async def receive_events(request: Request) -> Response:
        body = await _read_body(request, max_body_bytes)
        if body is None:
            return _error(413, f"body larger than {max_body_bytes} bytes")
        now = clock()
        # The signature covers the raw bytes, so it is checked before any JSON parsing.
        assert public_key_b64 is not None  # the route exists only with a key
        reason = check_request(request.headers, body, public_key_b64, now, tolerance)
        if reason is not None:
            return _error(403, reason)
        try:
            events = parse_events(body)
        except EventParseError as exc:
            return _error(400, str(exc))
        # The database work is blocking: off the event loop, in one transaction.
        result = await run_in_threadpool(_apply, engine, events, _naive_utc(now))
        return JSONResponse(asdict(result))

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = [Route("/healthz", healthz, methods=["GET"])]
    if public_key_b64 is not None:
        routes.append(Route(PATH, receive_events, methods=["POST"]))
    if links is not None:
        routes.extend(unsubscribe_routes(engine, links, clock))
    # The Segment-compatible ingestion API (`/v1/...`): every request needs a live write key.
    routes.extend(ingest_routes(engine, clock))
    return Starlette(routes=routes)


def _apply(engine: Engine, events: list[ProviderEvent], now: datetime) -> ApplyResult:
    # One run id per request: the audit rows of one delivery from SendGrid can be found together.
    run_id = f"sendgrid-webhook/{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        return apply_events(conn, events, now, run_id)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The raw body, or None as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None  # refuse before reading a byte
    chunks: list[bytes] = []
    size = 0
    # Content-Length may be absent (chunked) or lie: count what actually arrives.
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, reason: str) -> Response:
    return JSONResponse({"error": reason}, status_code=status)


def _naive_utc(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo is not None else now
