"""The claim on ledger rows: `planned → claimed` under a claim token, then `claimed → sending`
just before a request, each guarded by the token so a dispatcher only ever moves its own rows.

Claiming flips `planned → claimed` in its own committed transaction (with SKIP LOCKED on
PostgreSQL), so two dispatchers never take the same row; a crash after the claim leaves
`sending` rows to reconcile, never a blind resend.

A claim never strands: a dispatcher whose batch fails after claiming (a missing concurrency
limit, a lost connection) `release`s what it still holds, and a claim whose dispatcher died
expires `reconcile_after` after `claimed_at` — the real clock's time of the claim — as well as
by the tick's `now`, so a re-run at the same `--now` recovers it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, case, or_, select, update

from engine.store.models import ledger


def claim(
    conn: Connection,
    limit: int,
    now: datetime,
    *,
    playbook_ids: Sequence[str] | None = None,
    token: str | None = None,
    priorities: dict[str, int] | None = None,
    claimed_at: datetime | None = None,
) -> list[int]:
    """Mark up to `limit` planned rows as claimed and return their ids. The caller commits.

    The rows carry `token` (default: a fresh one): `deliver(..., token=...)` handles only rows
    still held under it, so a claim that outlived `reconcile_after` — its rows requeued and
    claimed again elsewhere — sends nothing. With `priorities` (playbook → priority), the
    higher-priority playbooks' rows are claimed first, so caps go to them across batches too.

    `claimed` means "this dispatcher will handle it": nothing has gone out yet. A row becomes
    `sending` only just before its request, a few at a time, so a crash strands at most the
    messages in flight; claimed rows of a dead dispatcher go back to `planned` (reconcile).

    Only rows of `playbook_ids` (the active or selected playbooks) are taken: a paused playbook's
    planned messages wait, and rows of a playbook no longer loaded stay planned, not failed.

    `claimed_at` is the real clock's time of the claim (naive UTC; default: `wall_clock()`), which
    its expiry is measured from.
    """
    due = or_(ledger.c.not_before.is_(None), ledger.c.not_before <= now)
    order: list[Any] = [ledger.c.id]
    if priorities:
        order.insert(0, case(priorities, value=ledger.c.playbook_id, else_=0).desc())
    pick = select(ledger.c.id).where(ledger.c.status == "planned", due).order_by(*order).limit(limit)
    if playbook_ids is not None:
        pick = pick.where(ledger.c.playbook_id.in_(list(playbook_ids)))
    if conn.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    ids = [r.id for r in conn.execute(pick)]
    if not ids:
        return []
    stmt = (
        update(ledger)
        .where(ledger.c.id.in_(ids), ledger.c.status == "planned")
        # A row back from a 429 or a dead dispatcher was cleared before but never sent: it is
        # judged afresh, and until then counts against nobody's cap (engine/policy/gate.py).
        .values(
            status="claimed",
            updated_at=now,
            approved_at=None,
            claim_token=token or uuid.uuid4().hex,
            claimed_at=claimed_at or wall_clock(),
        )
        .returning(ledger.c.id)
    )
    return sorted(r.id for r in conn.execute(stmt))


def mark_sending(conn: Connection, rows: Sequence[Row[Any]], now: datetime) -> set[int]:
    """claimed → sending for the rows this dispatcher still holds (its claim token); returns them.
    A row requeued meanwhile (a claim that outlived `reconcile_after`) is someone else's now."""
    moved: set[int] = set()
    for token in {r.claim_token for r in rows}:
        ids = [r.id for r in rows if r.claim_token == token]
        stmt = _TO_SENDING_UNTOKENED if token is None else _TO_SENDING
        moved.update(conn.execute(stmt, {"ids": ids, "token": token, "at": now}).scalars())
    return moved


def _to_sending(held: Any) -> Any:
    """claimed → sending for the rows `ids` under `held`, returning them: built once (every window
    runs it; building a statement costs more than running it)."""
    return (
        update(ledger)
        .where(ledger.c.id.in_(bindparam("ids", expanding=True)), ledger.c.status == "claimed", held)
        .values(status="sending", updated_at=bindparam("at"))
        .returning(ledger.c.id)
    )


_TO_SENDING = _to_sending(ledger.c.claim_token == bindparam("token"))
_TO_SENDING_UNTOKENED = _to_sending(ledger.c.claim_token.is_(None))


def unmark_sending(conn: Connection, rows: Sequence[Row[Any]], now: datetime) -> int:
    """sending → claimed for rows that provably never left (no send time was handed to the
    sending threads), still under this dispatcher's token; `release` then frees them. The
    caller commits."""
    count = 0
    for token in {r.claim_token for r in rows}:
        ids = [r.id for r in rows if r.claim_token == token]
        stmt = (
            update(ledger)
            .where(ledger.c.id.in_(ids), ledger.c.status == "sending", _held(token))
            .values(status="claimed", updated_at=now)
        )
        count += conn.execute(stmt).rowcount
    return count


def release(conn: Connection, token: str, now: datetime) -> int:
    """claimed → planned for the rows still held under `token` (never `sending` ones: those may
    have gone out); returns how many. Called when a batch fails after its claim, so nothing waits
    for the claim to expire. The caller commits."""
    stmt = (
        update(ledger)
        .where(ledger.c.status == "claimed", ledger.c.claim_token == token)
        .values(status="planned", claim_token=None, claimed_at=None, approved_at=None, updated_at=now)
    )
    return conn.execute(stmt).rowcount


def wall_clock(clock: Callable[[], float] = time.time) -> datetime:
    """The real clock's time (naive UTC, as the store keeps moments): what claims expire by."""
    return datetime.fromtimestamp(clock(), UTC).replace(tzinfo=None)


def _held(token: str | None) -> Any:
    return ledger.c.claim_token.is_(None) if token is None else ledger.c.claim_token == token
