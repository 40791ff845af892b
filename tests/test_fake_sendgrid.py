"""The fake SendGrid server and signed-webhook poster, exercised with the real sendgrid-python client.

Also pins the client library's behaviour the engine has to live with: which exception each failure
raises, that it never retries by itself, and that it opens a new connection per request.
"""

from __future__ import annotations

import gzip
import http.client
import json
import random
import threading
import time
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from python_http_client.exceptions import (
    BadRequestsError,
    HTTPError,
    InternalServerError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
)
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.mail import (
    Category,
    CustomArg,
    From,
    Mail,
    MailSettings,
    Personalization,
    SandBoxMode,
    To,
)

from tests.fakes.sendgrid_server import (
    SIGNATURE_HEADER,
    SPEC_DIR,
    TIMESTAMP_HEADER,
    EventSigner,
    FakeSendGrid,
    Fault,
    RecordedRequest,
    check_fault,
    make_event,
    post_events,
    sg_message_id_for,
    verify,
)

SPECS = SPEC_DIR  # the shared vendor specs beside the repository, or the fake's own copy
KEY = "SG.test-key"


@pytest.fixture(scope="module")
def official_validator() -> Draft202012Validator:
    """Built here from the document, independently of the fake: the contract as published."""
    document = json.loads((SPECS / "sendgrid-mail-v3.openapi.json").read_text(encoding="utf-8"))
    registry: Registry[Any] = Registry().with_resource("urn:mail", DRAFT202012.create_resource(document))
    body_schema = document["components"]["requestBodies"]["PostMailSend"]["content"]["application/json"]["schema"]
    assert "from" in body_schema["required"]
    return Draft202012Validator(
        {"$ref": "urn:mail#/components/requestBodies/PostMailSend/content/application~1json/schema"},
        registry=registry,
    )


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid(api_keys={KEY}) as server:
        yield server


def client(fake: FakeSendGrid, timeout: float = 2.0, key: str | None = KEY) -> SendGridAPIClient:
    sg = SendGridAPIClient(key, host=fake.url)
    sg.client.timeout = timeout
    return sg


def mail(send_key: str = "enr-1:step-welcome", to: str = "ada@example.com") -> Mail:
    message = Mail(
        from_email=From("success@touchflow.example", "Touchflow"),
        subject="Welcome aboard",
        plain_text_content="Hello Ada",
        html_content="<p>Hello Ada</p>",
    )
    personalization = Personalization()
    personalization.add_to(To(to, "Ada"))
    personalization.add_custom_arg(CustomArg("send_key", send_key))
    message.add_personalization(personalization)
    message.category = [Category("onboarding"), Category("welcome")]
    settings = MailSettings()
    settings.sandbox_mode = SandBoxMode(True)
    message.mail_settings = settings
    return message


# -- the happy path and the contract ------------------------------------------------------------


