"""The guardrails against the store: when each source last received data, whether a playbook is
paused or held this tick, the circuit breaker inside evaluation, `resume`, and the trips a run of
ticks recorded (what `simulate` reports).

Reads are seeks, never scans: a source's `data_sources` row by its key, and for an event name the
newest `events.occurred_at` at or before `now` (the index `ix_events_name_at`), only for the names
a playbook reads. The decisions themselves are `decide.py`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, exists, func, select, true

from engine.audit import Decision, Reason, audit_row, record
from engine.compile import CompiledPlaybook
from engine.compile.conditions import compile_condition
from engine.guard.decide import Stale, Trip, describe_stale, exceeds_count, stale_sources, trips
from engine.guard.sources import EVENT_PREFIX, limits_for
from engine.store.bulk import conflict_insert
from engine.store.models import accounts, audit_log, contacts, data_sources, enrollments, events, playbook_holds

HELD, RESUMED = "held", "resumed"
"""A hold's status: the circuit opened (no enrollments), or released for one tick."""


@dataclass(frozen=True)
class Pause:
    """Why a playbook does not (fully) run this tick: its audit reason, the words, and whether its
    journeys in flight still advance (a held playbook's do: they entered on data judged sane;
    stale data may make goals, exits and step conditions wrong, so a stale playbook's do not)."""

    reason: Reason
    detail: str
    advance: bool


def last_data(conn: Connection, sources: Iterable[str], now: datetime) -> dict[str, datetime | None]:
    """Source → the newest data time at or before `now`: the later of its `data_sources` row and,
    for an event name, the store's own newest event of that name (stores filled by other means)."""
    wanted = sorted(set(sources))
    if not wanted:
        return {}
    ds = data_sources.c
    rows = conn.execute(select(ds.source, ds.last_data_at).where(ds.source.in_(wanted), ds.last_data_at <= now))
    found: dict[str, datetime | None] = {source: None for source in wanted}
    found.update({row.source: row.last_data_at for row in rows})
    for source in wanted:
        if source.startswith(EVENT_PREFIX):
            newest = conn.execute(
                select(func.max(events.c.occurred_at)).where(
                    events.c.name == source.removeprefix(EVENT_PREFIX), events.c.occurred_at <= now
                )
            ).scalar_one_or_none()
            known = found[source]
            if newest is not None and (known is None or newest > known):
                found[source] = newest
    return found


def stale_for(
    conn: Connection, playbook: CompiledPlaybook, configured: Mapping[str, timedelta], now: datetime
) -> list[Stale]:
    """The sources `playbook` reads whose data is older than their limit at `now`."""
    limits = limits_for(playbook.spec, configured)
    return stale_sources(limits, last_data(conn, limits, now), now)


def hold_of(conn: Connection, playbook_id: str) -> Any:
    """The playbook's `playbook_holds` row, or None."""
    return conn.execute(select(playbook_holds).where(playbook_holds.c.playbook_id == playbook_id)).first()


def check_playbook(
    conn: Connection, playbook: CompiledPlaybook, configured: Mapping[str, timedelta], now: datetime, run_id: str
) -> Pause | None:
    """Whether `playbook` runs this tick; a pause is audited here (once per tick it is skipped)."""
    stale = stale_for(conn, playbook, configured, now)
    if stale:
        pause = Pause(Reason.PAUSED_STALE_DATA, describe_stale(stale), advance=False)
    else:
        hold = hold_of(conn, playbook.id)
        if hold is None or hold.status != HELD:
            return None
        numbers = hold.detail or {}
        detail = (
            f"held since {hold.tripped_at.isoformat(sep=' ', timespec='minutes')} "
            f"({numbers.get('text', 'circuit open')}); run `touchflow resume {playbook.id}`"
        )
        pause = Pause(Reason.CIRCUIT_OPEN, detail, advance=True)
    _audit(conn, playbook, now, run_id, Decision.PAUSED, pause.reason, pause.detail)
    return pause


