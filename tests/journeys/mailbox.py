"""What recipients actually received: the outbox's .eml files, read with the email library and
joined to their ledger rows (the file name is the send key)."""

from __future__ import annotations

import email
import email.policy
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select

from engine.store.models import ledger


@dataclass(frozen=True)
class Received:
    """One message in the outbox, with the enrollment and the step that sent it."""

    to: str
    subject: str
    template: str
    enrollment_id: int
    step_id: str


def received(engine: Engine, outbox: Path) -> list[Received]:
    """Every message in `outbox`, oldest ledger row first."""
    files = {f.stem: f for f in outbox.glob("*.eml")} if outbox.exists() else {}
    with engine.connect() as conn:
        rows = conn.execute(
            select(ledger.c.send_key, ledger.c.enrollment_id, ledger.c.step_id, ledger.c.payload)
            .where(ledger.c.send_key.in_(sorted(files)))
            .order_by(ledger.c.id)
        ).all()
    out = []
    for row in rows:
        message = email.message_from_bytes(files[row.send_key].read_bytes(), policy=email.policy.default)
        out.append(
            Received(
                to=message["To"].addresses[0].addr_spec,
                subject=str(message["Subject"]),
                template=str(row.payload["template"]),
                enrollment_id=row.enrollment_id,
                step_id=row.step_id,
            )
        )
    assert len(out) == len(files), "a message in the outbox has no ledger row"
    return out


def repeats(messages: list[Received]) -> dict[tuple[int, str, str, str], int]:
    """(enrollment, recipient, template, subject) → how many times, for those received twice or more."""
    counts = Counter((m.enrollment_id, m.to, m.template, m.subject) for m in messages)
    return {key: n for key, n in counts.items() if n > 1}
