"""Replaying ticks on a scratch copy of the store, and the report that comes out of it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Engine, Table, select
from sqlalchemy.engine import URL

from engine.dispatch import DispatchSettings, NullChannel
from engine.dispatch.webhook import no_post
from engine.policy.ratelimit import UNLIMITED
from engine.project import Project
from engine.simulate.funnel import Funnel, funnel
from engine.simulate.notes import notes
from engine.simulate.periods import SimulationError, tick_times
from engine.simulate.report import (
    BranchSplit,
    BusyContact,
    ContactLoad,
    NotableEvent,
    WeekFigures,
    branch_splits,
    busiest_contacts,
    contact_loads,
    create_weeks,
    notable_events,
    sum_figures,
    week_figures,
)
from engine.simulate.who import Recipient, recipients
from engine.spec.base import format_duration
from engine.store.bulk import bulk_insert, deferred_indexes
from engine.store.db import connect, migrate
from engine.store.models import accounts, contacts, csms, events
from engine.tick import run_stages, team_sender

COPY_BATCH = 10_000
"""Rows read from the source and written to the scratch database at a time."""
ALL = "(all)"
"""The playbook label of the totals across playbooks."""

Progress = Callable[[int, int], None]
"""Called after each tick with (ticks done, ticks in all)."""


@dataclass(frozen=True)
class SimulationReport:
    """Everything a simulation found (see `engine.simulate` for what each part means)."""

    start: datetime
    end: datetime
    step: timedelta
    ticks: int
    playbooks: tuple[str, ...]
    weeks: tuple[WeekFigures, ...]
    emails_per_contact: tuple[ContactLoad, ...]
    branches: tuple[BranchSplit, ...] = ()
    busiest: tuple[BusyContact, ...] = ()
    notable: tuple[NotableEvent, ...] = ()
    funnels: tuple[Funnel, ...] = ()
    notes: tuple[str, ...] = ()
    who: str | None = None
    recipients: tuple[Recipient, ...] = field(default=(), repr=False)

    def totals(self) -> list[WeekFigures]:
        """Per week, the sum over every simulated playbook."""
        order = list(dict.fromkeys(w.week for w in self.weeks))
        return [sum_figures((w for w in self.weeks if w.week == week), ALL, week) for week in order]

    def total(self) -> WeekFigures:
        """The sum over every playbook and week."""
        return sum_figures(self.weeks, ALL, "all")

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON: every part of the report (`recipients` only with `who`)."""
        data: dict[str, Any] = {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "step": format_duration(self.step),
            "ticks": self.ticks,
            "playbooks": list(self.playbooks),
            "weeks": [asdict(w) for w in self.weeks],
            "totals": [asdict(w) for w in self.totals()],
            "total": asdict(self.total()),
            "emails_per_contact": [asdict(c) for c in self.emails_per_contact],
            "branches": [asdict(b) for b in self.branches],
            "busiest_contacts": [asdict(b) for b in self.busiest],
            "notable": [{**asdict(n), "first": n.first.isoformat()} for n in self.notable],
            "funnels": [
                {"playbook": f.playbook, "at": f.at.isoformat(), "steps": [asdict(s) for s in f.steps]}
                for f in self.funnels
            ],
            "notes": list(self.notes),
        }
        if self.who is not None:
            data["who"] = self.who
            data["recipients"] = [
                {**asdict(r), "planned_at": r.planned_at.isoformat(), "updated_at": r.updated_at.isoformat()}
                for r in self.recipients
            ]
        return data

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


def simulate(
    source_engine: Engine,
    project: Project,
    start: datetime,
    end: datetime,
    step: timedelta,
    playbook_id: str | None = None,
    who: str | None = None,
    progress: Progress | None = None,
) -> SimulationReport:
    """Replay ticks from `start` to `end` every `step` on a scratch copy of the store; report.

    Runs the active playbooks, or only `playbook_id` (whatever its status); `who` names a
    simulated playbook whose deliveries the report lists. Times are naive UTC. Raises
    SimulationError for an empty or reversed period, a step under an hour, or an unknown
    playbook — before anything is copied. Nothing is written to `source_engine`.
    """
    times = tick_times(start, end, step)
    try:
        chosen = project.active(playbook_id)
    except KeyError as exc:
        raise SimulationError(f"--playbook: {exc.args[0]}") from None
    ids = tuple(p.id for p in chosen)
    if who is not None and who not in ids:
        try:
            project.active(who)
        except KeyError as exc:
            raise SimulationError(f"--who: {exc.args[0]}") from None
        raise SimulationError(f"--who: playbook '{who}' is not simulated (it is not active: add --playbook {who})")
    workdir = Path(tempfile.mkdtemp(prefix="touchflow-simulate-"))
    scratch: Engine | None = None
    try:
        scratch = connect(URL.create("sqlite", database=str(workdir / "scratch.db")).render_as_string())
        migrate(scratch)
        copy_store(source_engine, scratch, end)
        with scratch.connect() as conn:
            # Counted before the first tick: only customer data, no journey yet (see funnel.py).
            funnels = {p.id: funnel(conn, p, times[0]) for p in chosen}
        for done, now in enumerate(times, start=1):
            _tick(scratch, project, ids, now)
            if progress is not None:
                progress(done, len(times))
        with scratch.begin() as conn:
            weeks = create_weeks(conn, times)
            figures = week_figures(conn, ids, weeks)
            entered = {w.playbook for w in figures if w.enrolled}
            return SimulationReport(
                start=start,
                end=end,
                step=step,
                ticks=len(times),
                playbooks=ids,
                weeks=tuple(figures),
                emails_per_contact=tuple(contact_loads(conn, weeks)),
                branches=tuple(branch_splits(conn)),
                busiest=tuple(busiest_contacts(conn)),
                notable=tuple(notable_events(conn, times)),
                funnels=tuple(funnels[pid] for pid in ids if pid not in entered),
                notes=tuple(notes(chosen, start)),
                who=who,
                recipients=tuple(recipients(conn, who)) if who is not None else (),
            )
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
    channel = NullChannel()
    channel.name = project.delivery.channel  # the ledger shows the channel a live tick would use
    summaries = run_stages(scratch, project, list(playbook_ids), now, run_id, channel, settings=settings, post=no_post)
    # A tick goes on past a failing playbook; a simulation stops, or its report would show zeros.
    for s in summaries.values():
        if s.error:
            raise SimulationError(f"at {now.isoformat(sep=' ')}: playbook '{s.playbook}' failed ({s.error})")
