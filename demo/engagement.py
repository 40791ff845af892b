"""`touchflow demo-engagement`: what recipients "did" with the demo's emails, posted the way
SendGrid posts it — signed events through the real Event Webhook app.

For every sent email in the store, a seeded draw decides its fate: bounced, or delivered and
then perhaps opened, clicked, unsubscribed. Open rates differ by experiment arm
(`ARM_OPEN_RATES`), so `touchflow experiments` has a real difference to find. The events are
signed with a throwaway ECDSA P-256 key and go through `engine.webhooks.app` in process —
verification, dedupe, storage, suppressions and audit rows all run as in production.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, select

from engine.store.models import contacts, ledger
from engine.webhooks.app import PATH, create_app
from engine.webhooks.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER

BOUNCE_RATE = 0.02
OPEN_RATE = 0.30
ARM_OPEN_RATES = {"year-in-numbers": 0.45, "celebrate": 0.30}
"""The demo's ground truth: the anniversary email's "in numbers" subject gets opened more."""
CLICK_RATE = 0.25  # of opens
UNSUBSCRIBE_RATE = 0.01
BATCH = 500


@dataclass(frozen=True)
class EngagementSummary:
    """What was posted and what the webhook stored."""

    messages: int
    events: int
    stored: int
    suppressed: int


def _fate(send_key: str, variant: str | None, seed: int) -> list[str]:
    rng = random.Random(hashlib.sha256(f"{seed}:{send_key}".encode()).digest())
    if rng.random() < BOUNCE_RATE:
        return ["bounce"]
    events = ["delivered"]
    if rng.random() < ARM_OPEN_RATES.get(variant or "", OPEN_RATE):
        events.append("open")
        if rng.random() < CLICK_RATE:
            events.append("click")
    if rng.random() < UNSUBSCRIBE_RATE:
        events.append("unsubscribe")
    return events


def build_events(engine: Engine, now: datetime, seed: int) -> tuple[int, list[dict[str, Any]]]:
    """SendGrid-shaped events for every sent email (custom args carry the send key)."""
    query = (
        select(ledger.c.send_key, ledger.c.variant, ledger.c.playbook_id, ledger.c.step_id, contacts.c.email)
        .join(contacts, contacts.c.id == ledger.c.contact_id)
        .where(ledger.c.kind == "email", ledger.c.status == "sent")
        .order_by(ledger.c.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    events: list[dict[str, Any]] = []
    stamp = int(now.replace(tzinfo=UTC).timestamp())
    for row in rows:
        for minute, kind in enumerate(_fate(row.send_key, row.variant, seed)):
            event_id = hashlib.sha256(f"{seed}:{row.send_key}:{kind}".encode()).hexdigest()[:22]
            event: dict[str, Any] = {
                "email": row.email,
                "timestamp": stamp + 60 * minute,
                "event": kind,
                "sg_event_id": event_id,
                "sg_message_id": f"demo-{row.send_key[:16]}.filter0001",
                "send_key": row.send_key,
                "playbook": row.playbook_id,
                "step": row.step_id,
                "variant": row.variant or "",
                "category": [row.playbook_id],
            }
            if kind == "bounce":
                event.update(reason="550 5.1.1 mailbox does not exist", status="5.1.1", type="bounce")
            if kind == "click":
                event["url"] = "https://app.touchflow.example/year-in-review"
            events.append(event)
    return len(rows), events


def post_engagement(engine: Engine, now: datetime, seed: int = 7) -> EngagementSummary:
    """Build the events and post them, signed, to the webhook app over `engine`'s store."""
    messages, events = build_events(engine, now, seed)
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    received_at = now.replace(tzinfo=UTC) + timedelta(hours=1)
    app = create_app(engine, base64.b64encode(public).decode(), clock=lambda: received_at)
    timestamp = str(int(received_at.timestamp()))

    async def post_all() -> tuple[int, int]:
        stored = suppressed = 0
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://touchflow.demo") as client:
            for start in range(0, len(events), BATCH):
                body = json.dumps(events[start : start + BATCH]).encode()
                signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
                headers = {
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: base64.b64encode(signature).decode(),
                    TIMESTAMP_HEADER: timestamp,
                }
                response = await client.post(PATH, content=body, headers=headers)
                response.raise_for_status()
                result = response.json()
                stored += int(result["stored"])
                suppressed += int(result["suppressed"])
        return stored, suppressed

    stored, suppressed = asyncio.run(post_all())
    return EngagementSummary(messages, len(events), stored, suppressed)
