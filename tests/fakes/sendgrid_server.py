"""A fake SendGrid v3 Mail Send server on loopback, and a signed Event Webhook poster.

`FakeSendGrid` answers ``POST /v3/mail/send`` the way SendGrid does (202 + ``X-Message-Id``), checks the
bearer token, validates every body against the request schema of SendGrid's own OpenAPI document
(``components.requestBodies.PostMailSend`` in ``shared/vendor-specs/sendgrid-mail-v3.openapi.json``)
and can inject faults (429/500/503, a slow answer past the client's timeout, a dropped connection, a
forced 400) one per request, from a queue or from a hook.

What the fake checks, in three layers, each error tagged in its ``help`` field:

* the official schema, exactly as published (nothing patched or relaxed: a body the document
  refuses is refused, e.g. an object as the top-level ``custom_args``, which it types as a string);
* `runtime rules`: checks SendGrid's API makes that the document does not express (an empty
  ``personalizations`` array, a personalization without recipients, no content and no template,
  malformed addresses, non-string ``custom_args`` values, a control character in a string SendGrid
  writes into a header: subject, names, ``headers``) — ``runtime_rules=False`` turns them off;
* the bearer token (any non-empty token but the literal ``None``, or one of ``api_keys``).

`EventSigner`, `post_events` and `verify` reproduce SendGrid's signed Event Webhook: ECDSA P-256 /
SHA-256 over ``timestamp + raw body``, the signature base64 (DER) in
``X-Twilio-Email-Event-Webhook-Signature``, the timestamp in ``X-Twilio-Email-Event-Webhook-Timestamp``,
the public key base64 (DER SubjectPublicKeyInfo) as the SendGrid settings page shows it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import gzip
import json
import re
import secrets
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypedDict, cast, get_args
from urllib.parse import urlsplit

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

# --------------------------------------------------------------------------------------------------
# The official contract
# --------------------------------------------------------------------------------------------------

#: ``shared/`` sits beside the repository (``/work/main/../shared`` locally and in CI).
_SHARED_SPECS = Path(__file__).resolve().parents[2] / ".." / "shared" / "vendor-specs"
# The shared vendor specs when they sit beside the repository, else the copy kept with the fake.
SPEC_DIR = (
    _SHARED_SPECS if (_SHARED_SPECS / "sendgrid-mail-v3.openapi.json").is_file() else Path(__file__).parent / "vendor"
)
MAIL_SPEC_FILE = "sendgrid-mail-v3.openapi.json"
WEBHOOKS_SPEC_FILE = "sendgrid-webhooks-v3.openapi.json"

#: JSON pointer, inside the mail OpenAPI document, of the ``POST /v3/mail/send`` body schema.
MAIL_SEND_SCHEMA_POINTER = "/components/requestBodies/PostMailSend/content/application~1json/schema"
_SPEC_URI = "urn:touchflow-tests:sendgrid-mail-v3"

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


class SendGridError(TypedDict):
    """One entry of SendGrid's error body ``{"errors": [{"message", "field", "help"}]}``."""

    message: str
    field: str | None
    help: str | None


def _spec_dir(spec_dir: Path | None) -> Path:
    return (spec_dir or SPEC_DIR).resolve()


@cache
def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: SendGrid OpenAPI document missing (shared/ must sit beside the repo)")
    return json.loads(path.read_text(encoding="utf-8"))


def load_mail_spec(spec_dir: Path | None = None) -> dict[str, Any]:
    """The official Mail API OpenAPI 3.1 document (a private copy, safe to modify)."""
    return cast(dict[str, Any], copy.deepcopy(_load_json(_spec_dir(spec_dir) / MAIL_SPEC_FILE)))


@cache
def _cached_validator(spec_dir: Path) -> Draft202012Validator:
    document = load_mail_spec(spec_dir)
    # OpenAPI 3.1 schemas are JSON Schema 2020-12; the document carries no $schema, so say so.
    registry: Registry[Any] = Registry().with_resource(_SPEC_URI, DRAFT202012.create_resource(document))
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": f"{_SPEC_URI}#{MAIL_SEND_SCHEMA_POINTER}",
    }
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=registry)