def test_sendgrid_client_send_is_accepted_recorded_and_valid(
    fake: FakeSendGrid, official_validator: Draft202012Validator
) -> None:
    message = mail()
    response = client(fake).send(message)

    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert message_id.startswith("fake-1-")

    [accepted] = fake.accepted
    assert accepted.message_id == message_id
    assert accepted.body == message.get()
    assert accepted.header("authorization") == f"Bearer {KEY}"
    assert (accepted.header("User-Agent") or "").startswith("sendgrid/")
    assert accepted.send_keys == ["enr-1:step-welcome"]
    assert accepted.body["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert sorted(accepted.body["categories"]) == ["onboarding", "welcome"]
    assert accepted.received_at <= accepted.accepted_at
    assert list(official_validator.iter_errors(accepted.body)) == []
    assert [r.outcome for r in fake.requests] == ["accepted"]
    assert fake.rejected == []


def test_message_ids_are_unique_under_concurrent_sends(fake: FakeSendGrid) -> None:
    ids: list[str] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        response = client(fake).send(mail(send_key=f"k-{i}"))
        with lock:
            ids.append(response.headers["X-Message-Id"])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 16
    assert len(fake.accepted) == 16
    assert fake.duplicates_by() == []


def test_schema_refs_are_resolved_inside_the_document(fake: FakeSendGrid) -> None:
    # MailTo/MailFrom live in components.schemas: an address object without "email" breaks their $ref'd schema.
    body = mail().get()
    body["personalizations"][0]["to"] = [{"name": "no address"}]
    with pytest.raises(BadRequestsError) as caught:
        client(fake).send(body)
    errors = caught.value.to_dict["errors"]
    assert {"message": "'email' is a required property", "field": "personalizations.0.to.0.email"}.items() <= errors[
        0
    ].items()


def test_body_without_from_is_a_400_in_sendgrid_error_shape(fake: FakeSendGrid) -> None:
    body = mail().get()
    del body["from"]
    with pytest.raises(BadRequestsError) as caught:
        client(fake).send(body)

    assert caught.value.status_code == 400
    errors = caught.value.to_dict["errors"]
    assert all(set(e) == {"message", "field", "help"} for e in errors)
    assert [e["field"] for e in errors] == ["from"]
    assert errors[0]["help"].startswith("openapi PostMailSend schema")
    [rejected] = fake.rejected
    assert rejected.reason == "invalid" and rejected.body == body and rejected.status == 400
    assert fake.accepted == []


def test_empty_personalizations_pass_the_schema_but_not_sendgrid(official_validator: Draft202012Validator) -> None:
    body = mail().get()
    body["personalizations"] = []
    # The document has no minItems on personalizations: only the fake's runtime rules catch it.
    assert list(official_validator.iter_errors(body)) == []

    with FakeSendGrid() as strict, FakeSendGrid(runtime_rules=False) as lax:
        with pytest.raises(BadRequestsError) as caught:
            client(strict).send(body)
        [error] = caught.value.to_dict["errors"]
        assert error["field"] == "personalizations"
        assert "runtime rule" in error["help"]
        assert client(lax).send(body).status_code == 202


def test_the_fake_holds_bodies_to_the_document_as_published(
    fake: FakeSendGrid, official_validator: Draft202012Validator
) -> None:
    # The document types the top-level custom_args as a string; sendgrid-python's Mail.get() puts an
    # object there. The fake does not patch the rule: send custom args per personalization instead.
    message = mail()
    message.custom_arg = CustomArg("tenant", "acme")
    body = message.get()
    assert body["custom_args"] == {"tenant": "acme"}
    assert [(list(e.absolute_path), e.validator) for e in official_validator.iter_errors(body)] == [
        (["custom_args"], "type")
    ]
    with pytest.raises(BadRequestsError) as caught:
        client(fake).send(message)
    assert [e["field"] for e in caught.value.to_dict["errors"]] == ["custom_args"]

    per_personalization = mail().get()  # the send key rides in personalizations[0].custom_args
    assert list(official_validator.iter_errors(per_personalization)) == []
    assert client(fake).send(per_personalization).status_code == 202


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("subject", "Welcome\r\nBcc: evil@evil.example"),
        ("subject", "Welcome\x00"),
        ("subject", "Welcome\u2028aboard"),
        ("from.name", "Touchflow\nReply-To: attacker@evil.example"),
        ("personalizations.0.to.0.name", "Ada\rLovelace"),
        ("personalizations.0.to.0.name", "Ada\x85"),
        ("personalizations.0.subject", "Hi\x1b[31m"),
        ("reply_to.name", "Support\x00"),
        ("headers.List-Unsubscribe", "<https://x.example/u>\r\nBcc: evil@evil.example"),
        ("personalizations.0.headers.X-Tag", "a\nb"),
    ],
)
def test_control_characters_in_header_strings_are_refused(fake: FakeSendGrid, where: str, value: str) -> None:
    """SendGrid writes these strings into the message's headers itself: the fake refuses any with a
    control character, as the API refuses a header it cannot write."""
    body = mail().get()
    body["reply_to"] = {"email": "support@touchflow.example", "name": "Support"}
    *path, last = where.split(".")
    node: Any = body
    for part in path:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    node[last] = value
    with pytest.raises(BadRequestsError) as caught:
        client(fake).send(body)
    [error] = caught.value.to_dict["errors"]
    assert error["field"] == where and "control character" in error["message"]
    assert "runtime rule" in error["help"]
    [rejected] = fake.rejected
    assert rejected.reason == "invalid" and fake.accepted == []


