"""SendGrid's signed Event Webhook: verification, parsing, and what a batch does to the store.

The HTTP tests post through `starlette.testclient.TestClient` into the app, signed the way SendGrid
signs (`tests/fakes/sendgrid_server.EventSigner`), on SQLite and PostgreSQL (the `db` fixture).
"""

from __future__ import annotations

import base64
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select
from starlette.testclient import TestClient

from engine.store.models import audit_log, ledger, message_events, suppressions
from engine.webhooks.app import create_app
from engine.webhooks.sendgrid import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    EventParseError,
    check_request,
    parse_events,
    verify_signature,
)
from tests.conftest import REPO
from tests.factories import Store
from tests.fakes.sendgrid_server import (
    EventSigner,
    encode_events,
    make_event,
    post_events,
    sg_message_id_for,
)

NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
NOW_NAIVE = NOW.replace(tzinfo=None)
TS = str(int(NOW.timestamp()))
URL = "/webhooks/sendgrid"
KEY_A = "a" * 64
KEY_B = "b" * 64


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signer() -> EventSigner:
    return EventSigner()


@pytest.fixture
def client(db: Engine, signer: EventSigner) -> Iterator[TestClient]:
    with TestClient(create_app(db, signer.public_key_b64, clock=lambda: NOW)) as c:
        yield c


def add_delivery(db: Engine, send_key: str, message_id: str | None, email: str, playbook_id: str = "onboarding") -> int:
    """A sent email in the ledger, to a new contact with `email`; returns the contact id."""
    store = Store(db, NOW_NAIVE)
    account = store.account()
    contact = store.contact(account, email=email)
    with db.begin() as conn:
        conn.execute(
            insert(ledger),
            [
                {
                    "send_key": send_key,
                    "kind": "email",
                    "channel": "sendgrid",
                    "status": "sent",
                    "playbook_id": playbook_id,
                    "playbook_version": "v1",
                    "step_id": "welcome",
                    "enrollment_id": 1,
                    "account_id": account,
                    "contact_id": contact,
                    "payload": {},
                    "provider_message_id": message_id,
                    "created_at": NOW_NAIVE - timedelta(hours=1),
                    "updated_at": NOW_NAIVE - timedelta(hours=1),
                }
            ],
        )
    return contact


def event(
    kind: Any, email: str, send_key: str | None = KEY_A, msg: str = "msgA", ago: int = 60, **extra: Any
) -> dict[str, Any]:
    """A SendGrid event `ago` seconds before NOW, carrying `send_key` as SendGrid flattens custom args."""
    custom = {"send_key": send_key} if send_key else None
    return make_event(
        kind,
        email=email,
        sg_message_id=sg_message_id_for(msg),
        timestamp=int(NOW.timestamp()) - ago,
        custom_args=custom,
        **extra,
    )


def post(client: TestClient, signer: EventSigner, events: list[dict[str, Any]], **kw: Any) -> Any:
    return post_events(URL, events, signer, timestamp=kw.pop("timestamp", TS), client=client, **kw)


def rows(db: Engine, table: Any) -> list[Any]:
    with db.connect() as conn:
        return list(conn.execute(select(table).order_by(*table.primary_key.columns)))


def count(db: Engine, table: Any) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


# --- the store, through HTTP, on both databases --------------------------------------------------


def test_a_signed_batch_is_stored_with_its_send_keys(db: Engine, client: TestClient, signer: EventSigner) -> None:
    add_delivery(db, KEY_A, "msgA", "ada@acme.example")
    batch = [event(kind, "ada@acme.example") for kind in ("delivered", "open", "click")]

    response = post(client, signer, batch)

    assert response.status_code == 200, response.text
    assert response.json() == {"stored": 3, "duplicates": 0, "suppressed": 0, "unmatched": 0}
    stored = rows(db, message_events)
    assert sorted((r.send_key, r.event) for r in stored) == [(KEY_A, "click"), (KEY_A, "delivered"), (KEY_A, "open")]
    assert {r.provider_event_id for r in stored} == {e["sg_event_id"] for e in batch}
    assert {r.occurred_at for r in stored} == {NOW_NAIVE - timedelta(seconds=60)}
    click = next(r for r in stored if r.event == "click")
    assert click.payload["url"] == "https://example.com/"
    assert count(db, suppressions) == 0  # engagement is only an event


