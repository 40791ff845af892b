"""The figures of a simulation, aggregated in SQL on the scratch database after its last tick.

Every figure is placed in the ISO week of the moment it happened (weeks start on Monday), through
`tf_simulation_weeks`, a table of the scratch database the queries join on:

- per playbook and week, from the ledger, tasks and enrollments: `enrolled`, `emails` (sent),
  `tasks` (new task rows), `exits`, `goals` (converted), `failed`;
- from the audit rows the ticks wrote: emails `deferred` and `skipped` by reason (distinct
  messages, so a message deferred at three ticks counts once), the paths taken at each `branch`
  step, and every reason the report has no column for (`notable_events`: guardrails, failures…),
  grouped by reason whatever it is, with its first moment and that row's detail;
- across playbooks: emails per contact per week (maximum, 95th percentile) and the busiest contacts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    DateTime,
    MetaData,
    String,
    Table,
    and_,
    cast,
    func,
    inspect,
    select,
)

from engine.audit import Reason
from engine.simulate.periods import nearest_rank, week_bounds
from engine.store.models import audit_log, contacts, enrollments, ledger, tasks

P95 = 95
BUSIEST = 10
"""How many of the busiest contacts a report lists."""

# Tick time → ISO week, as a table of the scratch database so the report joins on it in SQL.
weeks_table = Table(
    "tf_simulation_weeks",
    MetaData(),
    Column("week", String(8), primary_key=True),
    Column("starts", DateTime, nullable=False),
    Column("ends", DateTime, nullable=False),
)

# The reasons of a journey going its ordinary way, and those the deferred / skipped columns show
# by name. Any other reason — a failure, a guardrail, a reason added later — is a notable event.
ROUTINE = frozenset(
    r.value
    for r in Reason
    if r.name.startswith(("DEFERRED_", "CAPPED_", "SUPPRESSED"))
    or r
    in {
        Reason.TRIGGER_MATCHED,
        Reason.DELIVERED_TO_CHANNEL,
        Reason.TASK_CREATED,
        Reason.TASK_UPDATED,
        Reason.WAIT_STEP,
        Reason.JOURNEY_END,
        Reason.GOAL_REACHED,
        Reason.EXIT_CONDITION,
        Reason.EXIT_STEP,
        Reason.CONDITION_FALSE,
        Reason.BRANCH,
        Reason.UPDATE_STEP,
        Reason.WEBHOOK_DELIVERED,
        Reason.CLEARED_BY_POLICY,
        Reason.HOLDOUT,
        Reason.LOWER_PRIORITY,
        Reason.NO_RECIPIENTS,
        Reason.ALREADY_SENT_IN_ENROLLMENT,
        Reason.OVER_CSM_CAPACITY,
        Reason.INVALID_EMAIL,
        Reason.VERSION_CHANGED,
        Reason.STEP_REMOVED,
    }
)


@dataclass(frozen=True)
class WeekFigures:
    """What one playbook (or all of them) did in one ISO week (or the whole period)."""

    playbook: str
    week: str
    enrolled: int = 0
    emails: int = 0
    tasks: int = 0
    exits: int = 0
    goals: int = 0
    failed: int = 0
    deferred: dict[str, int] = field(default_factory=dict)
    """Messages held back, by reason (each message once per week and reason)."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Deliveries and steps not made, by reason."""


COUNTED = ("enrolled", "emails", "tasks", "exits", "goals", "failed")


@dataclass(frozen=True)
class ContactLoad:
    """Emails per contact in one ISO week, over the contacts that got at least one."""

    week: str
    max: int
    p95: int


@dataclass(frozen=True)
class BranchSplit:
    """How many journeys took one path of a branch step in one week."""

    playbook: str
    week: str
    step: str
    path: str
    count: int


@dataclass(frozen=True)
class BusyContact:
    """One of the contacts that would get the most emails: the total and the count per week."""

    contact_id: int
    email: str
    total: int
    per_week: dict[str, int]


@dataclass(frozen=True)
class NotableEvent:
    """A reason with no column of its own (a guardrail, a failure) in one week of one playbook."""

    week: str
    playbook: str
    reason: str
    count: int
    first: datetime
    detail: str