def test_printable_unicode_in_header_strings_is_accepted(fake: FakeSendGrid) -> None:
    body = mail().get()
    body["subject"] = '안녕하세요 — =?utf-8?q?not_an_encoding?= "quoted" <angles>; tab-free'
    body["personalizations"][0]["to"][0]["name"] = "김민수, Ünïcødé"
    assert client(fake).send(body).status_code == 202


def test_non_string_custom_arg_values_are_rejected(fake: FakeSendGrid) -> None:
    body = mail().get()
    body["personalizations"][0]["custom_args"]["attempt"] = 2
    with pytest.raises(BadRequestsError) as caught:
        client(fake).send(body)
    assert [e["field"] for e in caught.value.to_dict["errors"]] == ["personalizations.0.custom_args.attempt"]


def test_unparseable_json_is_rejected(fake: FakeSendGrid) -> None:
    response = httpx.post(
        fake.mail_send_url, content=b"{not json", headers={"Authorization": f"Bearer {KEY}"}, timeout=2
    )
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Bad Request", "field": None, "help": None}]}
    assert [r.reason for r in fake.rejected] == ["unparseable"]


# -- auth --------------------------------------------------------------------------------------------


def test_missing_authorization_is_401(fake: FakeSendGrid) -> None:
    response = httpx.post(fake.mail_send_url, json=mail().get(), timeout=2)
    assert response.status_code == 401
    assert response.json() == {"errors": [{"message": "authorization required", "field": None, "help": None}]}
    assert fake.accepted == [] and fake.rejected == []
    assert [r.outcome for r in fake.requests] == ["unauthorized"]


def test_wrong_key_raises_unauthorized(fake: FakeSendGrid) -> None:
    with pytest.raises(UnauthorizedError) as caught:
        client(fake, key="SG.revoked").send(mail())
    assert "invalid, expired, or revoked" in caught.value.to_dict["errors"][0]["message"]


def test_client_without_a_key_sends_bearer_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    with FakeSendGrid() as any_key:
        with pytest.raises(UnauthorizedError):
            client(any_key, key=None).send(mail())
        assert any_key.requests[0].header("Authorization") == "Bearer None"


def test_unknown_path_and_method(fake: FakeSendGrid) -> None:
    assert httpx.get(fake.mail_send_url, timeout=2).status_code == 405
    assert httpx.post(f"{fake.url}/v3/marketing/send", json={}, timeout=2).status_code == 404


# -- faults: which exception the sendgrid client raises, and that it never retries ----------------


@pytest.mark.parametrize(
    ("fault", "exception", "status"),
    [
        (("status", 429, {"Retry-After": "1"}), TooManyRequestsError, 429),
        (("status", 500), InternalServerError, 500),
        (("status", 503), ServiceUnavailableError, 503),
        (("reject", 400), BadRequestsError, 400),
    ],
)
def test_status_faults_raise_and_are_not_retried(
    fake: FakeSendGrid, fault: Fault, exception: type[HTTPError], status: int
) -> None:
    fake.inject(fault)
    sg = client(fake)
    with pytest.raises(exception) as caught:
        sg.send(mail())
    assert caught.value.status_code == status
    assert len(fake.requests) == 1  # no retry by the library
    assert fake.accepted == []

    # The queue is consumed: the next request goes through.
    assert fake.pending_faults == 0
    assert sg.send(mail()).status_code == 202
    assert len(fake.accepted) == 1


def test_429_carries_retry_after_and_rate_limit_reset(fake: FakeSendGrid) -> None:
    fake.inject(("status", 429, {"Retry-After": "2"}))
    before = int(time.time())
    with pytest.raises(TooManyRequestsError) as caught:
        client(fake).send(mail())
    headers = caught.value.headers
    assert headers["Retry-After"] == "2"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert before + 2 <= int(headers["X-RateLimit-Reset"]) <= int(time.time()) + 2
    assert caught.value.to_dict == {"errors": [{"message": "too many requests", "field": None, "help": None}]}
    assert fake.rejected == []  # a rate limit is not a rejected body