def test_the_same_batch_twice_stores_nothing_the_second_time(
    db: Engine, client: TestClient, signer: EventSigner
) -> None:
    batch = [event("delivered", "ada@acme.example"), event("bounce", "bob@acme.example", send_key=KEY_B)]

    first = post(client, signer, batch)
    second = post(client, signer, batch)

    assert first.json() == {"stored": 2, "duplicates": 0, "suppressed": 1, "unmatched": 2}
    assert second.status_code == 200
    assert second.json() == {"stored": 0, "duplicates": 2, "suppressed": 0, "unmatched": 0}
    assert count(db, message_events) == 2
    assert count(db, suppressions) == 1
    assert count(db, audit_log) == 1  # the retry audits nothing again


def test_duplicates_inside_one_batch_are_stored_once(db: Engine, client: TestClient, signer: EventSigner) -> None:
    one = event("open", "ada@acme.example")
    response = post(client, signer, [one, one])
    assert response.json()["stored"] == 1
    assert response.json()["duplicates"] == 1
    assert count(db, message_events) == 1


def test_bounce_and_unsubscribe_are_suppressed_with_an_audit_row_each(
    db: Engine, client: TestClient, signer: EventSigner
) -> None:
    ada = add_delivery(db, KEY_A, "msgA", "ada@acme.example", playbook_id="onboarding")
    add_delivery(db, KEY_B, "msgB", "bob@acme.example", playbook_id="renewal-90d")
    batch = [
        event("bounce", "Ada@ACME.example", send_key=KEY_A, msg="msgA"),
        event("unsubscribe", "bob@acme.example", send_key=KEY_B, msg="msgB"),
    ]

    response = post(client, signer, batch)

    assert response.json() == {"stored": 2, "duplicates": 0, "suppressed": 2, "unmatched": 0}
    assert [(r.email, r.reason, r.source, r.created_at) for r in rows(db, suppressions)] == [
        ("ada@acme.example", "bounce", "sendgrid_webhook", NOW_NAIVE),
        ("bob@acme.example", "unsubscribe", "sendgrid_webhook", NOW_NAIVE),
    ]
    assert "5.1.1" in rows(db, suppressions)[0].detail  # SendGrid's status and reason are kept
    audits = sorted(rows(db, audit_log), key=lambda r: r.reason)
    assert [(a.decision, a.reason, a.playbook_id, a.send_key) for a in audits] == [
        ("suppressed", "bounce", "onboarding", KEY_A),
        ("suppressed", "unsubscribe", "renewal-90d", KEY_B),
    ]
    assert audits[0].contact_id == ada
    assert audits[0].playbook_version == "v1"
    assert audits[0].at == NOW_NAIVE
    assert "ada@acme.example" in audits[0].detail
    assert KEY_A in audits[0].detail
    assert audits[0].run_id.startswith("sendgrid-webhook/")


@pytest.mark.parametrize("kind", ["dropped", "spamreport", "group_unsubscribe"])
def test_other_suppressing_events(db: Engine, client: TestClient, signer: EventSigner, kind: str) -> None:
    response = post(client, signer, [event(kind, "cy@acme.example")])
    assert response.json()["suppressed"] == 1
    assert [(r.email, r.reason) for r in rows(db, suppressions)] == [("cy@acme.example", kind)]


def test_a_suppression_keeps_its_first_reason(db: Engine, client: TestClient, signer: EventSigner) -> None:
    bounce = event("bounce", "ada@acme.example")
    later = event("spamreport", "ADA@acme.example", ago=10)
    earlier_in_same_batch = event("unsubscribe", "ada@acme.example", ago=30)

    assert post(client, signer, [bounce]).json()["suppressed"] == 1
    second = post(client, signer, [later, earlier_in_same_batch])

    assert second.json() == {"stored": 2, "duplicates": 0, "suppressed": 0, "unmatched": 2}
    assert [(r.email, r.reason) for r in rows(db, suppressions)] == [("ada@acme.example", "bounce")]
    assert [a.reason for a in rows(db, audit_log)] == ["bounce"]


