"""SendGrid's signed Event Webhook: verify a request, parse its events, apply them to the store.

Three stages, so that each can be tested alone and none needs a web framework:

* `check_request` (pure): headers + raw body + the account's verification key + `now` → the reason
  to reject, or None. SendGrid signs ``timestamp + raw body`` with ECDSA P-256 / SHA-256; the
  timestamp must also lie within a tolerance of `now`, so a captured request cannot be replayed
  later.
* `parse_events` (pure): the raw body → frozen `ProviderEvent`s, every field checked against the
  columns it will land in, so a bad batch is a clear 400 and never a database error.
* `apply_events` (a Connection, the caller's transaction): events → `message_events` rows (deduped
  by SendGrid's event id, since SendGrid delivers at least once), `suppressions` for bounces,
  drops, spam reports and unsubscribes, and an audit row per address newly suppressed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Column, Connection, Table, select

from engine.audit import Decision, Reason, audit_row, record
from engine.store.bulk import conflict_insert
from engine.store.models import contacts, ledger, message_events, suppressions

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
DEFAULT_TOLERANCE = timedelta(minutes=10)

#: Events after which the address must not be emailed again.
SUPPRESSING_EVENTS = frozenset({"bounce", "dropped", "spamreport", "unsubscribe", "group_unsubscribe"})
#: `suppressions.source` of the rows written here.
SOURCE = "sendgrid_webhook"
#: `message_events.send_key` of an event no ledger row claims (the column is NOT NULL). The row is
#: still stored: it dedupes SendGrid's retries and keeps the payload for a later reconciliation.
UNMATCHED_SEND_KEY = ""
#: `audit_log.playbook_id`/`playbook_version` when the event matches no ledger row.
NO_PLAYBOOK = "-"

# Column widths the parsed values must fit (see engine/store/models.py).
_EVENT_LEN = 30
_EMAIL_LEN = 320
_EVENT_ID_LEN = 200
_SEND_KEY_LEN = 64
_ID_LEN = 200
_DETAIL_LEN = 500
# Bound parameters per IN (…) list: well under SQLite's and PostgreSQL's limits.
_CHUNK = 500


# --- verification -----------------------------------------------------------------------------


def load_public_key(public_key_b64: str) -> ec.EllipticCurvePublicKey:
    """The P-256 key of SendGrid's "Verification Key" (base64 DER SubjectPublicKeyInfo).

    Raises ValueError when it is not one; faces call this at start-up to fail before any event.
    """
    try:
        key = serialization.load_der_public_key(base64.b64decode(public_key_b64, validate=True))
    except Exception as exc:  # binascii.Error, ValueError, UnsupportedAlgorithm: all "not a key"
        raise ValueError(f"not a base64 DER public key: {type(exc).__name__}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ECDSA P-256 public key (SendGrid signs with P-256)")
    return key


def verify_signature(public_key_b64: str, payload: bytes, signature_b64: str, timestamp: str) -> bool:
    """True iff `signature_b64` (base64 DER ECDSA) signs ``timestamp + payload`` under the key.

    `payload` is the raw request body, byte for byte. Any malformed input gives False, never an
    exception: the caller answers 403 either way, and an exception would be a 500 that SendGrid
    retries.
    """
    try:
        key = load_public_key(public_key_b64)
        signature = base64.b64decode(signature_b64, validate=True)
        key.verify(signature, timestamp.encode("utf-8") + payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    except Exception:  # garbage of any shape (types, encodings, DER): "not signed by SendGrid"
        return False
    return True


def check_request(
    headers: Mapping[str, str],
    body: bytes,
    public_key_b64: str,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> str | None:
    """Why the request must be rejected (one line, safe to return to the caller), or None.

    `headers` are looked up case-insensitively. `now` is naive UTC or aware. A timestamp further
    than `tolerance` from `now` is rejected even when signed: older means a replay of a captured
    request, newer means a clock we cannot trust.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    signature = lowered.get(SIGNATURE_HEADER.lower())
    timestamp = lowered.get(TIMESTAMP_HEADER.lower())
    if not signature:
        return f"missing {SIGNATURE_HEADER} header"
    if not timestamp:
        return f"missing {TIMESTAMP_HEADER} header"
    # Only plain ASCII digits: the header is signed verbatim, and int() would accept " 1_0 ".
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return f"malformed {TIMESTAMP_HEADER} header"
    age = _epoch(now) - int(timestamp)
    if age > tolerance.total_seconds():
        return "stale timestamp (older than the tolerance: a replay?)"
    if -age > tolerance.total_seconds():
        return "timestamp in the future (beyond the tolerance)"
    if not verify_signature(public_key_b64, body, signature, timestamp):
        return "bad signature"
    return None