def sum_figures(rows: Iterable[WeekFigures], playbook: str, week: str) -> WeekFigures:
    """The sum of `rows`, reasons included, labelled `playbook` and `week`."""
    totals = dict.fromkeys(COUNTED, 0)
    deferred: dict[str, int] = defaultdict(int)
    skipped: dict[str, int] = defaultdict(int)
    for row in rows:
        for name in COUNTED:
            totals[name] += getattr(row, name)
        for reason, n in row.deferred.items():
            deferred[reason] += n
        for reason, n in row.skipped.items():
            skipped[reason] += n
    return WeekFigures(playbook, week, **totals, deferred=dict(deferred), skipped=dict(skipped))


def create_weeks(conn: Connection, times: Sequence[datetime]) -> list[str]:
    """Write the weeks of `times` into the scratch database's week table; the weeks, in order."""
    bounds = week_bounds(times)
    weeks_table.create(conn)
    conn.execute(weeks_table.insert(), [{"week": w, "starts": s, "ends": e} for w, (s, e) in bounds.items()])
    return list(bounds)


def _in_week(moment: ColumnElement[Any]) -> ColumnElement[bool]:
    return and_(moment >= weeks_table.c.starts, moment < weeks_table.c.ends)


def _measures() -> dict[str, tuple[Table, ColumnElement[Any], list[ColumnElement[bool]]]]:
    # name → (table, the moment that places a row in a week, which rows count)
    e, lg = enrollments.c, ledger.c
    return {
        "enrolled": (enrollments, e.enrolled_at, []),
        "emails": (ledger, lg.updated_at, [lg.kind == "email", lg.status == "sent"]),
        "tasks": (tasks, tasks.c.created_at, []),
        "exits": (enrollments, e.ended_at, [e.status == "exited"]),
        "goals": (enrollments, e.ended_at, [e.status == "converted"]),
        "failed": (ledger, lg.updated_at, [lg.status == "failed"]),
    }


def week_figures(conn: Connection, playbook_ids: Sequence[str], weeks: Sequence[str]) -> list[WeekFigures]:
    """Per playbook and week: the counts (one GROUP BY per measure) and the reasons."""
    counts: dict[str, dict[tuple[str, str], int]] = {}
    for name, (table, moment, where) in _measures().items():
        stmt = (
            select(weeks_table.c.week, table.c.playbook_id, func.count())
            .select_from(table.join(weeks_table, _in_week(moment)))
            .where(*where)
            .group_by(weeks_table.c.week, table.c.playbook_id)
        )
        counts[name] = {(week, pid): int(n) for week, pid, n in conn.execute(stmt)}
    reasons = _held_back(conn)
    return [
        WeekFigures(
            pid,
            week,
            **{name: counts[name].get((week, pid), 0) for name in COUNTED},
            deferred=reasons["deferred"].get((week, pid), {}),
            skipped=reasons["skipped"].get((week, pid), {}),
        )
        for pid in playbook_ids
        for week in weeks
    ]


def _held_back(conn: Connection) -> dict[str, dict[tuple[str, str], dict[str, int]]]:
    """decision (deferred, skipped) → (week, playbook) → reason → distinct messages or steps."""
    a = audit_log.c
    # A message is deferred again at each tick until it goes: count it once per week and reason.
    what = func.coalesce(a.send_key, cast(a.id, String))
    stmt = (
        select(weeks_table.c.week, a.playbook_id, a.decision, a.reason, func.count(func.distinct(what)))
        .select_from(audit_log.join(weeks_table, _in_week(a.at)))
        .where(a.decision.in_(("deferred", "skipped")))
        .group_by(weeks_table.c.week, a.playbook_id, a.decision, a.reason)
        .order_by(weeks_table.c.week, a.playbook_id, a.decision, a.reason)
    )
    out: dict[str, dict[tuple[str, str], dict[str, int]]] = {"deferred": {}, "skipped": {}}
    for week, pid, decision, reason, n in conn.execute(stmt):
        out[decision].setdefault((week, pid), {})[reason] = int(n)
    return out


