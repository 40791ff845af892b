"""Simulation: replay ticks over the store's history on a scratch copy and report, per week.

`simulate` copies the customer store (csms, accounts, contacts, and the events up to the end of
the simulated period) into a scratch SQLite database in a temporary directory, then runs the
stages of a real tick there — evaluate and advance per playbook, claim and deliver through a
`NullChannel` (templates render, nothing is sent; webhooks are not called) — with `now` moving
from `start` to `end` in steps of `step`. The source store is only ever read (on PostgreSQL in a
read-only, repeatable-read transaction); the scratch directory is deleted at the end, also on
error.

The figures come from the scratch database's ledger, tasks and enrollments, aggregated in SQL
per ISO week of the tick time (weeks start on Monday): per playbook `enrolled`, `emails` (sent),
`tasks`, `exits` (ended as exited), `goals` (ended as converted) and `failed` (deliveries that
failed, e.g. a template that does not render); across all playbooks the emails each contact got
per week, as the maximum and the nearest-rank 95th percentile over the contacts that got any.

What the copy cannot replay: accounts and contacts are as they are now (a contact created last
week already exists at the first tick), engagement (`message_events`) is empty, and the engine's
own state starts empty, so the first tick behaves like a playbook's first tick in production.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    and_,
    func,
    select,
)
from sqlalchemy.engine import URL

from engine.dispatch import DispatchSettings, NullChannel
from engine.dispatch.webhook import no_post
from engine.policy.ratelimit import UNLIMITED
from engine.project import Project
from engine.spec.base import format_duration, parse_duration
from engine.store.bulk import bulk_insert, deferred_indexes
from engine.store.db import connect, migrate
from engine.store.models import accounts, contacts, csms, enrollments, events, ledger, tasks
from engine.tick import run_stages, team_sender

MIN_STEP = timedelta(hours=1)
"""The shortest time between two simulated ticks."""
COPY_BATCH = 10_000
"""Rows read from the source and written to the scratch database at a time."""
_P95 = 95

# Tick time → ISO week, as a table of the scratch database so the report joins on it in SQL.
_weeks = Table(
    "tf_simulation_weeks",
    MetaData(),
    Column("week", String(8), primary_key=True),
    Column("starts", DateTime, nullable=False),
    Column("ends", DateTime, nullable=False),
)


class SimulationError(ValueError):
    """Options that make no simulation; the message is one line, naming the option."""


@dataclass(frozen=True)
class WeekFigures:
    """What one playbook did in one ISO week of the simulation."""

    playbook: str
    week: str
    enrolled: int = 0
    emails: int = 0
    tasks: int = 0
    exits: int = 0
    goals: int = 0
    failed: int = 0


@dataclass(frozen=True)
class ContactLoad:
    """Emails per contact in one ISO week, over the contacts that got at least one."""

    week: str
    max: int
    p95: int


@dataclass(frozen=True)
class SimulationReport:
    """The figures of a simulation: per playbook and week, and the email load per contact."""

    start: datetime
    end: datetime
    step: timedelta
    ticks: int
    playbooks: tuple[str, ...]
    weeks: tuple[WeekFigures, ...]
    emails_per_contact: tuple[ContactLoad, ...]

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON: `weeks`, `emails_per_contact` and `ticks`."""
        return {
            "weeks": [asdict(w) for w in self.weeks],
            "emails_per_contact": [asdict(c) for c in self.emails_per_contact],
            "ticks": self.ticks,
        }

    def by_playbook(self) -> dict[str, list[WeekFigures]]:
        """The weekly rows of each simulated playbook, in the order they ran."""
        out: dict[str, list[WeekFigures]] = {pid: [] for pid in self.playbooks}
        for row in self.weeks:
            out.setdefault(row.playbook, []).append(row)
        return out

    def over_messaging(self) -> str:
        """One line: the worst week's maximum and 95th percentile of emails per contact."""
        loads = [c for c in self.emails_per_contact if c.max]
        if not loads:
            return "emails per contact per week: no emails"
        worst = max(loads, key=lambda c: (c.max, c.p95))
        typical = max(loads, key=lambda c: (c.p95, c.max))
        return (
            f"emails per contact per week: max {worst.max} ({worst.week}), "
            f"p95 {typical.p95} ({typical.week}) over {self.ticks} ticks every {format_duration(self.step)}"
        )