def _epoch(now: datetime) -> float:
    # Naive datetimes are UTC throughout the engine (ARCHITECTURE.md, decision 4).
    return (now if now.tzinfo is not None else now.replace(tzinfo=UTC)).timestamp()


# --- parsing ----------------------------------------------------------------------------------


class EventParseError(ValueError):
    """The body is not a SendGrid event batch; the message says where (safe to return)."""


@dataclass(frozen=True)
class ProviderEvent:
    """One SendGrid event, as the store needs it; `raw` is the event object as received."""

    event: str
    email: str
    occurred_at: datetime
    """Naive UTC, from the event's unix `timestamp`."""
    sg_event_id: str | None
    sg_message_id: str | None
    send_key: str | None
    """The `send_key` custom arg: SendGrid copies custom_args to the top level of each event."""
    reason: str | None = None
    status: str | None = None
    url: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, hash=False, repr=False)

    @property
    def provider_event_id(self) -> str:
        """The dedupe key: `sg_event_id`, else a hash of the event (so a retried batch still dedupes)."""
        if self.sg_event_id is not None:
            return self.sg_event_id
        canonical = json.dumps(self.raw, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def message_id(self) -> str | None:
        """The mail send's X-Message-Id: `sg_message_id` is ``<X-Message-Id>.<suffix>``."""
        return self.sg_message_id.split(".", 1)[0] if self.sg_message_id else None


def parse_events(body: bytes) -> list[ProviderEvent]:
    """The events of a webhook body (a JSON array of event objects); EventParseError otherwise.

    The whole batch is rejected when one event is malformed: SendGrid retries a failed batch, and a
    partial apply would make the retry's outcome depend on what was dropped.
    """
    try:
        text = body.decode("utf-8")
        data = json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EventParseError(f"body is not JSON: {type(exc).__name__}") from None
    if not isinstance(data, list):
        raise EventParseError(f"body must be a JSON array of events, got a JSON {_json_type(data)}")
    return [_parse_event(i, item) for i, item in enumerate(data)]


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON, and PostgreSQL's JSONB refuses them.
    raise ValueError(f"{name} is not JSON")


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _parse_event(index: int, item: Any) -> ProviderEvent:
    where = f"event {index}"
    if not isinstance(item, dict):
        raise EventParseError(f"{where}: expected an object, got a JSON {_json_type(item)}")
    event = _text(item, "event", where, _EVENT_LEN, required=True)
    email = _text(item, "email", where, _EMAIL_LEN, required=True)
    assert event is not None and email is not None  # required=True
    stamp = item.get("timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not math.isfinite(stamp):
        raise EventParseError(f"{where}: 'timestamp' must be a unix time in seconds")
    try:
        occurred_at = datetime.fromtimestamp(stamp, UTC).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        raise EventParseError(f"{where}: 'timestamp' {stamp} is out of range") from None
    send_key = item.get("send_key")
    # A custom arg, not SendGrid's own field: other senders on the account may set it to anything.
    # Unusable values fall back to matching by message id rather than rejecting the batch.
    if not (isinstance(send_key, str) and 0 < len(send_key) <= _SEND_KEY_LEN and "\x00" not in send_key):
        send_key = None
    return ProviderEvent(
        event=event,
        email=email,
        occurred_at=occurred_at,
        sg_event_id=_text(item, "sg_event_id", where, _EVENT_ID_LEN),
        sg_message_id=_text(item, "sg_message_id", where, _ID_LEN),
        send_key=send_key,
        reason=_loose_text(item.get("reason")),
        status=_loose_text(item.get("status")),
        url=_loose_text(item.get("url")),
        raw=item,
    )


def _text(item: Mapping[str, Any], key: str, where: str, max_len: int, *, required: bool = False) -> str | None:
    value = item.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise EventParseError(f"{where}: '{key}' must be a non-empty string")
    # PostgreSQL text cannot hold NUL; the widths are the columns' (a longer value would be a 500).
    if "\x00" in value or len(value) > max_len:
        raise EventParseError(f"{where}: '{key}' is longer than {max_len} characters or holds NUL")
    return value


def _loose_text(value: Any) -> str | None:
    # Informational fields: SendGrid sends strings, but a number is not worth a rejected batch.
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


# --- applying ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyResult:
    """What a batch did: events stored, events seen before, addresses newly suppressed, and
    stored events that no ledger row claims."""

    stored: int
    duplicates: int
    suppressed: int
    unmatched: int


@dataclass(frozen=True)
class _Delivery:
    """The ledger row an event is about: what the audit needs of it."""

    send_key: str
    playbook_id: str
    playbook_version: str
    step_id: str
    enrollment_id: int
    account_id: int
    contact_id: int | None
    channel: str
    provider_message_id: str | None
    contact_email: str | None


def apply_events(conn: Connection, events: Sequence[ProviderEvent], now: datetime, run_id: str = SOURCE) -> ApplyResult:
    """Store `events` at `now` (naive UTC) in the caller's transaction.

    Each event becomes one `message_events` row, inserted with ON CONFLICT DO NOTHING on
    `provider_event_id`, so a batch SendGrid retries (or two concurrent posts) stores nothing
    twice; only newly stored events go on to suppress. An event's send key is its `send_key`
    custom arg, else that of the ledger row whose `provider_message_id` is the event's
    X-Message-Id (and, when one send covered several rows, whose contact has the event's email).
    """
    unique: dict[str, ProviderEvent] = {}
    for ev in events:
        unique.setdefault(ev.provider_event_id, ev)
    if not unique:
        return ApplyResult(stored=0, duplicates=len(events), suppressed=0, unmatched=0)

    matches = _match_deliveries(conn, list(unique.values()))
    # Sorted by the unique key: concurrent batches then take PostgreSQL's index locks in one order
    # and cannot deadlock each other.
    rows = [
        {
            "send_key": _send_key(ev, matches.get(pid)),
            "event": ev.event,
            "occurred_at": ev.occurred_at,
            "provider_event_id": pid,
            "payload": _jsonb_safe(dict(ev.raw)),
        }
        for pid, ev in sorted(unique.items())
    ]
    inserted = _insert_returning(conn, message_events, rows, "provider_event_id")
    new = {pid: ev for pid, ev in unique.items() if pid in inserted}
    unmatched = sum(1 for pid in new if pid not in matches)

    suppressed = _suppress(conn, new, matches, now, run_id)
    return ApplyResult(stored=len(new), duplicates=len(events) - len(new), suppressed=suppressed, unmatched=unmatched)


def _send_key(ev: ProviderEvent, delivery: _Delivery | None) -> str:
    if ev.send_key is not None:
        return ev.send_key
    return delivery.send_key if delivery is not None else UNMATCHED_SEND_KEY


def _suppress(
    conn: Connection,
    new: Mapping[str, ProviderEvent],
    matches: Mapping[str, _Delivery],
    now: datetime,
    run_id: str,
) -> int:
    """Suppress the addresses of newly stored suppressing events; audit each address added."""
    first: dict[str, tuple[str, ProviderEvent]] = {}
    # Earliest event first: an address that bounced then unsubscribed in one batch keeps "bounce".
    for pid, ev in sorted(new.items(), key=lambda kv: (kv[1].occurred_at, kv[0])):
        if ev.event in SUPPRESSING_EVENTS:
            first.setdefault(ev.email.lower(), (pid, ev))
    if not first:
        return 0
    rows = [
        {
            "email": email,
            "reason": ev.event,
            "source": SOURCE,
            "created_at": now,
            "detail": _suppression_detail(ev),
        }
        for email, (_pid, ev) in sorted(first.items())
    ]
    # DO NOTHING keeps the first reason an address was suppressed for (and manual entries).
    added = _insert_returning(conn, suppressions, rows, "email")
    audits = []
    for email in sorted(added):
        pid, ev = first[email]
        audits.append(_suppression_audit(ev, email, matches.get(pid), now, run_id))
    record(conn, audits)
    return len(added)


def _suppression_detail(ev: ProviderEvent) -> str:
    parts = [ev.event, ev.status, ev.reason]
    return ": ".join(p for p in parts if p)[:_DETAIL_LEN].replace("\x00", "")


def _suppression_audit(
    ev: ProviderEvent, email: str, delivery: _Delivery | None, now: datetime, run_id: str
) -> dict[str, Any]:
    send_key = _send_key(ev, delivery) or None
    row = audit_row(
        at=now,
        run_id=run_id,
        playbook_id=delivery.playbook_id if delivery else NO_PLAYBOOK,
        playbook_version=delivery.playbook_version if delivery else NO_PLAYBOOK,
        decision=Decision.SUPPRESSED,
        reason=Reason.SUPPRESSED_OTHER,  # replaced below by SendGrid's event name
        detail=f"{email} suppressed after SendGrid {ev.event} (send key {send_key or '-'})",
        step_id=delivery.step_id if delivery else None,
        enrollment_id=delivery.enrollment_id if delivery else None,
        account_id=delivery.account_id if delivery else None,
        contact_id=delivery.contact_id if delivery else None,
        channel=delivery.channel if delivery else None,
        send_key=send_key,
    )
    # The reason is the provider's own event name (bounce, dropped, spamreport, unsubscribe,
    # group_unsubscribe): stable, and finer than the Reason codes, which fold dropped into
    # "suppressed" and group_unsubscribe into "suppressed_unsubscribed".
    row["reason"] = ev.event
    return row


def _match_deliveries(conn: Connection, events: Sequence[ProviderEvent]) -> dict[str, _Delivery]:
    """provider_event_id → the ledger row each event is about, where one can be told."""
    by_key = _deliveries(conn, ledger.c.send_key, {ev.send_key for ev in events if ev.send_key})
    # send_key is unique in the ledger: one row per key at most.
    matches = {ev.provider_event_id: by_key[ev.send_key][0] for ev in events if ev.send_key in by_key}

    # Without a send key: the ledger keeps X-Message-Id; some channels may keep the full id.
    keyless = [ev for ev in events if ev.send_key is None and ev.sg_message_id]
    wanted = {ev.message_id for ev in keyless} | {ev.sg_message_id for ev in keyless}
    found = _deliveries(conn, ledger.c.provider_message_id, {w for w in wanted if w})
    for ev in keyless:
        candidates = found.get(ev.message_id or "", []) or found.get(ev.sg_message_id or "", [])
        if len(candidates) > 1:
            # One send to several recipients shares one X-Message-Id: the address tells them apart.
            candidates = [d for d in candidates if (d.contact_email or "").lower() == ev.email.lower()]
        if len(candidates) == 1:
            matches[ev.provider_event_id] = candidates[0]
    return matches


def _chunks(values: Iterable[str]) -> Iterator[list[str]]:
    items = sorted(values)
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _deliveries(conn: Connection, column: Column[Any], values: Iterable[str]) -> dict[str, list[_Delivery]]:
    """Ledger rows (with their contact's email) whose `column` is one of `values`, by that value."""
    found: dict[str, list[_Delivery]] = {}
    query = select(
        ledger.c.send_key,
        ledger.c.playbook_id,
        ledger.c.playbook_version,
        ledger.c.step_id,
        ledger.c.enrollment_id,
        ledger.c.account_id,
        ledger.c.contact_id,
        ledger.c.channel,
        ledger.c.provider_message_id,
        contacts.c.email.label("contact_email"),
    ).select_from(ledger.outerjoin(contacts, contacts.c.id == ledger.c.contact_id))
    for chunk in _chunks(values):
        for row in conn.execute(query.where(column.in_(chunk)).order_by(ledger.c.id)):
            delivery = _Delivery(
                send_key=row.send_key,
                playbook_id=row.playbook_id,
                playbook_version=row.playbook_version,
                step_id=row.step_id,
                enrollment_id=row.enrollment_id,
                account_id=row.account_id,
                contact_id=row.contact_id,
                channel=row.channel,
                provider_message_id=row.provider_message_id,
                contact_email=row.contact_email,
            )
            found.setdefault(row._mapping[column.name], []).append(delivery)
    return found


def _insert_returning(conn: Connection, table: Table, rows: list[dict[str, Any]], key: str) -> set[str]:
    """INSERT … ON CONFLICT (key) DO NOTHING RETURNING key: the keys this statement inserted."""
    # RETURNING gives back only the rows actually inserted: how duplicates are told from new events.
    statement = conflict_insert(conn, table).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
    inserted: set[str] = set()
    for start in range(0, len(rows), _CHUNK):
        result = conn.execute(statement, rows[start : start + _CHUNK])
        inserted.update(result.scalars().all())
    return inserted


def _jsonb_safe(value: Any) -> Any:
    """`value` without NUL characters in strings: PostgreSQL's JSONB rejects \\u0000."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_jsonb_safe(k): _jsonb_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonb_safe(v) for v in value]
    return value