def test_the_earliest_event_of_a_batch_gives_the_reason(db: Engine, client: TestClient, signer: EventSigner) -> None:
    late = event("spamreport", "ada@acme.example", ago=10)
    early = event("bounce", "ada@acme.example", ago=300)
    assert post(client, signer, [late, early]).json()["suppressed"] == 1
    assert [r.reason for r in rows(db, suppressions)] == ["bounce"]


def test_events_without_a_send_key_match_the_ledger_by_message_id(
    db: Engine, client: TestClient, signer: EventSigner
) -> None:
    add_delivery(db, KEY_A, "msgA", "ada@acme.example", playbook_id="onboarding")
    batch = [
        event("open", "ada@acme.example", send_key=None, msg="msgA"),
        event("bounce", "ada@acme.example", send_key=None, msg="msgA"),
        event("delivered", "zed@elsewhere.example", send_key=None, msg="not-ours"),
    ]

    response = post(client, signer, batch)

    assert response.json() == {"stored": 3, "duplicates": 0, "suppressed": 1, "unmatched": 1}
    assert sorted((r.event, r.send_key) for r in rows(db, message_events)) == [
        ("bounce", KEY_A),
        ("delivered", ""),  # kept (it dedupes retries, the payload allows a later match), but no key
        ("open", KEY_A),
    ]
    (audit,) = rows(db, audit_log)
    assert (audit.playbook_id, audit.send_key, audit.step_id) == ("onboarding", KEY_A, "welcome")


def test_a_shared_message_id_is_told_apart_by_the_address(db: Engine, client: TestClient, signer: EventSigner) -> None:
    # One mail send to two recipients: both ledger rows hold the same X-Message-Id.
    add_delivery(db, KEY_A, "shared", "ada@acme.example")
    add_delivery(db, KEY_B, "shared", "bob@acme.example")
    batch = [
        event("open", "BOB@acme.example", send_key=None, msg="shared"),
        event("open", "nobody@acme.example", send_key=None, msg="shared"),
    ]
    assert post(client, signer, batch).json()["unmatched"] == 1
    assert sorted(r.send_key for r in rows(db, message_events)) == ["", KEY_B]


def test_unmatched_suppressions_are_audited_without_a_playbook(
    db: Engine, client: TestClient, signer: EventSigner
) -> None:
    response = post(client, signer, [event("spamreport", "eve@acme.example", send_key=None, msg="unknown")])
    assert response.json() == {"stored": 1, "duplicates": 0, "suppressed": 1, "unmatched": 1}
    (audit,) = rows(db, audit_log)
    assert (audit.decision, audit.reason, audit.playbook_id, audit.send_key) == ("suppressed", "spamreport", "-", None)


def test_a_signed_empty_batch_is_fine(db: Engine, client: TestClient, signer: EventSigner) -> None:
    assert post(client, signer, []).json() == {"stored": 0, "duplicates": 0, "suppressed": 0, "unmatched": 0}


# --- rejected requests store nothing -------------------------------------------------------------


def _forged(client: TestClient, signer: EventSigner, batch: list[dict[str, Any]]) -> Any:
    return post(client, signer, batch, tamper="signature")


def _tampered_body(client: TestClient, signer: EventSigner, batch: list[dict[str, Any]]) -> Any:
    return post(client, signer, batch, tamper="payload")


def _tampered_timestamp(client: TestClient, signer: EventSigner, batch: list[dict[str, Any]]) -> Any:
    return post(client, signer, batch, tamper="timestamp")


def _stale(client: TestClient, signer: EventSigner, batch: list[dict[str, Any]]) -> Any:
    return post(client, signer, batch, timestamp=str(int(NOW.timestamp()) - 601))


def _future(client: TestClient, signer: EventSigner, batch: list[dict[str, Any]]) -> Any:
    return post(client, signer, batch, timestamp=str(int(NOW.timestamp()) + 601))


def _without(header: str) -> Any:
    def send(client: TestClient, signer: EventSigner, batch: list[dict[str, Any]]) -> Any:
        body = encode_events(batch)
        headers = {**signer.headers(body, TS), "Content-Type": "application/json"}
        del headers[header]
        return client.post(URL, content=body, headers=headers)

    return send


def _malformed_timestamp(client: TestClient, signer: EventSigner, batch: list[dict[str, Any]]) -> Any:
    body = encode_events(batch)
    stamp = f" {TS}"  # signed as sent, but not a plain number
    return client.post(URL, content=body, headers=signer.headers(body, stamp))


