"""The dispatch stage in several processes at once: scaling out on one machine.

One interpreter sends on threads, but rendering, building bodies and writing outcomes hold its
lock: past a point, more threads add nothing. So `dispatch_in_processes` starts N processes
(spawned: a fresh interpreter each, no inherited connections), and each runs the ordinary
dispatch stage — claim a batch, deliver it — until nothing is left to claim. Nothing else is
needed for them to share the work safely, because dispatch already assumes several dispatchers
on one ledger:

* claims are `planned → claimed` in committed transactions (`FOR UPDATE SKIP LOCKED` on
  PostgreSQL), so no row is taken twice;
* the policy gate (caps, calendar, suppressions) runs under the store's `policy` lock, one
  dispatcher at a time, so caps hold across processes;
* the send rate is global (the store's `rate_limits` schedule, or Prefect's limit), so N
  processes together send at the configured rate, not N times it.

A tick with `dispatchers > 1` runs its dispatch stage this way (`dispatch_processes_stage`): one
call, the counts of every process summed, each process's own counts kept for the run's log.

A process that dies (killed, out of memory) or raises fails the stage, but only once the others
have finished the batch in hand: they claim nothing more, so the run stops quickly and no claim
is left behind by a survivor. The dead process's batch is what any crash leaves: claimed rows
expire by the wall clock and go back to the queue (reconcile), rows already `sending` are settled
from the provider's events, never resent blindly. A process that raises has released its claim.

SQLite has one writer: its dispatchers would only take turns at every commit, so a tick on
SQLite runs one dispatcher whatever it is asked (`effective_dispatchers`). Scale out on PostgreSQL.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from multiprocessing.connection import Connection, wait
from threading import BrokenBarrierError
from typing import Any

from sqlalchemy import Engine

from engine.config import MAX_DISPATCHERS, Settings
from engine.dispatch import DispatchResult
from engine.dispatch.factory import make_channel
from engine.project import load_project
from engine.store.db import connect
from engine.tick.stages import DISPATCH_BATCH, Tick, dispatch_stage
from engine.tick.stores import LiveStore

log = logging.getLogger("touchflow.tick")

MIN_PROCESS_BATCH = 100
"""The fewest rows a dispatcher process claims at a time in a tick."""

READY_TIMEOUT_S = 300
"""How long a dispatcher waits for the others to be ready (imports, project, channel)."""


@dataclass(frozen=True)
class DispatcherReport:
    """What one dispatcher process did: its batches, their counts, its wall time."""

    batches: int
    seconds: float
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """`DispatchResult.as_dict()` summed over its batches."""

    def describe(self, index: int) -> str:
        """One log line: the process's number (from 1), batches, what it sent and deferred, its time."""
        shown = {k: sum(v.values()) for k, v in self.counts.items() if v}
        said = ", ".join(f"{k}={n}" for k, n in shown.items()) or "nothing to do"
        return f"dispatcher {index}: {self.batches} batches; {said} ({self.seconds:.1f} s)"


@dataclass
class ProcessesResult(DispatchResult):
    """The dispatch of a tick in several processes: the counts of every process summed (merged
    into the tick's summaries like one batch's), and each process's own report."""

    processes: list[DispatcherReport] = field(default_factory=list)


class DispatcherFailed(RuntimeError):
    """A dispatcher process died or raised; the others stopped after the batch in hand."""


def scales_out(engine: Engine) -> bool:
    """Whether dispatcher processes can share the store: PostgreSQL's row locks (SKIP LOCKED) let
    them claim side by side; SQLite has one writer, so they would only take turns."""
    return engine.dialect.name == "postgresql"


def effective_dispatchers(engine: Engine, requested: int) -> int:
    """How many dispatcher processes the store can use: `requested` on PostgreSQL, one on SQLite,
    with a warning when that is fewer."""
    if requested < 1:
        raise ValueError("dispatchers must be at least 1")
    if requested > 1 and not scales_out(engine):
        log.warning(
            "%d dispatchers asked for, but %s has one writer: dispatching in one process",
            requested,
            engine.dialect.name,
        )
        return 1
    return requested


