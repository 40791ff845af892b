"""Simulation: replay ticks over the store's history on a scratch copy and say whether to ship.

`simulate` copies the customer store (csms, accounts, contacts, and the events up to the end of
the simulated period) into a scratch SQLite database in a temporary directory, then runs the
stages of a real tick there — evaluate and advance per playbook, claim and deliver through a
`NullChannel` (templates render, nothing is sent; webhooks are not called) — with `now` moving
from `start` to `end` in steps of `step`. The source store is only ever read (on PostgreSQL in a
read-only, repeatable-read transaction); the scratch directory is deleted at the end, also on
error.

The modules: `periods.py` (ticks, ISO weeks, the step), `replay.py` (the copy, the ticks and the
`SimulationReport`), `report.py` (the figures, aggregated in SQL on the scratch database: counts
per playbook and week, deferrals and skips by reason from the audit rows the ticks wrote, branch
splits, unusual reasons such as guardrails, emails per contact and the busiest contacts),
`who.py` (`--who`: each delivery of one playbook), `funnel.py` (for a playbook that matched
nobody, the subjects left after each of its conditions, in order), `notes.py` (what a simulation
cannot know: today's field values, unobserved engagement) and `present.py` (text for people, in
80 columns).

What the copy cannot replay: accounts and contacts are as they are now (a contact created last
week already exists at the first tick), engagement (`message_events`) is empty, and the engine's
own state starts empty, so the first tick behaves like a playbook's first tick in production.
"""

from engine.simulate.periods import (
    MIN_STEP,
    SimulationError,
    check_step,
    iso_week,
    nearest_rank,
    parse_step,
    tick_times,
)
from engine.simulate.replay import COPY_BATCH, SimulationReport, copy_store, simulate
from engine.simulate.report import BranchSplit, BusyContact, ContactLoad, NotableEvent, WeekFigures

__all__ = [
    "COPY_BATCH",
    "MIN_STEP",
    "BranchSplit",
    "BusyContact",
    "ContactLoad",
    "NotableEvent",
    "SimulationError",
    "SimulationReport",
    "WeekFigures",
    "check_step",
    "copy_store",
    "iso_week",
    "nearest_rank",
    "parse_step",
    "simulate",
    "tick_times",
]