def _unsigned(client: TestClient, signer: EventSigner, batch: list[dict[str, Any]]) -> Any:
    return client.post(URL, content=encode_events(batch), headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        (_forged, "bad signature"),
        (_tampered_body, "bad signature"),
        (_tampered_timestamp, "bad signature"),
        (_stale, "stale timestamp"),
        (_future, "timestamp in the future"),
        (_without(SIGNATURE_HEADER), "missing X-Twilio-Email-Event-Webhook-Signature"),
        (_without(TIMESTAMP_HEADER), "missing X-Twilio-Email-Event-Webhook-Timestamp"),
        (_malformed_timestamp, "malformed"),
        (_unsigned, "missing"),
    ],
    ids=lambda v: getattr(v, "__name__", None) or str(v)[:20],
)
def test_rejected_requests_store_nothing(
    db: Engine, client: TestClient, signer: EventSigner, attack: Any, reason: str
) -> None:
    batch = [event("bounce", "ada@acme.example"), event("delivered", "bob@acme.example")]

    response = attack(client, signer, batch)

    assert response.status_code == 403
    assert reason in response.json()["error"]
    assert "\n" not in response.text
    assert (count(db, message_events), count(db, suppressions), count(db, audit_log)) == (0, 0, 0)


def test_within_the_tolerance_is_accepted(client: TestClient, signer: EventSigner) -> None:
    assert post(client, signer, [], timestamp=str(int(NOW.timestamp()) - 600)).status_code == 200
    assert post(client, signer, [], timestamp=str(int(NOW.timestamp()) + 600)).status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"this is not json", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b'{"event": "open"}', "JSON array"),
        (b"[NaN]", "not JSON"),
        (b"[1]", "event 0: expected an object"),
        (b'[{"email": "a@b.example", "timestamp": 1}]', "'event'"),
        (b'[{"event": "open", "email": "a@b.example", "timestamp": "yesterday"}]', "'timestamp'"),
        (b"[" * 100_000, "not JSON"),
    ],
)
def test_malformed_bodies_are_400(
    db: Engine, client: TestClient, signer: EventSigner, body: bytes, message: str
) -> None:
    response = client.post(URL, content=body, headers=signer.headers(body, TS))
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert count(db, message_events) == 0


def test_bodies_over_the_limit_are_413(db: Engine, signer: EventSigner) -> None:
    app = create_app(db, signer.public_key_b64, clock=lambda: NOW, max_body_bytes=1000)
    big = encode_events([event("open", f"p{i}@acme.example") for i in range(20)])
    assert len(big) > 1000
    with TestClient(app) as client:
        response = client.post(URL, content=big, headers=signer.headers(big, TS))

        def chunked() -> Iterator[bytes]:  # no Content-Length: the app counts what arrives
            yield big[:600]
            yield big[600:]

        streamed = client.post(URL, content=chunked(), headers=signer.headers(big, TS))
    assert response.status_code == 413
    assert streamed.status_code == 413
    assert count(db, message_events) == 0