def test_explicit_rate_limit_reset_header_wins(fake: FakeSendGrid) -> None:
    fake.inject(("status", 429, {"X-RateLimit-Reset": "1900000000"}))
    with pytest.raises(TooManyRequestsError) as caught:
        client(fake).send(mail())
    assert caught.value.headers["X-RateLimit-Reset"] == "1900000000"


def test_reject_fault_records_the_body_as_rejected(fake: FakeSendGrid) -> None:
    fake.inject(("reject", 400))
    with pytest.raises(BadRequestsError):
        client(fake).send(mail())
    [rejected] = fake.rejected
    assert rejected.reason == "fault"
    assert json.loads(rejected.raw) == mail().get()


def test_slow_answer_times_out_the_client_but_the_message_is_accepted(fake: FakeSendGrid) -> None:
    fake.inject(("slow", 0.6))
    started = time.monotonic()
    with pytest.raises(TimeoutError) as caught:  # the builtin (socket.timeout), not wrapped in URLError
        client(fake, timeout=0.3).send(mail(send_key="ambiguous"))
    assert time.monotonic() - started < 0.55
    assert not isinstance(caught.value, urllib.error.URLError)
    assert fake.accepted == []  # not yet: the server is still sleeping

    [accepted] = fake.wait_for_accepted(1, timeout=3)
    assert accepted.send_keys == ["ambiguous"]
    assert fake.wait_idle(timeout=3)
    assert fake.requests[0].outcome == "accepted"
    # A retry of the ambiguous send is what duplicates look like.
    client(fake).send(mail(send_key="ambiguous"))
    assert fake.duplicates_by("send_key") == ["ambiguous"]


def test_dropped_connection_raises_remote_disconnected(fake: FakeSendGrid) -> None:
    fake.inject(("drop",))
    with pytest.raises(http.client.RemoteDisconnected) as caught:
        client(fake).send(mail())
    assert isinstance(caught.value, ConnectionResetError)  # RemoteDisconnected subclasses it...
    assert not isinstance(caught.value, urllib.error.URLError)  # ...and urllib does not wrap it
    [request] = fake.requests
    assert request.outcome == "dropped" and request.status is None
    assert json.loads(request.body) == mail().get()  # read in full before the hang-up
    assert fake.accepted == []


def test_dropped_connection_with_httpx(fake: FakeSendGrid) -> None:
    fake.inject(("drop",))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(fake.mail_send_url, json=mail().get(), headers={"Authorization": f"Bearer {KEY}"}, timeout=2)


def test_faults_are_consumed_in_order(fake: FakeSendGrid) -> None:
    fake.inject(("status", 503), ("status", 500))
    sg = client(fake)
    with pytest.raises(ServiceUnavailableError):
        sg.send(mail())
    with pytest.raises(InternalServerError):
        sg.send(mail())
    assert sg.send(mail()).status_code == 202
    assert [r.status for r in fake.requests] == [503, 500, 202]


def test_fail_every(fake: FakeSendGrid) -> None:
    fake.fail_every(3, ("status", 503))
    sg = client(fake)
    outcomes: list[int] = []
    for i in range(6):
        try:
            outcomes.append(sg.send(mail(send_key=f"k-{i}")).status_code)
        except ServiceUnavailableError:
            outcomes.append(503)
    assert outcomes == [202, 202, 503, 202, 202, 503]
    assert len(fake.accepted) == 4


def test_fault_hook_for_randomised_load(fake: FakeSendGrid) -> None:
    rng = random.Random(7)
    lock = threading.Lock()
    seen: list[int] = []

    def hook(n: int, request: RecordedRequest) -> Fault | None:
        with lock:
            seen.append(n)
            return ("status", 429) if rng.random() < 0.5 else None

    fake.set_fault_hook(hook)
    sg = client(fake)
    failures = 0
    for i in range(10):
        try:
            sg.send(mail(send_key=f"k-{i}"))
        except TooManyRequestsError:
            failures += 1
    assert seen == list(range(1, 11))
    assert 0 < failures < 10
    assert len(fake.accepted) == 10 - failures
    fake.clear_faults()
    assert sg.send(mail(send_key="after")).status_code == 202