def branch_splits(conn: Connection) -> list[BranchSplit]:
    """Per playbook, week and branch step: the journeys down each path (the audit's detail)."""
    a = audit_log.c
    stmt = (
        select(a.playbook_id, weeks_table.c.week, a.step_id, a.detail, func.count())
        .select_from(audit_log.join(weeks_table, _in_week(a.at)))
        .where(a.decision == "branched")
        .group_by(a.playbook_id, weeks_table.c.week, a.step_id, a.detail)
        .order_by(a.playbook_id, weeks_table.c.week, a.step_id, a.detail)
    )
    return [BranchSplit(pid, week, step or "", path or "", int(n)) for pid, week, step, path, n in conn.execute(stmt)]


def notable_events(conn: Connection, times: Sequence[datetime]) -> list[NotableEvent]:
    """Per week, playbook and reason outside `ROUTINE`: how many rows, the first, its detail.

    Creates the week table for `times` when the connection's database has none yet."""
    if not inspect(conn).has_table(weeks_table.name):
        create_weeks(conn, times)
    a = audit_log.c
    grouped = (
        select(weeks_table.c.week, a.playbook_id, a.reason, func.count(), func.min(a.at))
        .select_from(audit_log.join(weeks_table, _in_week(a.at)))
        .where(a.reason.not_in(sorted(ROUTINE)))
        .group_by(weeks_table.c.week, a.playbook_id, a.reason)
        .order_by(weeks_table.c.week, a.playbook_id, a.reason)
    )
    found = []
    for week, pid, reason, n, first in conn.execute(grouped):
        # The detail of the first such row: what a person reads to see what would have happened.
        detail = conn.execute(
            select(a.detail).where(a.playbook_id == pid, a.reason == reason, a.at == first).order_by(a.id).limit(1)
        ).scalar()
        found.append(NotableEvent(week, pid, reason, int(n), first, detail or ""))
    return found


def contact_loads(conn: Connection, weeks: Sequence[str]) -> list[ContactLoad]:
    """Per week: the most emails a contact got and the 95th percentile, over contacts that got any."""
    sent = _sent_per_contact().subquery("per_contact")
    histogram = select(sent.c.week, sent.c.n, func.count()).group_by(sent.c.week, sent.c.n)
    loads: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for week, n, contacts_ in conn.execute(histogram):
        loads[week].append((int(n), int(contacts_)))
    return [
        ContactLoad(week, max((v for v, _ in loads.get(week, [])), default=0), nearest_rank(loads.get(week, []), P95))
        for week in weeks
    ]


def busiest_contacts(conn: Connection, top: int = BUSIEST) -> list[BusyContact]:
    """The `top` contacts by emails sent over the period (ties by id), with their count per week."""
    sent = _sent_per_contact().subquery("per_contact")
    ranked = (
        select(sent.c.contact_id, func.sum(sent.c.n).label("total"))
        .group_by(sent.c.contact_id)
        .order_by(func.sum(sent.c.n).desc(), sent.c.contact_id)
        .limit(top)
        .subquery("ranked")
    )
    stmt = (
        select(ranked.c.contact_id, ranked.c.total, contacts.c.email, sent.c.week, sent.c.n)
        .select_from(
            ranked.join(sent, sent.c.contact_id == ranked.c.contact_id).outerjoin(
                contacts, contacts.c.id == ranked.c.contact_id
            )
        )
        .order_by(ranked.c.total.desc(), ranked.c.contact_id, sent.c.week)
    )
    out: dict[int, BusyContact] = {}
    for contact_id, total, email, week, n in conn.execute(stmt):
        busy = out.setdefault(int(contact_id), BusyContact(int(contact_id), email or "", int(total), {}))
        busy.per_week[week] = int(n)
    return list(out.values())


def _sent_per_contact() -> Any:
    """SELECT week, contact_id, n: the emails sent to each contact per week."""
    lg = ledger.c
    return (
        select(weeks_table.c.week, lg.contact_id, func.count().label("n"))
        .select_from(ledger.join(weeks_table, _in_week(lg.updated_at)))
        .where(lg.kind == "email", lg.status == "sent", lg.contact_id.is_not(None))
        .group_by(weeks_table.c.week, lg.contact_id)
    )