def test_healthz_and_methods(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get(URL).status_code == 405


def test_create_app_refuses_a_key_that_is_not_p256(db: Engine) -> None:
    with pytest.raises(ValueError, match="public key"):
        create_app(db, "bm90IGEga2V5")


# --- pure: verification and parsing --------------------------------------------------------------


def test_verify_signature_accepts_sendgrids_signature_only(signer: EventSigner) -> None:
    body = encode_events([event("open", "ada@acme.example")])
    signature = signer.sign(body, TS)
    assert verify_signature(signer.public_key_b64, body, signature, TS)
    assert not verify_signature(signer.public_key_b64, body + b" ", signature, TS)
    assert not verify_signature(signer.public_key_b64, body, signature, str(int(TS) + 1))
    assert not verify_signature(EventSigner().public_key_b64, body, signature, TS)


def test_verify_signature_never_raises_on_garbage(signer: EventSigner) -> None:
    rng = random.Random(20260302)
    body = b"[]"
    good_sig = signer.sign(body, TS)
    good_key = signer.public_key_b64

    def junk() -> str:
        raw = rng.randbytes(rng.randint(0, 120))
        choice = rng.randint(0, 3)
        if choice == 0:
            return base64.b64encode(raw).decode()
        if choice == 1:
            return raw.decode("latin-1")  # not base64, maybe not even ASCII
        if choice == 2:
            return good_sig[: rng.randint(0, len(good_sig))]  # truncated DER
        return good_key[: rng.randint(0, len(good_key))] + base64.b64encode(raw).decode()

    for _ in range(500):
        key = rng.choice([good_key, junk()])
        sig = rng.choice([good_sig, junk()])
        stamp = rng.choice([TS, junk(), "\udcff"])  # a lone surrogate cannot even be encoded
        assert verify_signature(key, rng.randbytes(rng.randint(0, 64)), sig, stamp) is False
    # Wrong types too: a face may hand over whatever it got.
    assert verify_signature(None, body, good_sig, TS) is False  # type: ignore[arg-type]
    assert verify_signature(good_key, "[]", good_sig, TS) is False  # type: ignore[arg-type]
    # A valid EC key on another curve is not SendGrid's.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    der = p384.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert verify_signature(base64.b64encode(der).decode(), body, good_sig, TS) is False


def test_check_request_reads_headers_case_insensitively(signer: EventSigner) -> None:
    body = b"[]"
    headers = {k.lower(): v for k, v in signer.headers(body, TS).items()}
    assert check_request(headers, body, signer.public_key_b64, NOW) is None
    assert check_request(headers, body, signer.public_key_b64, NOW_NAIVE) is None  # naive is UTC
    later = NOW + timedelta(minutes=10, seconds=1)
    assert check_request(headers, body, signer.public_key_b64, later) == (
        "stale timestamp (older than the tolerance: a replay?)"
    )
    assert check_request(headers, body, signer.public_key_b64, later, tolerance=timedelta(minutes=11)) is None


def test_parse_events_reads_sendgrids_fields() -> None:
    raw = event("bounce", "Ada@acme.example", send_key=KEY_A, msg="X-Msg-1", category=["onboarding"])
    (parsed,) = parse_events(encode_events([raw]))
    assert parsed.event == "bounce"
    assert parsed.email == "Ada@acme.example"
    assert parsed.occurred_at == NOW_NAIVE - timedelta(seconds=60)
    assert parsed.occurred_at.tzinfo is None
    assert parsed.sg_event_id == raw["sg_event_id"]
    assert parsed.provider_event_id == raw["sg_event_id"]
    assert parsed.sg_message_id == raw["sg_message_id"]
    assert parsed.message_id == "X-Msg-1"
    assert parsed.send_key == KEY_A
    assert (parsed.status, parsed.url) == ("5.1.1", None)
    assert parsed.reason is not None and "does not exist" in parsed.reason
    assert parsed.raw == raw


def test_parse_events_without_an_event_id_still_has_a_stable_dedupe_key() -> None:
    raw = {"event": "open", "email": "a@b.example", "timestamp": 1_700_000_000, "send_key": 12}
    (one,) = parse_events(encode_events([raw]))
    (two,) = parse_events(encode_events([dict(reversed(list(raw.items())))]))
    assert one.sg_event_id is None
    assert one.provider_event_id == two.provider_event_id
    assert one.provider_event_id.startswith("sha256:")
    assert one.send_key is None  # not a string: fall back to the message id


@pytest.mark.parametrize(
    "body",
    [b"{}", b'"events"', b"null", b'[{"event": "open", "email": "", "timestamp": 1}]', b"[true]"],
)
def test_parse_events_rejects_what_is_not_a_batch(body: bytes) -> None:
    with pytest.raises(EventParseError):
        parse_events(body)


def test_parse_events_rejects_values_that_do_not_fit_the_store() -> None:
    too_long = {"event": "x" * 31, "email": "a@b.example", "timestamp": 1}
    nul = {"event": "open", "email": "a\x00@b.example", "timestamp": 1}
    huge_time = {"event": "open", "email": "a@b.example", "timestamp": 10**20}
    for raw in (too_long, nul, huge_time):
        with pytest.raises(EventParseError):
            parse_events(encode_events([raw]))


def test_the_pure_module_imports_no_web_framework() -> None:
    code = "import sys, engine.webhooks.sendgrid; print(sorted(m for m in sys.modules if m.startswith('starlette')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