def test_bad_faults_are_refused_when_queued(fake: FakeSendGrid) -> None:
    for bad in [("status", 200), ("slow",), ("drop", 1), ("reject", 500), ("explode",), ()]:
        with pytest.raises(ValueError):
            fake.inject(bad)  # type: ignore[arg-type]
    assert check_fault(("status", 429, {"Retry-After": "1"})) == ("status", 429, {"Retry-After": "1"})


# -- connections ------------------------------------------------------------------------------------


def test_sendgrid_client_opens_a_connection_per_request_httpx_reuses_one(fake: FakeSendGrid) -> None:
    sg = client(fake)
    sg.send(mail())
    sg.send(mail())
    assert fake.connections == 2
    assert {r.header("Connection") for r in fake.requests} == {"close"}

    with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=2) as keep_alive:
        for _ in range(3):
            assert keep_alive.post(fake.mail_send_url, json=mail().get()).status_code == 202
    assert fake.connections == 3
    assert len(fake.accepted) == 5


# -- duplicates -------------------------------------------------------------------------------------


def test_duplicates_by_send_key(fake: FakeSendGrid) -> None:
    sg = client(fake)
    sg.send(mail(send_key="dup"))
    sg.send(mail(send_key="unique"))
    sg.send(mail(send_key="dup"))
    sg.send(mail(send_key="unique", to="bob@example.com"))

    assert fake.duplicates_by() == ["dup", "unique"]
    assert fake.duplicates_by("tenant") == []


def test_reset_forgets_records(fake: FakeSendGrid) -> None:
    client(fake).send(mail())
    fake.inject(("status", 500))
    fake.reset()
    assert (fake.requests, fake.accepted, fake.rejected, fake.pending_faults) == ([], [], [], 0)


# -- signed event webhook ---------------------------------------------------------------------------


def test_signer_signature_verifies_and_tampering_does_not() -> None:
    signer = EventSigner()
    payload = b'[{"email":"ada@example.com","event":"delivered"}]\r\n'
    signature = signer.sign(payload, "1700000000")

    assert verify(signer.public_key_b64, payload, signature, "1700000000")
    assert not verify(signer.public_key_b64, payload.replace(b"delivered", b"bounce"), signature, "1700000000")
    assert not verify(signer.public_key_b64, payload, signature, "1700000001")
    assert not verify(EventSigner().public_key_b64, payload, signature, "1700000000")
    assert not verify(signer.public_key_b64, payload, "not base64!", "1700000000")
    assert not verify("not a key", payload, signature, "1700000000")


def test_signer_agrees_with_sendgrid_python_verifier() -> None:
    signer = EventSigner()
    payload = b'[{"email":"ada@example.com","event":"open"}]\r\n'
    signature = signer.sign(payload, "1700000000")
    webhook = EventWebhook(signer.public_key_b64)  # takes the settings-page key form as-is
    assert webhook.verify_signature(payload.decode(), signature, "1700000000")
    assert not webhook.verify_signature(payload.decode(), signature, "1700000009")
    assert signer.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")


def test_verify_accepts_sendgrids_own_signed_sample() -> None:
    # A body signed by SendGrid itself (public test vector of SendGrid's SDK test suites): the body ends
    # in CRLF, and the signature only holds over the raw bytes, CRLF included.
    key = (
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3G"
        "Rqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
    )
    signature = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
    body = (
        b'[{"email":"hello@world.com","event":"dropped","reason":"Bounced Address",'
        b'"sg_event_id":"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",'
        b'"sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",'
        b'"smtp-id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>","timestamp":1600112492}]\r\n'
    )
    assert verify(key, body, signature, "1600112502")
    assert not verify(key, body.rstrip(b"\r\n"), signature, "1600112502")
    assert not verify(key, body, signature, "1600112503")


class _Receiver:
    """An httpx handler standing in for the engine's webhook endpoint."""

    def __init__(self, public_key_b64: str) -> None:
        self.public_key_b64 = public_key_b64
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        ok = verify(
            self.public_key_b64,
            request.content,
            request.headers.get(SIGNATURE_HEADER, ""),
            request.headers.get(TIMESTAMP_HEADER, ""),
        )
        return httpx.Response(204 if ok else 403)