def parse_step(value: str) -> timedelta:
    """'1d', '12h', '2w' → timedelta; at least MIN_STEP. Raises SimulationError."""
    try:
        step = parse_duration(value, signed=False)
    except ValueError as exc:
        raise SimulationError(f"--step: {exc}") from None
    check_step(step)
    return step


def check_step(step: timedelta) -> None:
    """Raise SimulationError unless `step` is at least MIN_STEP."""
    if step < MIN_STEP:
        raise SimulationError(f"--step must be at least {format_duration(MIN_STEP)}, got {format_duration(step)}")


def tick_times(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """`start`, `start + step`, … up to and including `end`."""
    check_step(step)
    if end < start:
        raise SimulationError(f"--to ({end.isoformat(sep=' ')}) is before --from ({start.isoformat(sep=' ')})")
    count = (end - start) // step + 1
    return [start + i * step for i in range(count)]


def iso_week(at: datetime) -> str:
    """The ISO week of `at`, e.g. '2026-W48' (weeks start on Monday)."""
    year, week, _ = at.isocalendar()
    return f"{year}-W{week:02d}"


def nearest_rank(histogram: Sequence[tuple[int, int]], percent: int) -> int:
    """The nearest-rank percentile of values given as (value, how many) pairs; 0 when empty."""
    ordered = sorted(histogram)
    total = sum(n for _, n in ordered)
    if total == 0:
        return 0
    rank = max(1, -(-percent * total // 100))  # ceil(percent/100 · total), in integers
    seen = 0
    for value, n in ordered:
        seen += n
        if seen >= rank:
            return value
    return ordered[-1][0]  # pragma: no cover - rank <= total


def simulate(
    source_engine: Engine,
    project: Project,
    start: datetime,
    end: datetime,
    step: timedelta,
    playbook_id: str | None = None,
) -> SimulationReport:
    """Replay ticks from `start` to `end` every `step` on a scratch copy of the store; report.

    Runs the active playbooks, or only `playbook_id` (whatever its status). Times are naive UTC.
    Raises SimulationError for an empty or reversed period, a step under an hour, or an unknown
    playbook — before anything is copied. Nothing is written to `source_engine`.
    """
    times = tick_times(start, end, step)
    try:
        chosen = tuple(p.id for p in project.active(playbook_id))
    except KeyError as exc:
        raise SimulationError(f"--playbook: {exc.args[0]}") from None
    workdir = Path(tempfile.mkdtemp(prefix="touchflow-simulate-"))
    scratch: Engine | None = None
    try:
        scratch = connect(URL.create("sqlite", database=str(workdir / "scratch.db")).render_as_string())
        migrate(scratch)
        copy_store(source_engine, scratch, end)
        for now in times:
            _tick(scratch, project, chosen, now)
        return _report(scratch, chosen, times, start, end, step)
    finally:
        if scratch is not None:
            scratch.dispose()
        shutil.rmtree(workdir, ignore_errors=True)


def copy_store(source: Engine, target: Engine, until: datetime, batch: int = COPY_BATCH) -> dict[str, int]:
    """Copy csms, accounts, contacts and the events up to `until` from `source` into `target`.

    Streams `batch` rows at a time (a server-side cursor on PostgreSQL), so memory stays flat
    however large the store; reads the source in one read-only transaction on PostgreSQL.
    Returns the rows copied per table.
    """
    copied: dict[str, int] = {}
    plan: list[tuple[Table, ColumnElement[bool] | None]] = [
        (csms, None),
        (accounts, None),
        (contacts, None),
        (events, events.c.occurred_at <= until),
    ]
    with source.connect() as src, target.begin() as dst:
        if src.dialect.name == "postgresql":
            src.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        for table, where in plan:
            names = [c.name for c in table.columns]
            stmt = select(*table.columns)
            if where is not None:
                stmt = stmt.where(where)
            indexes: AbstractContextManager[None] = deferred_indexes(dst, table) if table is events else nullcontext()
            with indexes:
                rows = src.execute(stmt, execution_options={"yield_per": batch})
                copied[table.name] = bulk_insert(dst, table, names, _tuples(rows), batch_size=batch)
    return copied


def _tuples(rows: Any) -> Iterator[tuple[Any, ...]]:
    for row in rows:
        yield tuple(row)


def _tick(scratch: Engine, project: Project, playbook_ids: Sequence[str], now: datetime) -> None:
    """The stages of one tick at `now`, on the scratch database."""
    run_id = f"simulate-{now.isoformat(timespec='minutes')}"
    # No global rate: nothing leaves a simulation, and it must not take real send slots.
    settings = DispatchSettings(team_sender=team_sender(project), limiter=UNLIMITED)
    summaries = run_stages(
        scratch, project, list(playbook_ids), now, run_id, NullChannel(), settings=settings, post=no_post
    )
    # A tick goes on past a failing playbook; a simulation stops, or its report would show zeros.
    for s in summaries.values():
        if s.error:
            raise SimulationError(f"at {now.isoformat(sep=' ')}: playbook '{s.playbook}' failed ({s.error})")


# --- the report -----------------------------------------------------------------------------


def _report(
    scratch: Engine,
    playbook_ids: tuple[str, ...],
    times: list[datetime],
    start: datetime,
    end: datetime,
    step: timedelta,
) -> SimulationReport:
    week_rows: dict[str, dict[str, Any]] = {}
    for at in times:
        monday = datetime.combine((at - timedelta(days=at.weekday())).date(), datetime.min.time())
        week_rows.setdefault(iso_week(at), {"week": iso_week(at), "starts": monday, "ends": monday + timedelta(7)})
    weeks = list(week_rows)
    with scratch.begin() as conn:
        _weeks.create(conn)
        conn.execute(_weeks.insert(), list(week_rows.values()))
        counts = _playbook_counts(conn)
        loads = _contact_loads(conn)
    rows = tuple(
        WeekFigures(pid, week, **{name: counts[name].get((week, pid), 0) for name in _MEASURES})
        for pid in playbook_ids
        for week in weeks
    )
    per_contact = tuple(
        ContactLoad(week, max((v for v, _ in loads.get(week, [])), default=0), nearest_rank(loads.get(week, []), _P95))
        for week in weeks
    )
    return SimulationReport(start, end, step, len(times), playbook_ids, rows, per_contact)


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


_MEASURES = tuple(_measures())


def _in_week(moment: ColumnElement[Any]) -> ColumnElement[bool]:
    return and_(moment >= _weeks.c.starts, moment < _weeks.c.ends)


def _playbook_counts(conn: Connection) -> dict[str, dict[tuple[str, str], int]]:
    """Per measure: (week, playbook) → count, one GROUP BY each."""
    out: dict[str, dict[tuple[str, str], int]] = {}
    for name, (table, moment, where) in _measures().items():
        stmt = (
            select(_weeks.c.week, table.c.playbook_id, func.count())
            .select_from(table.join(_weeks, _in_week(moment)))
            .where(*where)
            .group_by(_weeks.c.week, table.c.playbook_id)
        )
        out[name] = {(week, pid): int(n) for week, pid, n in conn.execute(stmt)}
    return out


def _contact_loads(conn: Connection) -> dict[str, list[tuple[int, int]]]:
    """Per week: (emails a contact got, how many contacts got that many), over sent emails."""
    lg = ledger.c
    per_contact = (
        select(_weeks.c.week, lg.contact_id, func.count().label("n"))
        .select_from(ledger.join(_weeks, _in_week(lg.updated_at)))
        .where(lg.kind == "email", lg.status == "sent", lg.contact_id.is_not(None))
        .group_by(_weeks.c.week, lg.contact_id)
        .subquery("per_contact")
    )
    histogram = select(per_contact.c.week, per_contact.c.n, func.count()).group_by(per_contact.c.week, per_contact.c.n)
    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for week, n, contacts_ in conn.execute(histogram):
        out[week].append((int(n), int(contacts_)))
    return out