def mail_send_validator(spec_dir: Path | None = None) -> Draft202012Validator:
    """A 2020-12 validator for the ``POST /v3/mail/send`` body, ``$ref``s resolved inside the document."""
    return _cached_validator(_spec_dir(spec_dir))


def _field_of(error: ValidationError) -> str | None:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        match = re.match(r"^'(.+)' is a required property$", error.message)
        if match:
            parts.append(match.group(1))
    return ".".join(parts) or None


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def schema_errors(body: Any, *, spec_dir: Path | None = None) -> list[SendGridError]:
    """Errors of ``body`` against the official schema, in SendGrid's error shape (``field`` dotted)."""
    validator = mail_send_validator(spec_dir)
    errors = sorted(validator.iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
    return [
        {
            "message": _short(e.message),
            "field": _field_of(e),
            "help": "openapi PostMailSend schema: " + "/".join(str(p) for p in e.absolute_schema_path),
        }
        for e in errors
    ]


_RUNTIME = "sendgrid runtime rule (not expressed in the OpenAPI document)"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _address_errors(value: Any, where: str) -> Iterator[SendGridError]:
    if isinstance(value, dict) and isinstance(value.get("email"), str) and not _EMAIL.match(value["email"]):
        yield {"message": "Does not contain a valid address.", "field": f"{where}.email", "help": _RUNTIME}


def _custom_args_errors(value: Any, where: str) -> Iterator[SendGridError]:
    if isinstance(value, dict):
        for key, arg in value.items():
            if not isinstance(arg, str):
                yield {"message": "custom_args values must be strings.", "field": f"{where}.{key}", "help": _RUNTIME}


#: Characters SendGrid cannot put in a header line: C0/C1 controls, DEL, the Unicode line separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _control_errors(value: Any, where: str) -> Iterator[SendGridError]:
    """A string SendGrid writes into a header (a subject, a name, a custom header) with a control
    character: refused, as the API refuses a header it cannot write (the fake's wording)."""
    if isinstance(value, str) and (found := _CONTROL.search(value)) is not None:
        message = f"The {where} field may not contain control characters (U+{ord(found.group()):04X})."
        yield {"message": message, "field": where, "help": _RUNTIME}


def _header_string_errors(body: dict[str, Any]) -> Iterator[SendGridError]:
    """`_control_errors` for every string of the body that becomes (part of) a header."""
    yield from _control_errors(body.get("subject"), "subject")
    for key in ("from", "reply_to"):
        if isinstance(body.get(key), dict):
            yield from _control_errors(body[key].get("name"), f"{key}.name")
    for j, address in enumerate(body.get("reply_to_list") or []):
        if isinstance(address, dict):
            yield from _control_errors(address.get("name"), f"reply_to_list.{j}.name")
    personalizations = body.get("personalizations")
    for i, p in enumerate(personalizations if isinstance(personalizations, list) else []):
        if not isinstance(p, dict):
            continue
        yield from _control_errors(p.get("subject"), f"personalizations.{i}.subject")
        if isinstance(p.get("from"), dict):
            yield from _control_errors(p["from"].get("name"), f"personalizations.{i}.from.name")
        for kind in ("to", "cc", "bcc"):
            addresses = p.get(kind)
            for j, address in enumerate(addresses if isinstance(addresses, list) else []):
                if isinstance(address, dict):
                    yield from _control_errors(address.get("name"), f"personalizations.{i}.{kind}.{j}.name")
        yield from _custom_header_errors(p.get("headers"), f"personalizations.{i}.headers")
    yield from _custom_header_errors(body.get("headers"), "headers")


def _custom_header_errors(headers: Any, where: str) -> Iterator[SendGridError]:
    for name, value in headers.items() if isinstance(headers, dict) else ():
        yield from _control_errors(name, where)
        yield from _control_errors(value, f"{where}.{name}")


def runtime_rule_errors(body: Any) -> list[SendGridError]:
    """Checks SendGrid's API makes on top of the schema (messages as the API words them, where known)."""
    if not isinstance(body, dict):
        return []
    errors: list[SendGridError] = []
    personalizations = body.get("personalizations")
    if isinstance(personalizations, list) and not personalizations:
        errors.append(
            {
                "message": "The personalizations field is required and must have at least one personalization.",
                "field": "personalizations",
                "help": _RUNTIME,
            }
        )
    for i, p in enumerate(personalizations if isinstance(personalizations, list) else []):
        if not isinstance(p, dict):
            continue
        if isinstance(p.get("to"), list) and not p["to"]:
            errors.append(
                {
                    "message": "The to array is required for all personalization objects, and must have at least"
                    " one email object with a valid email address.",
                    "field": f"personalizations.{i}.to",
                    "help": _RUNTIME,
                }
            )
        for kind in ("to", "cc", "bcc"):
            addresses = p.get(kind)
            for j, address in enumerate(addresses if isinstance(addresses, list) else []):
                errors.extend(_address_errors(address, f"personalizations.{i}.{kind}.{j}"))
        errors.extend(_address_errors(p.get("from"), f"personalizations.{i}.from"))
        errors.extend(_custom_args_errors(p.get("custom_args"), f"personalizations.{i}.custom_args"))
    errors.extend(_address_errors(body.get("from"), "from"))
    errors.extend(_address_errors(body.get("reply_to"), "reply_to"))
    errors.extend(_custom_args_errors(body.get("custom_args"), "custom_args"))
    errors.extend(_header_string_errors(body))
    has_template = isinstance(body.get("template_id"), str) and bool(body["template_id"])
    if not has_template and not body.get("content"):
        errors.append(
            {
                "message": "Unless a valid template_id is provided, the content parameter is required. There must"
                " be at least one defined content block.",
                "field": "content",
                "help": _RUNTIME,
            }
        )
    every_personalization_has_subject = isinstance(personalizations, list) and all(
        isinstance(p, dict) and p.get("subject") for p in personalizations
    )
    if not has_template and not body.get("subject") and not every_personalization_has_subject:
        errors.append(
            {
                "message": "The subject is required. You can get around this requirement if you use a template"
                " with a subject defined or if every personalization has a subject defined.",
                "field": "subject",
                "help": _RUNTIME,
            }
        )
    return errors


def validate_mail_send(body: Any, *, spec_dir: Path | None = None, runtime_rules: bool = True) -> list[SendGridError]:
    """All errors the fake would answer 400 with (empty list: SendGrid would accept the body)."""
    errors = schema_errors(body, spec_dir=spec_dir)
    if runtime_rules:
        errors.extend(runtime_rule_errors(body))
    return errors


def _error_body(message: str, field: str | None = None, help: str | None = None) -> dict[str, Any]:
    return {"errors": [{"message": message, "field": field, "help": help}]}


# --------------------------------------------------------------------------------------------------
# Faults and records
# --------------------------------------------------------------------------------------------------

Fault = (
    tuple[Literal["status"], int]
    | tuple[Literal["status"], int, Mapping[str, str]]
    | tuple[Literal["slow"], float]
    | tuple[Literal["drop"]]
    | tuple[Literal["reject"], int]
)


def check_fault(fault: object) -> Fault:
    """``fault`` if it is a well-formed `Fault`, else ValueError (checked when queued, not when hit)."""
    ok = False
    if isinstance(fault, tuple) and fault:
        kind, args = fault[0], fault[1:]
        if kind == "status":
            ok = (
                len(args) in (1, 2)
                and isinstance(args[0], int)
                and 400 <= args[0] <= 599
                and (len(args) == 1 or isinstance(args[1], Mapping))
            )
        elif kind == "slow":
            ok = len(args) == 1 and isinstance(args[0], int | float) and args[0] >= 0
        elif kind == "drop":
            ok = not args
        elif kind == "reject":
            ok = len(args) == 1 and isinstance(args[0], int) and 400 <= args[0] <= 499
    if not ok:
        raise ValueError(
            f"bad fault {fault!r}: expected ('status', code[, headers]), ('slow', seconds), ('drop',)"
            " or ('reject', 4xx)"
        )
    return cast(Fault, fault)


#: ``hook(n, request)``: n counts mail-send requests from 1; return a fault or None (answer normally).
FaultHook = Callable[[int, "RecordedRequest"], Fault | None]

Outcome = Literal["pending", "accepted", "rejected", "unauthorized", "fault", "dropped", "not_found", "bad_method"]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


@dataclass
class RecordedRequest:
    """Every request the fake received; ``outcome``/``status`` are filled in once it is answered."""

    seq: int
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float
    client_port: int
    fault: Fault | None = None
    outcome: Outcome = "pending"
    status: int | None = None
    #: True when writing the answer failed because the client had gone (e.g. it timed out first).
    client_gone: bool = False

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)