class Circuit:
    """The circuit breaker evaluation consults between counting a tick's occurrences and the
    INSERT: nothing is enrolled when it trips."""

    def trip(self, conn: Connection, playbook: CompiledPlaybook, now: datetime, run_id: str, would: int) -> Trip | None:
        """A `Trip` (audited, and the playbook held) when enrolling `would` subjects is too many."""
        limits = playbook.spec.limits
        if not exceeds_count(would, limits) or not _ever_enrolled(conn, playbook.id):
            return None  # the first enrolling tick is its backlog: exempt
        trip = trips(would, segment_size(conn, playbook, now), limits)
        if trip is None:
            return None
        text = trip.describe(playbook.subject)
        detail = {**trip.as_detail(), "text": text, "run_id": run_id}
        stmt = conflict_insert(conn, playbook_holds).values(
            playbook_id=playbook.id, status=HELD, tripped_at=now, detail=detail, resumed_at=None, resumed_by=None
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[playbook_holds.c.playbook_id],
                set_={"status": HELD, "tripped_at": now, "detail": detail, "resumed_at": None, "resumed_by": None},
            )
        )
        _audit(conn, playbook, now, run_id, Decision.PAUSED, Reason.CIRCUIT_OPEN, f"{text}; nobody enrolled")
        return trip


def release(conn: Connection, playbook_id: str) -> bool:
    """Consume a resume: True (and the hold gone) when the playbook was resumed since it tripped.
    Called in the evaluation's transaction, so that tick enrolls without the circuit, once."""
    hold = hold_of(conn, playbook_id)
    if hold is None or hold.status != RESUMED:
        return False
    conn.execute(delete(playbook_holds).where(playbook_holds.c.playbook_id == playbook_id))
    return True


def segment_size(conn: Connection, playbook: CompiledPlaybook, now: datetime) -> int:
    """How many subjects the segment holds at `now` (every subject when it has none)."""
    ctx = playbook.context(now)
    base: Any = accounts
    if playbook.subject == "contact":
        base = contacts.join(accounts, accounts.c.id == contacts.c.account_id)
    where = compile_condition(playbook.spec.segment, ctx) if playbook.spec.segment is not None else true()
    return int(conn.execute(select(func.count()).select_from(base).where(where)).scalar_one())


def resume(conn: Connection, playbook: CompiledPlaybook, who: str, now: datetime, run_id: str) -> bool:
    """Release a held playbook for its next tick (audited with `who`); False when it is not held."""
    hold = hold_of(conn, playbook.id)
    if hold is None or hold.status != HELD:
        return False
    conn.execute(
        playbook_holds.update()
        .where(playbook_holds.c.playbook_id == playbook.id)
        .values(status=RESUMED, resumed_at=now, resumed_by=who)
    )
    text = (hold.detail or {}).get("text", "circuit open")
    _audit(conn, playbook, now, run_id, Decision.RESUMED, Reason.RESUMED_BY_OPERATOR, f"resumed by {who}; was: {text}")
    return True


@dataclass(frozen=True)
class Tripped:
    """A tick in which a guardrail stopped a playbook (read back from the audit)."""

    at: datetime
    playbook: str
    reason: str
    detail: str


def tripped(conn: Connection, since: datetime | None = None, until: datetime | None = None) -> list[Tripped]:
    """Every tick in [since, until] in which a guardrail stopped a playbook, in order: what
    `simulate` shows as "the ticks that would have tripped it" (a replay writes the same audit)."""
    a = audit_log.c
    stmt = select(a.at, a.playbook_id, a.reason, a.detail).where(
        a.decision == Decision.PAUSED.value,
        a.reason.in_([Reason.PAUSED_STALE_DATA.value, Reason.CIRCUIT_OPEN.value]),
    )
    if since is not None:
        stmt = stmt.where(a.at >= since)
    if until is not None:
        stmt = stmt.where(a.at <= until)
    rows = conn.execute(stmt.order_by(a.at, a.playbook_id, a.id))
    return [Tripped(r.at, r.playbook_id, r.reason, r.detail or "") for r in rows]


def _ever_enrolled(conn: Connection, playbook_id: str) -> bool:
    return bool(conn.execute(select(exists().where(enrollments.c.playbook_id == playbook_id))).scalar())


def _audit(
    conn: Connection,
    playbook: CompiledPlaybook,
    now: datetime,
    run_id: str,
    decision: Decision,
    reason: Reason,
    detail: str,
) -> None:
    row = audit_row(
        at=now,
        run_id=run_id,
        playbook_id=playbook.id,
        playbook_version=playbook.version,
        decision=decision,
        reason=reason,
        detail=detail,
    )
    record(conn, [row])
