"""The wait step: when the wait ends (a duration, a date field plus an offset, the next moment
inside a local window), and the journey's pause until then."""

from __future__ import annotations

from datetime import datetime

from engine.audit import Decision, Reason
from engine.compile import CompiledStep
from engine.plan.batch import Walk
from engine.plan.time import at_date, next_in_window, zone
from engine.spec import WaitStep
from engine.spec.steps import WaitForWindow, WaitUntil
from engine.store.catalogue import resolve_field


def wait(walk: Walk, step: CompiledStep, spec: WaitStep, index: int) -> int | None:
    """Pause the journey until the wait ends; a wait already over goes straight on."""
    until = wait_until(spec, walk)
    index += 1
    if until > walk.now:
        walk.plan.result.waiting += 1
        walk.audit(step, Decision.WAITING, Reason.WAIT_STEP, f"until {until.isoformat()}")
        walk.move_to(index, until)
        return None
    return index


def wait_until(spec: WaitStep, walk: Walk) -> datetime:
    """When the wait ends for this enrollment, as naive UTC (`now` when the date it waits for is
    missing: bad data must not stop a journey)."""
    wait = spec.wait
    place = walk.batch.places.get(walk.enrollment.id, {"account": {}, "contact": {}})
    if isinstance(wait, WaitUntil):
        info = resolve_field(wait.until, "contact" if walk.enrollment.subject_type == "contact" else "account")
        row = place["contact"] if info and info.table == "contact" else place["account"]
        moment = at_date(row.get(info.name) if info else None, wait.offset)
        return moment or walk.now
    if isinstance(wait, WaitForWindow):
        tz = zone(place["contact"].get("timezone") or place["account"].get("timezone"))
        return next_in_window(walk.now, tz, wait.window)
    return walk.now + wait
