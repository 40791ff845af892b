"""The HTTP face of the ingestion API: Segment's Tracking API (`/v1/identify`, `/v1/group`,
`/v1/track`, `/v1/batch` and their one-letter aliases), authenticated by write key.

Answers as Segment does: 200 `{"success": true}`; 401 without a live write key; 400 with a
reason for a body that cannot be read or, on a single-message endpoint, a message that cannot be
stored. A batch keeps its good messages and answers 200 with `rejected` (index, messageId,
reason) for the others. A 500 means the store failed: nothing of that request was written, and a
retry (same messageIds) is safe."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.ingest.api.body import (
    BATCH_LIMIT,
    MESSAGE_LIMIT,
    BadRequest,
    check_content_type,
    decode,
    json_problem,
    type_name,
)
from engine.ingest.api.keys import authenticate
from engine.ingest.api.messages import IGNORED, STORED, Message, MessageProblem, read_message
from engine.ingest.api.write import Rejected, apply_messages

#: Segment takes at most 2,500 messages per batch; the ones past it are rejected.
BATCH_COUNT = 2500
#: A request is one transaction; a deadlock or serialization failure on PostgreSQL is retried.
_ATTEMPTS = 3
_RETRYABLE = {"40001", "40P01"}


def ingest_routes(engine: Engine, clock: Callable[[], datetime]) -> list[Route]:
    """The Tracking API's routes over `engine`'s store; `clock` is read once per request."""

    def single(call: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return await _handle(engine, clock, request, call)

        return endpoint

    async def batch(request: Request) -> Response:
        return await _handle(engine, clock, request, "batch")

    routes = []
    for call in ("identify", "group", "track"):
        routes += [
            Route(f"/v1/{call}", single(call), methods=["POST"]),
            Route(f"/v1/{call[0]}", single(call), methods=["POST"]),
        ]
    routes += [Route("/v1/batch", batch, methods=["POST"]), Route("/v1/b", batch, methods=["POST"])]
    return routes


async def _handle(engine: Engine, clock: Callable[[], datetime], request: Request, call: str) -> Response:
    key = _write_key(request.headers.get("authorization"))
    key_id = await run_in_threadpool(_authenticate, engine, key) if key else None
    if key_id is None:
        return _answer(401, "a live write key is required as the HTTP Basic user name", authenticate_header=True)
    limit = BATCH_LIMIT if call == "batch" else MESSAGE_LIMIT
    try:
        check_content_type(request.headers.get("content-type"))
        raw = await _read_body(request, limit)
        body = decode(raw, request.headers.get("content-encoding"), limit)
    except BadRequest as exc:
        return _answer(400, str(exc))
    now = _naive_utc(clock())
    if call != "batch":
        try:
            message = read_message(call, 0, body, now)
        except MessageProblem as exc:
            return _answer(400, str(exc))
        assert message is not None
        rejected = await run_in_threadpool(_store, engine, [message], key_id, now)
        return _answer(400, rejected[0].reason) if rejected else _answer(200)
    try:
        messages, rejected = _read_batch(body, now)
    except BadRequest as exc:
        return _answer(400, str(exc))
    rejected += await run_in_threadpool(_store, engine, messages, key_id, now)
    if not rejected:
        return _answer(200)
    return JSONResponse({"success": True, "rejected": [r.as_dict() for r in sorted(rejected, key=lambda r: r.index)]})


def _read_batch(body: dict[str, Any], now: datetime) -> tuple[list[Message], list[Rejected]]:
    """The storable messages of a batch body, and the rejected ones with their reasons."""
    if "batch" not in body:
        raise BadRequest("'batch' is required: a list of messages")
    items, context = body["batch"], body.get("context")
    if not isinstance(items, list):
        raise BadRequest(f"'batch' must be a list of messages, not {type_name(items)}")
    if context is not None and not isinstance(context, dict):
        raise BadRequest(f"'context' must be an object, not {type_name(context)}")
    problem = json_problem(context, "context") if context else None
    if problem:  # merged into every message: checked once, as a message would be
        raise BadRequest(problem)
    messages: list[Message] = []
    rejected: list[Rejected] = []
    for index, item in enumerate(items):
        message_id = item.get("messageId") if isinstance(item, dict) else None
        shown_id = message_id if isinstance(message_id, str) and len(message_id) <= 200 else None
        try:
            if index >= BATCH_COUNT:
                raise MessageProblem(f"batch: at most {BATCH_COUNT} messages per batch")
            call = item.get("type") if isinstance(item, dict) else None
            if isinstance(item, dict) and call not in STORED + IGNORED:
                choices = ", ".join(STORED + IGNORED)
                raise MessageProblem(
                    "batch: 'type' is required"
                    if call is None
                    else f"batch: 'type' {str(call)[:40]!r} is not one of {choices}"
                )
            message = read_message(call or "message", index, item, now, context or {})
        except MessageProblem as exc:
            rejected.append(Rejected(index, shown_id, str(exc)))
            continue
        if message is not None:
            messages.append(message)
    return messages, rejected


def _store(engine: Engine, messages: list[Message], key_id: int, now: datetime) -> list[Rejected]:
    for attempt in range(_ATTEMPTS):
        try:
            with engine.begin() as conn:
                return apply_messages(conn, messages, key_id, now)
        except OperationalError as exc:
            code = getattr(exc.orig, "sqlstate", None)
            if code not in _RETRYABLE or attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _authenticate(engine: Engine, key: str) -> int | None:
    with engine.connect() as conn:
        return authenticate(conn, key)


def _write_key(header: str | None) -> str | None:
    """The user name of an HTTP Basic `Authorization` header (Segment's write key), or None."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        user = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").split(":", 1)[0]
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user or None


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, or BadRequest as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"body is {declared} bytes; at most {limit // 1024} KB")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"body is over {limit // 1024} KB")
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(status: int, reason: str | None = None, *, authenticate_header: bool = False) -> Response:
    body: dict[str, Any] = {"success": status == 200}
    if reason is not None:
        body["message"] = reason
    headers = {"WWW-Authenticate": 'Basic realm="touchflow"'} if authenticate_header else None
    return JSONResponse(body, status_code=status, headers=headers)


def _naive_utc(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo is not None else now