def _effective_custom_args(body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    top = body.get("custom_args")
    top_args = top if isinstance(top, dict) else {}
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        yield dict(top_args)
        return
    for p in personalizations:
        own = p.get("custom_args") if isinstance(p, dict) else None
        # Per SendGrid, personalization custom_args override the message-level ones.
        yield {**top_args, **(own if isinstance(own, dict) else {})}


@dataclass(frozen=True)
class AcceptedMessage:
    """A body answered 202: what SendGrid would have queued for delivery."""

    message_id: str
    body: dict[str, Any]
    headers: dict[str, str]
    received_at: float
    accepted_at: float
    request_seq: int

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)

    def custom_arg_values(self, name: str) -> list[str]:
        """``name``'s value for each envelope (personalization), message-level value as the fallback."""
        return [str(args[name]) for args in _effective_custom_args(self.body) if name in args]

    @property
    def send_keys(self) -> list[str]:
        return self.custom_arg_values("send_key")


@dataclass(frozen=True)
class RejectedMessage:
    """A mail-send request answered 4xx because of its body (schema, runtime rule, bad JSON or a forced reject)."""

    request_seq: int
    status: int
    errors: list[SendGridError]
    body: Any  # the parsed JSON, or None when it did not parse
    raw: bytes
    reason: Literal["invalid", "unparseable", "fault"]


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------