def _events(message_id: str) -> list[dict[str, Any]]:
    sg_id = sg_message_id_for(message_id)
    common: dict[str, Any] = {"sg_message_id": sg_id, "custom_args": {"send_key": "enr-1:step-welcome"}}
    return [
        make_event("processed", email="ada@example.com", **common),
        make_event("delivered", email="ada@example.com", **common),
        make_event("bounce", email="ada@example.com", **common),
        make_event("group_unsubscribe", email="ada@example.com", asm_group_id=42, **common),
    ]


def test_post_events_signs_like_sendgrid(fake: FakeSendGrid) -> None:
    response = client(fake).send(mail())
    events = _events(response.headers["X-Message-Id"])
    signer = EventSigner()
    receiver = _Receiver(signer.public_key_b64)
    with httpx.Client(transport=httpx.MockTransport(receiver)) as http:
        result = post_events("https://touchflow.example/webhooks/sendgrid", events, signer, client=http)

    assert result.status_code == 204
    [request] = receiver.seen
    assert request.headers["Content-Type"] == "application/json"
    assert request.content.endswith(b"]\r\n")
    assert int(request.headers[TIMESTAMP_HEADER]) == pytest.approx(time.time(), abs=5)
    posted = json.loads(request.content)
    assert [e["event"] for e in posted] == ["processed", "delivered", "bounce", "group_unsubscribe"]
    assert all(e["send_key"] == "enr-1:step-welcome" for e in posted)  # custom args at the top level
    assert all(e["sg_message_id"].startswith(response.headers["X-Message-Id"] + ".") for e in posted)
    assert {"email", "timestamp", "event", "sg_event_id", "sg_message_id"} <= set(posted[0])
    assert len({e["sg_event_id"] for e in posted}) == 4
    assert posted[3]["asm_group_id"] == 42
    assert posted[2]["type"] == "bounce"


@pytest.mark.parametrize("tamper", [True, "payload", "timestamp", "signature"])
def test_post_events_tampered_fails_verification(tamper: bool | str) -> None:
    signer = EventSigner()
    receiver = _Receiver(signer.public_key_b64)
    with httpx.Client(transport=httpx.MockTransport(receiver)) as http:
        result = post_events(
            "https://touchflow.example/webhooks/sendgrid",
            _events("fake-1-abc"),
            signer,
            timestamp="1700000000",
            tamper=tamper,  # type: ignore[arg-type]
            client=http,
        )
    assert result.status_code == 403


def test_post_events_over_loopback() -> None:
    """post_events without a client: a real POST over TCP to a tiny receiver."""
    signer = EventSigner()
    received: list[tuple[bytes, str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((body, self.headers[SIGNATURE_HEADER], self.headers[TIMESTAMP_HEADER]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        assert post_events(url, _events("fake-9-x"), signer, timestamp="1700000000").status_code == 200
    finally:
        thread.join(timeout=5)
        server.server_close()
    [(body, signature, timestamp)] = received
    assert timestamp == "1700000000"
    assert verify(signer.public_key_b64, body, signature, timestamp)


def test_make_event_refuses_unknown_kinds_and_shadowing_custom_args() -> None:
    with pytest.raises(ValueError):
        make_event("opened", email="a@example.com", sg_message_id="x.y")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        make_event("open", email="a@example.com", sg_message_id="x.y", custom_args={"event": "spoof"})


def test_gzip_body_is_accepted(fake: FakeSendGrid) -> None:
    response = httpx.post(
        fake.mail_send_url,
        content=gzip.compress(json.dumps(mail().get()).encode()),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=2,
    )
    assert response.status_code == 202
    assert fake.accepted[0].body == mail().get()


def test_stop_does_not_wait_for_idle_keep_alive_connections() -> None:
    fake = FakeSendGrid().start()
    with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=2) as keep_alive:
        assert keep_alive.post(fake.mail_send_url, json=mail().get()).status_code == 202
        started = time.monotonic()
        fake.stop()  # the handler thread is blocked reading this client's next request
        assert time.monotonic() - started < 1
