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

SQLite has one writer: its dispatchers take turns at every commit. Scale out on PostgreSQL.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.config import Settings
from engine.dispatch import DispatchResult, claim, deliver
from engine.dispatch.factory import make_channel
from engine.project import load_project
from engine.store.db import connect
from engine.tick.stages import DISPATCH_BATCH, Tick, priorities
from engine.tick.stores import LiveStore


@dataclass(frozen=True)
class DispatcherReport:
    """What one dispatcher process did: its batches, their counts, its wall time."""

    batches: int
    seconds: float
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """`DispatchResult.as_dict()` summed over its batches."""


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
    A process that fails raises here, after the others finished (their claims are theirs)."""
    if processes < 1:
        raise ValueError("processes must be at least 1")
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        # Every process starts claiming once all are ready (imports, project, channel): the first
        # batches spread over all of them instead of going to the one that started first.
        ready = manager.Barrier(processes, timeout=300)
        futures = [
            pool.submit(dispatch_until_done, settings, now, f"{run_id}:{i}", playbook_ids, batch, archive, ready)
            for i in range(processes)
        ]
        return [future.result() for future in futures]


def dispatch_until_done(
    settings: Settings,
    now: datetime,
    run_id: str,
    playbook_ids: list[str],
    batch: int = DISPATCH_BATCH,
    archive: bool | None = None,
    ready: Any = None,
) -> DispatcherReport:
    """One dispatcher: dispatch batches until none is left to claim (runs in a child process);
    with `ready` (a barrier), only once every other dispatcher is ready too."""
    from dataclasses import replace

    started = time.perf_counter()
    engine = connect(settings.database_url)
    try:
        project = load_project(settings)
        configured = make_channel(project.delivery, settings.outbox_dir)
        sending = configured.settings if archive is None else replace(configured.settings, archive=archive)
        tick = Tick(LiveStore(engine), project, now, run_id, playbook_ids, configured.channel, sending)
        tick.dispatch()  # settings completed, the limiter built: ready to send
        if ready is not None:
            ready.wait()
        total, batches = DispatchResult(), 0
        while (result := _dispatch_batch(tick, batch)) is not None:
            batches += 1
            for name in ("emails", "tasks", "failed", "webhooks", "deferred", "skipped"):
                getattr(total, name).update(getattr(result, name))
        return DispatcherReport(batches, time.perf_counter() - started, total.as_dict())
    finally:
        engine.dispose()


def _dispatch_batch(tick: Tick, batch: int) -> DispatchResult | None:
    """`engine.tick.stages.dispatch_stage` with the batch's size as a parameter: claim under a
    fresh token, deliver what is still held under it; None when nothing is left to claim."""
    token = uuid.uuid4().hex
    with tick.store.transaction() as conn:
        ids = claim(
            conn, batch, tick.now, playbook_ids=tick.playbook_ids, token=token, priorities=priorities(tick.project)
        )
    if not ids:
        return None
    with tick.store.session() as (conn, commit):
        return deliver(conn, ids, tick.dispatch(), now=tick.now, run_id=tick.run_id, commit=commit, token=token)