_STATUS_MESSAGES = {
    429: "too many requests",
    500: "internal error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 makes bursts of connects wait 1 s for a SYN retry

    def __init__(self, fake: FakeSendGrid) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for clients that reuse connections (httpx does)
    server_version = "FakeSendGrid/1.0"
    timeout = 30  # an idle keep-alive connection cannot pin a thread forever

    def _fake(self) -> FakeSendGrid:
        return cast(_Server, self.server).fake

    def setup(self) -> None:
        super().setup()
        self._fake()._track(self.connection, opened=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._fake()._track(self.connection, opened=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        self._fake()._handle(self)

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = _dispatch


class FakeSendGrid:
    """A fake SendGrid v3 API on ``127.0.0.1:<ephemeral>``; use as a context manager.

    ``api_keys``: the accepted bearer tokens (None: any non-empty token except ``None``, which is what
    sendgrid-python sends when it has no key). ``runtime_rules``: see the module docstring.

    Order of handling for ``POST /v3/mail/send``: read the whole body (Content-Length; chunked bodies are
    not supported), take the next fault (queue first, then the hook) *before* auth and validation,
    check the bearer token, gunzip if ``Content-Encoding: gzip``, parse, validate, accept. Every
    outcome is recorded before the client can see the answer, so a test may assert right after
    the client call returns — except after a ``slow`` fault, where `wait_for_accepted` / `wait_idle`
    wait for the server to finish.
    """

    def __init__(
        self,
        api_keys: Collection[str] | None = None,
        *,
        spec_dir: Path | None = None,
        runtime_rules: bool = True,
        max_body_bytes: int = 30 * 1024 * 1024,
    ) -> None:
        self._api_keys = frozenset(api_keys) if api_keys is not None else None
        self._spec_dir = spec_dir
        self._runtime_rules = runtime_rules
        self._max_body_bytes = max_body_bytes
        mail_send_validator(spec_dir)  # fail early if the document is missing
        self._cond = threading.Condition(threading.RLock())
        self._requests: list[RecordedRequest] = []
        self._accepted: list[AcceptedMessage] = []
        self._rejected: list[RejectedMessage] = []
        self._faults: deque[Fault] = deque()
        self._hook: FaultHook | None = None
        self._mail_seq = 0
        self._connections: set[socket.socket] = set()
        self._connections_opened = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("FakeSendGrid already started")
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-sendgrid", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, let in-flight requests (a slow fault, say) finish, close idle keep-alives."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        with self._cond:
            idle = list(self._connections)
        for conn in idle:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RD)  # wakes a handler blocked reading the next request
        server.server_close()  # joins the handler threads
        thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeSendGrid is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` — pass as ``SendGridAPIClient(key, host=fake.url)``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def mail_send_url(self) -> str:
        return f"{self.url}/v3/mail/send"

    # -- faults ------------------------------------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each mail-send request consumes one (before auth and validation)."""
        checked = [check_fault(f) for f in faults]
        with self._cond:
            self._faults.extend(checked)

    def clear_faults(self) -> None:
        with self._cond:
            self._faults.clear()
            self._hook = None

    @property
    def pending_faults(self) -> int:
        with self._cond:
            return len(self._faults)

    def set_fault_hook(self, hook: FaultHook | None) -> None:
        """Consulted when the queue is empty; called from server threads, so make it thread-safe."""
        with self._cond:
            self._hook = hook

    def fail_every(self, n: int, fault: Fault) -> None:
        """Every n-th mail-send request (n, 2n, ...) gets ``fault`` (replaces any hook)."""
        if n < 1:
            raise ValueError("n must be >= 1")
        checked = check_fault(fault)
        self.set_fault_hook(lambda seq, _request: checked if seq % n == 0 else None)

    def _next_fault(self, request: RecordedRequest) -> Fault | None:
        with self._cond:
            self._mail_seq += 1
            seq = self._mail_seq
            if self._faults:
                return self._faults.popleft()
            hook = self._hook
        if hook is None:
            return None
        fault = hook(seq, request)
        return None if fault is None else check_fault(fault)

    # -- records -----------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    @property
    def accepted(self) -> list[AcceptedMessage]:
        with self._cond:
            return list(self._accepted)

    @property
    def rejected(self) -> list[RejectedMessage]:
        with self._cond:
            return list(self._rejected)

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (less than `requests` when the client keeps them alive)."""
        with self._cond:
            return self._connections_opened

    def reset(self) -> None:
        """Forget records and faults (the server keeps running)."""
        with self._cond:
            self._requests.clear()
            self._accepted.clear()
            self._rejected.clear()
            self._faults.clear()
            self._hook = None
            self._mail_seq = 0

    def duplicates_by(self, custom_arg: str = "send_key") -> list[str]:
        """Values of ``custom_arg`` carried by more than one accepted envelope, in first-seen order.

        A value counts once per personalization (each is its own email), taken from the
        personalization's ``custom_args`` or else the message-level ``custom_args``.
        """
        counts: Counter[str] = Counter()
        for message in self.accepted:
            counts.update(message.custom_arg_values(custom_arg))
        return [value for value, count in counts.items() if count > 1]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate()`` (re-checked at every record change) holds, or timeout: False."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_for_accepted(self, count: int, timeout: float = 5.0) -> list[AcceptedMessage]:
        if not self.wait_for(lambda: len(self._accepted) >= count, timeout):
            raise AssertionError(f"fake SendGrid accepted {len(self.accepted)} messages, expected {count}")
        return self.accepted

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Until every received request has been answered (or dropped)."""
        return self.wait_for(lambda: all(r.outcome != "pending" for r in self._requests), timeout)

    # -- request handling (server threads) ---------------------------------------------------------

    def _track(self, conn: socket.socket, *, opened: bool) -> None:
        with self._cond:
            if opened:
                self._connections.add(conn)
                self._connections_opened += 1
            else:
                self._connections.discard(conn)

    def _finish(self, request: RecordedRequest, outcome: Outcome, status: int | None) -> None:
        with self._cond:
            request.outcome = outcome
            request.status = status
            self._cond.notify_all()

    def _respond(
        self,
        h: _Handler,
        request: RecordedRequest,
        outcome: Outcome,
        status: int,
        payload: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._finish(request, outcome, status)
        data = json.dumps(payload).encode() if payload is not None else b""
        try:
            h.send_response(status)
            if payload is not None:
                h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                h.send_header(name, value)
            h.end_headers()
            h.wfile.write(data)
            h.wfile.flush()
        except OSError:  # the client went away (timed out) before the answer
            h.close_connection = True
            with self._cond:
                request.client_gone = True
                self._cond.notify_all()

    def _handle(self, h: _Handler) -> None:
        received_at = time.time()
        length = int(h.headers.get("Content-Length") or 0)
        too_big = length > self._max_body_bytes
        raw = h.rfile.read(length) if length and not too_big else b""
        with self._cond:
            request = RecordedRequest(
                seq=len(self._requests) + 1,
                method=h.command,
                path=h.path,
                headers=dict(h.headers.items()),
                body=raw,
                received_at=received_at,
                client_port=int(h.client_address[1]),
            )
            self._requests.append(request)
            self._cond.notify_all()

        if urlsplit(h.path).path.rstrip("/") != "/v3/mail/send":
            self._respond(h, request, "not_found", 404, _error_body("not found"))
            return
        if h.command != "POST":
            self._respond(h, request, "bad_method", 405, _error_body("method not allowed"))
            return
        if too_big:
            h.close_connection = True
            self._respond(h, request, "rejected", 413, _error_body("Payload Too Large"))
            return

        fault = self._next_fault(request)
        request.fault = fault
        if fault is not None:
            if fault[0] == "drop":
                self._finish(request, "dropped", None)  # recorded before the client can see the hang-up
                h.close_connection = True
                with contextlib.suppress(OSError):
                    h.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault[0] == "status":
                self._status_fault(h, request, fault[1], fault[2] if len(fault) == 3 else {})
                return
            if fault[0] == "reject":
                self._reject(h, request, fault[1], [_error_body("Bad Request")["errors"][0]], None, "fault")
                return
            time.sleep(fault[1])  # "slow": then answer normally, typically after the client gave up

        if not self._authorized(h.headers.get("Authorization")):
            message = (
                "authorization required"
                if not h.headers.get("Authorization")
                else "The provided authorization grant is invalid, expired, or revoked"
            )
            self._respond(h, request, "unauthorized", 401, _error_body(message))
            return

        try:
            text = gzip.decompress(raw) if (h.headers.get("Content-Encoding") or "").lower() == "gzip" else raw
            body = json.loads(text)
        except (ValueError, OSError, EOFError):
            self._reject(h, request, 400, [_error_body("Bad Request")["errors"][0]], None, "unparseable")
            return

        errors = validate_mail_send(body, spec_dir=self._spec_dir, runtime_rules=self._runtime_rules)
        if errors:
            self._reject(h, request, 400, errors, body, "invalid")
            return

        with self._cond:
            message_id = f"fake-{len(self._accepted) + 1}-{secrets.token_hex(6)}"
            self._accepted.append(
                AcceptedMessage(
                    message_id=message_id,
                    body=body,
                    headers=request.headers,
                    received_at=received_at,
                    accepted_at=time.time(),
                    request_seq=request.seq,
                )
            )
        self._respond(h, request, "accepted", 202, None, {"X-Message-Id": message_id})

    def _authorized(self, header: str | None) -> bool:
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or token == "None":
            return False
        return self._api_keys is None or token in self._api_keys

    def _reject(
        self,
        h: _Handler,
        request: RecordedRequest,
        status: int,
        errors: list[SendGridError],
        body: Any,
        reason: Literal["invalid", "unparseable", "fault"],
    ) -> None:
        with self._cond:
            self._rejected.append(RejectedMessage(request.seq, status, errors, body, request.body, reason))
        self._respond(h, request, "rejected", status, {"errors": errors})

    def _status_fault(self, h: _Handler, request: RecordedRequest, status: int, extra: Mapping[str, str]) -> None:
        headers: dict[str, str] = {}
        if status == 429:
            retry_after = _header(extra, "Retry-After")
            wait = int(retry_after) if retry_after and retry_after.isdigit() else 1
            headers = {
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time()) + wait),  # epoch seconds, as SendGrid sends it
            }
        headers.update(extra)
        message = _STATUS_MESSAGES.get(status) or HTTPStatus(status).phrase.lower()
        self._respond(h, request, "fault", status, _error_body(message), headers)


# --------------------------------------------------------------------------------------------------
# Signed Event Webhook
# --------------------------------------------------------------------------------------------------

EventKind = Literal[
    "processed",
    "deferred",
    "delivered",
    "open",
    "click",
    "bounce",
    "dropped",
    "spamreport",
    "unsubscribe",
    "group_unsubscribe",
    "group_resubscribe",
]
EVENT_KINDS: frozenset[str] = frozenset(get_args(EventKind))

_EVENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "processed": {},
    "deferred": {"response": "400 try again later", "attempt": "1"},
    "delivered": {"response": "250 2.0.0 OK", "ip": "198.51.100.10", "tls": 1},
    "open": {"useragent": "Mozilla/5.0", "ip": "203.0.113.7", "sg_machine_open": False},
    "click": {"url": "https://example.com/", "url_offset": {"index": 0, "type": "html"}, "useragent": "Mozilla/5.0"},
    "bounce": {
        "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
        "status": "5.1.1",
        "type": "bounce",
        "bounce_classification": "Invalid Address",
    },
    "dropped": {"reason": "Bounced Address", "status": "5.0.0"},
    "spamreport": {},
    "unsubscribe": {},
    "group_unsubscribe": {"asm_group_id": 1, "useragent": "Mozilla/5.0", "ip": "203.0.113.7"},
    "group_resubscribe": {"asm_group_id": 1, "useragent": "Mozilla/5.0", "ip": "203.0.113.7"},
}
_RESERVED_EVENT_KEYS = frozenset(
    {"email", "timestamp", "event", "sg_event_id", "sg_message_id", "smtp-id", "category"}
    | {key for defaults in _EVENT_DEFAULTS.values() for key in defaults}
)


def sg_message_id_for(x_message_id: str, n: int = 0) -> str:
    """An event's ``sg_message_id``: SendGrid prefixes it with the mail-send ``X-Message-Id`` and a dot."""
    return f"{x_message_id}.filterdrecv-fake-{n}"


def make_event(
    kind: EventKind,
    *,
    email: str,
    sg_message_id: str,
    timestamp: int | None = None,
    custom_args: Mapping[str, str] | None = None,
    category: str | Sequence[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One SendGrid event as the webhook posts it; custom args sit at the top level, as SendGrid puts them."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown SendGrid event {kind!r}; one of {sorted(EVENT_KINDS)}")
    event: dict[str, Any] = {
        "email": email,
        "timestamp": timestamp if timestamp is not None else int(time.time()),
        "smtp-id": f"<{sg_message_id.split('.')[0]}@fake.sendgrid.test>",
        "event": kind,
        "sg_event_id": base64.urlsafe_b64encode(secrets.token_bytes(24)).decode().rstrip("="),
        "sg_message_id": sg_message_id,
        **copy.deepcopy(_EVENT_DEFAULTS[kind]),
    }
    if category is not None:
        event["category"] = category if isinstance(category, str) else list(category)
    for key, value in (custom_args or {}).items():
        if key in _RESERVED_EVENT_KEYS:
            raise ValueError(f"custom arg {key!r} would shadow SendGrid's own event field")
        event[key] = value
    event.update(extra)
    return event


def encode_events(events: Sequence[Mapping[str, Any]], line_ending: str = "\r\n") -> bytes:
    """The webhook body: compact JSON array; SendGrid's own signed sample bodies end in CRLF."""
    return (json.dumps(list(events), separators=(",", ":"), ensure_ascii=False) + line_ending).encode()


class EventSigner:
    """SendGrid's side of the signed Event Webhook, with a throwaway ECDSA P-256 key pair."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self._key = private_key if private_key is not None else ec.generate_private_key(ec.SECP256R1())

    @property
    def public_key_der(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def public_key_b64(self) -> str:
        """Base64 DER SubjectPublicKeyInfo: the "Verification Key" SendGrid's settings page shows."""
        return base64.b64encode(self.public_key_der).decode("ascii")

    @property
    def public_key_pem(self) -> str:
        return (
            self._key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode("ascii")
        )

    def sign(self, payload: bytes, timestamp: str) -> str:
        """Base64 DER ECDSA/SHA-256 signature over ``timestamp + payload`` (the raw body bytes)."""
        signature = self._key.sign(timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode("ascii")

    def headers(self, payload: bytes, timestamp: str) -> dict[str, str]:
        return {SIGNATURE_HEADER: self.sign(payload, timestamp), TIMESTAMP_HEADER: timestamp}


def verify(public_key_b64: str, payload: bytes | str, signature_b64: str, timestamp: str) -> bool:
    """True iff ``signature_b64`` is a valid signature of ``timestamp + payload`` under the key (never raises)."""
    data = payload.encode() if isinstance(payload, str) else payload
    try:
        key = serialization.load_der_public_key(base64.b64decode(public_key_b64, validate=True))
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            return False
        key.verify(base64.b64decode(signature_b64, validate=True), timestamp.encode() + data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, TypeError, binascii.Error):
        return False
    return True


Tamper = Literal["payload", "timestamp", "signature"]


def post_events(
    url: str,
    events: Sequence[Mapping[str, Any]],
    signer: EventSigner,
    timestamp: str | None = None,
    tamper: bool | Tamper = False,
    *,
    client: httpx.Client | None = None,
    timeout: float = 5.0,
) -> httpx.Response:
    """POST ``events`` to ``url`` as SendGrid's signed Event Webhook does.

    ``tamper``: True or "payload" sends a body other than the signed one (first event's email changed);
    "timestamp" sends a timestamp one second off the signed one; "signature" signs with another key.
    ``client``: any httpx.Client (a FastAPI/Starlette TestClient works: it posts into the app in-process).
    """
    ts = timestamp if timestamp is not None else str(int(time.time()))
    payload = encode_events(events)
    signature = signer.sign(payload, ts)
    mode: Tamper | None = "payload" if tamper is True else (tamper or None)
    if mode == "payload":
        first = {**events[0], "email": "attacker@example.net"} if events else {"event": "processed"}
        payload = encode_events([first, *events[1:]])
    elif mode == "timestamp":
        ts = str(int(ts) + 1)
    elif mode == "signature":
        signature = EventSigner().sign(payload, ts)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "SendGrid Event API",
        SIGNATURE_HEADER: signature,
        TIMESTAMP_HEADER: ts,
    }
    if client is not None:
        return client.post(url, content=payload, headers=headers)
    with httpx.Client(timeout=timeout) as own:
        return own.post(url, content=payload, headers=headers)


__all__ = [
    "EVENT_KINDS",
    "MAIL_SEND_SCHEMA_POINTER",
    "SIGNATURE_HEADER",
    "SPEC_DIR",
    "TIMESTAMP_HEADER",
    "AcceptedMessage",
    "EventKind",
    "EventSigner",
    "FakeSendGrid",
    "Fault",
    "FaultHook",
    "RecordedRequest",
    "RejectedMessage",
    "SendGridError",
    "check_fault",
    "encode_events",
    "load_mail_spec",
    "mail_send_validator",
    "make_event",
    "post_events",
    "runtime_rule_errors",
    "schema_errors",
    "sg_message_id_for",
    "validate_mail_send",
    "verify",
]