def dispatch_processes_stage(tick: Tick) -> ProcessesResult | None:
    """The dispatch stage of a tick with `tick.dispatchers` processes: every batch, in one call;
    None when nothing was claimed. The processes build the channel `touchflow.yaml` names and
    write the tick's run id on their audit rows. Raises DispatcherFailed when one failed."""
    if not isinstance(tick.store, LiveStore):
        raise TypeError("dispatcher processes need a live store")  # a dry run sends nothing, in one process
    url = tick.store.engine.url.render_as_string(hide_password=False)  # this tick's store, credentials and all
    settings = replace(tick.project.settings, database_url=url)
    # A share of a tick's batch per claim, so a backlog of one batch still spreads over every
    # process (and the policy lock is held for fewer rows at a time); never tiny batches.
    batch = max(DISPATCH_BATCH // tick.dispatchers, MIN_PROCESS_BATCH)
    reports = dispatch_in_processes(settings, tick.now, tick.run_id, tick.playbook_ids, tick.dispatchers, batch=batch)
    for index, report in enumerate(reports):
        log.info("%s", report.describe(index + 1))
    if not any(report.batches for report in reports):
        return None
    total = ProcessesResult(processes=reports)
    for report in reports:
        part = DispatchResult.from_dict(report.counts)
        for name in ("emails", "tasks", "failed", "webhooks", "deferred", "skipped"):
            getattr(total, name).update(getattr(part, name))
    return total


def dispatch_in_processes(
    settings: Settings,
    now: datetime,
    run_id: str,
    playbook_ids: list[str],
    processes: int,
    *,
    batch: int = DISPATCH_BATCH,
    archive: bool | None = None,
) -> list[DispatcherReport]:
    """Run the dispatch stage in `processes` processes until nothing is left to claim; one report
    per process. Each process loads the project and builds the channel `touchflow.yaml` names
    (its own connections, its own sending threads, its own limiter on the one global rate).
    `batch`: rows per claim (a tick's 500; fewer spread a small backlog over the processes).
    `archive`: override the channel settings' archiving of messages as sent (None: as set).
    A process that fails raises DispatcherFailed here, once the others stopped (see the module)."""
    if not 1 <= processes <= MAX_DISPATCHERS:
        raise ValueError(f"processes must be between 1 and {MAX_DISPATCHERS}, not {processes}")
    context = multiprocessing.get_context("spawn")
    # Every process starts claiming once all are ready (imports, project, channel): the first
    # batches spread over all of them instead of going to the one that started first.
    ready = context.Barrier(processes, timeout=READY_TIMEOUT_S)
    stop = context.Event()
    running: dict[int, tuple[Any, Connection]] = {}
    try:
        for i in range(processes):
            receive, send = context.Pipe(duplex=False)
            args = (settings, now, run_id, playbook_ids, batch, archive, ready, stop, send)
            child = context.Process(target=_child, args=args, name=f"touchflow-dispatcher-{i}", daemon=True)
            child.start()
            send.close()  # the child's end: once it exits, reading ours ends instead of waiting
            running[i] = (child, receive)
        return _collect(running, ready, stop)
    finally:
        stop.set()
        for child, receive in running.values():
            child.join(READY_TIMEOUT_S if child.is_alive() else None)
            if child.is_alive():  # the parent is failing itself (interrupted): do not leave orphans
                child.terminate()
                child.join()
            receive.close()


def _collect(running: dict[int, tuple[Any, Connection]], ready: Any, stop: Any) -> list[DispatcherReport]:
    """Wait for every process; their reports in order, or DispatcherFailed naming each failure.
    The first failure stops the others from claiming (and from waiting for a dead one to be ready)."""
    reports: dict[int, DispatcherReport] = {}
    failures: list[str] = []
    waiting = dict(running)
    while waiting:
        done = wait([child.sentinel for child, _ in waiting.values()])
        for i, (child, receive) in list(waiting.items()):
            if child.sentinel not in done:
                continue
            child.join()
            del waiting[i]
            outcome = _received(receive)
            if isinstance(outcome, DispatcherReport) and child.exitcode == 0:
                reports[i] = outcome
                continue
            failures.append(_why(i, len(running), child.exitcode, outcome))
            stop.set()
            ready.abort()
    if failures:
        raise DispatcherFailed(
            "; ".join(failures) + ". The other dispatchers stopped after their batch in hand; claimed rows of a"
            " dead one go back to the queue when their claim expires (reconcile_after), rows it was sending"
            " are settled from the provider's events, never resent"
        )
    return [reports[i] for i in range(len(running))]


def _received(receive: Connection) -> object:
    """What a finished process sent: its report or its error; None when it died before saying."""
    try:
        return receive.recv() if receive.poll() else None
    except (EOFError, OSError):
        return None


def _why(index: int, count: int, exitcode: int | None, outcome: object) -> str:
    """One failure in words: which process, and its error or how it ended."""
    who = f"dispatcher process {index + 1} of {count}"
    if isinstance(outcome, str):
        return f"{who} failed: {outcome}"
    if exitcode is not None and exitcode < 0:
        return f"{who} was killed by signal {-exitcode}"
    return f"{who} exited with status {exitcode} without a report"


def _child(
    settings: Settings,
    now: datetime,
    run_id: str,
    playbook_ids: list[str],
    batch: int,
    archive: bool | None,
    ready: Any,
    stop: Any,
    send: Connection,
) -> None:
    """A dispatcher process: its report, or its error in one line, through `send`."""
    from engine.tick.summary import describe_error

    try:
        report = dispatch_until_done(settings, now, run_id, playbook_ids, batch, archive, ready, stop)
    except BaseException as exc:  # said to the parent in one line; the parent fails the stage
        send.send(describe_error(exc))
        send.close()
        raise SystemExit(1) from None
    send.send(report)
    send.close()


def dispatch_until_done(
    settings: Settings,
    now: datetime,
    run_id: str,
    playbook_ids: list[str],
    batch: int = DISPATCH_BATCH,
    archive: bool | None = None,
    ready: Any = None,
    stop: Any = None,
) -> DispatcherReport:
    """One dispatcher: dispatch batches until none is left to claim (runs in a child process);
    with `ready` (a barrier), only once every other dispatcher is ready too; with `stop` (an
    event), no new batch once it is set. A failing batch releases its claim and raises."""
    started = time.perf_counter()
    engine = connect(settings.database_url)
    try:
        project = load_project(settings)
        configured = make_channel(project.delivery, settings.outbox_dir)
        sending = configured.settings if archive is None else replace(configured.settings, archive=archive)
        tick = Tick(LiveStore(engine), project, now, run_id, playbook_ids, configured.channel, sending)
        tick.dispatch()  # settings completed, the limiter built: ready to send
        if ready is not None:
            try:
                ready.wait()
            except BrokenBarrierError:  # another dispatcher failed before it was ready
                if stop is None or stop.is_set():
                    return DispatcherReport(0, time.perf_counter() - started)
        total, batches = DispatchResult(), 0
        while not (stop is not None and stop.is_set()) and (result := dispatch_stage(tick, batch)) is not None:
            batches += 1
            for name in ("emails", "tasks", "failed", "webhooks", "deferred", "skipped"):
                getattr(total, name).update(getattr(result, name))
        return DispatcherReport(batches, time.perf_counter() - started, total.as_dict())
    finally:
        engine.dispose()
