"""The SendGrid channel: the official `sendgrid` library, one request per message.

SendGrid has no idempotency key, so the ledger is the only guarantee against duplicates: this
module only maps each request's outcome to what the dispatcher must do with the ledger row —
sent (with the X-Message-Id), retry later (429, 5xx, a connection that never opened), fail for
good (other 4xx, with SendGrid's error text), or *ambiguous* (a timeout or a dropped connection
after the request went out: maybe sent; reconciled from provider events, never resent).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
from collections.abc import Callable
from http.client import HTTPException
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from engine.dispatch.channels import OutgoingEmail, SendError
from engine.dispatch.headers import HeaderError
from engine.dispatch.retry import reset_after, retry_after
from engine.header_text import control_problem, shown

_MAX_RETRY_AFTER_S = 60.0


def mail_body(email: OutgoingEmail, sandbox: bool, unsubscribe_group: int | None) -> dict[str, Any]:
    """The v3 `mail/send` request body (checked against SendGrid's own schema in the tests).

    Names and subject are the message's checked header values (`OutgoingEmail.header_values`):
    SendGrid writes the MIME headers itself, so no string that becomes one may carry a control
    character (`check_body`). The send key travels in the personalization's `custom_args` (an
    object there; the top-level field is a string in SendGrid's schema); events carry it either way.
    """
    values = email.header_values
    custom_args = {
        "send_key": email.send_key,
        "playbook": email.playbook_id,
        "step": email.step_id,
        "variant": email.variant or "",
    }
    body: dict[str, Any] = {
        "personalizations": [{"to": [_address(values.to_email, values.to_name)], "custom_args": custom_args}],
        "from": _address(values.sender_email, values.sender_name),
        "subject": values.subject,
        "content": [
            {"type": "text/plain", "value": email.rendered.text},
            {"type": "text/html", "value": email.rendered.html},
        ],
        "categories": [email.playbook_id[:255]],
        "mail_settings": {"sandbox_mode": {"enable": sandbox}},
    }
    if unsubscribe_group is not None:
        body["asm"] = {"group_id": unsubscribe_group}
    headers = email.list_unsubscribe_headers()
    if headers:
        body["headers"] = headers
    check_body(body)
    return body


def _address(address: str, name: str) -> dict[str, str]:
    return {"email": address, "name": name} if name else {"email": address}


def check_body(body: dict[str, Any]) -> None:
    """HeaderError unless every string of `body` that becomes (part of) a header is free of control
    characters: the last look at what goes out, whoever built it."""
    strings: list[tuple[str, Any]] = [("subject", body.get("subject")), ("from.name", body["from"].get("name"))]
    for i, personalization in enumerate(body["personalizations"]):
        for j, to in enumerate(personalization["to"]):
            strings += [(f"personalizations.{i}.to.{j}.{key}", to.get(key)) for key in ("name", "email")]
        strings += [(f"personalizations.{i}.custom_args.{k}", v) for k, v in personalization["custom_args"].items()]
    strings += [(f"headers.{name}", f"{name}: {value}") for name, value in body.get("headers", {}).items()]
    for where, value in strings:
        problem = control_problem(value) if isinstance(value, str) else None
        if problem is not None:
            raise HeaderError(f"SendGrid body {where}: {shown(value)} {problem}")


class SendGridChannel:
    """Sends through SendGrid. Thread-safe: each sending thread keeps its own client (the library's
    client holds per-request state; each request still opens its own connection)."""

    name = "sendgrid"

    def __init__(
        self,
        api_key: str,
        host: str,
        timeout_s: float,
        sandbox: bool = False,
        unsubscribe_group: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`clock` (unix seconds) reads SendGrid's answers that name a moment: a 429's reset time."""
        if not api_key:
            raise ValueError("the SendGrid API key is empty")
        self._api_key = api_key  # never logged, never part of an error message
        self.host = host.rstrip("/")
        self.timeout_s = timeout_s
        self.sandbox = sandbox
        self.unsubscribe_group = unsubscribe_group
        self.clock = clock
        self._local = threading.local()

    def __repr__(self) -> str:  # keeps the key out of tracebacks and logs
        return f"SendGridChannel(host={self.host!r}, sandbox={self.sandbox})"

    def send(self, email: OutgoingEmail) -> str:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = SendGridAPIClient(api_key=self._api_key, host=self.host)
            client.client.timeout = self.timeout_s  # the library has no default timeout
        body = mail_body(email, self.sandbox, self.unsubscribe_group)
        try:
            response = client.client.mail.send.post(request_body=body)
        except HTTPError as exc:
            raise _from_http_error(exc, self.clock) from None
        except TimeoutError:
            raise SendError("ambiguous", f"no answer within {self.timeout_s:g} s") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ConnectionRefusedError | socket.gaierror):
                raise SendError("retry", f"cannot connect: {reason}") from None  # nothing went out
            if isinstance(reason, TimeoutError | socket.timeout):
                raise SendError("ambiguous", f"no answer within {self.timeout_s:g} s") from None
            raise SendError("ambiguous", f"connection failed mid-request: {reason}") from None
        except (HTTPException, ConnectionError, OSError) as exc:
            # The request may have reached SendGrid before the connection dropped.
            raise SendError("ambiguous", f"connection dropped: {type(exc).__name__}: {exc}") from None
        message_id = _header(response.headers, "X-Message-Id")
        return message_id or f"sendgrid:{email.send_key}"


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name) if hasattr(headers, "get") else None
    return str(value) if value else None


def _from_http_error(exc: HTTPError, clock: Callable[[], float]) -> SendError:
    status = int(getattr(exc, "status_code", 0) or 0)
    text = _error_text(exc)
    if status == 429 or status >= 500:
        wait = _wait_asked(getattr(exc, "headers", None), clock)
        return SendError("retry", f"HTTP {status}: {text}", retry_after=wait)
    return SendError("permanent", f"HTTP {status}: {text}")


def _error_text(exc: HTTPError) -> str:
    raw = getattr(exc, "body", b"") or b""
    raw_text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    try:
        errors = json.loads(raw_text).get("errors", [])
        return "; ".join(str(e.get("message", e)) for e in errors)[:500] or raw_text[:500]
    except (ValueError, AttributeError):
        return raw_text[:500]


def _wait_asked(headers: Any, clock: Callable[[], float]) -> float | None:
    """Seconds to wait: Retry-After, else X-RateLimit-Reset (a unix time), capped."""
    wait = retry_after(_header(headers, "Retry-After"), cap=_MAX_RETRY_AFTER_S, clock=clock)
    if wait is None:
        wait = reset_after(_header(headers, "X-RateLimit-Reset"), cap=_MAX_RETRY_AFTER_S, clock=clock)
    return wait
