"""CSM tasks under the workload policy: dedupe, assignment, capacity, business-day due dates.

* Dedupe: one open task per account and *reason* (`task.reason`, default `<playbook>:<step>`).
  A second one updates the open task — title, body, the higher priority, the earlier due date,
  one more occurrence — instead of adding a duplicate to the CSM's list.
* Assignment (`policy.csm.assign`): the account's owner; or, within the owner's team, the CSM
  next in turn (`round_robin`: the one assigned longest ago) or with the fewest open tasks
  (`least_loaded`); ties go to the lower CSM id.
* Capacity (`policy.csm.max_open_tasks`): a CSM at the cap gets nothing more; the task goes to
  the team's queue (`tasks.queue`, no CSM), audited as `over_csm_capacity` with the numbers.

Runs under the policy lock (engine/policy/gate.py) so concurrent dispatchers neither duplicate
a task nor push a CSM over the cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, insert, select, update

from engine.audit import Reason
from engine.policy.calendar import Calendar, to_local
from engine.spec.policy import CsmPolicy
from engine.store.models import csms, tasks

PRIORITY_ORDER = ("low", "normal", "high", "urgent")
DEFAULT_TEAM = "default"


@dataclass(frozen=True)
class Placement:
    """Where a task went: a new or an updated task, whose, and why (for the audit)."""

    task_id: int
    csm_id: int | None
    queue: str | None
    reason: Reason
    detail: str


def add_business_days(start: datetime, days: int, calendar: Calendar, tz: str) -> datetime:
    """`start` (naive UTC) plus `days` business days of `calendar` in `tz`, same local time of day."""
    local = to_local(start, tz)
    zone = ZoneInfo(tz)
    day = local.date()
    left = days
    while left > 0:
        day += timedelta(days=1)
        if day.weekday() in calendar.business_days and day not in calendar.holidays:
            left -= 1
    moment = datetime.combine(day, local.time(), tzinfo=zone)
    return moment.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)


def place_task(conn: Connection, task: dict[str, Any], policy: CsmPolicy, team_of_owner: str | None) -> Placement:
    """Insert `task` (a `tasks` row without id), or update the open task it duplicates."""
    now = task["created_at"]
    existing = conn.execute(
        select(tasks).where(
            tasks.c.account_id == task["account_id"], tasks.c.dedupe_key == task["dedupe_key"], tasks.c.status == "open"
        )
    ).first()
    if existing is not None:
        priority = max(existing.priority, task["priority"], key=PRIORITY_ORDER.index)
        conn.execute(
            update(tasks)
            .where(tasks.c.id == existing.id)
            .values(
                title=task["title"],
                body=task["body"],
                priority=priority,
                due_at=min(existing.due_at, task["due_at"]),
                updated_at=now,
                occurrences=existing.occurrences + 1,
            )
        )
        who = f"csm {existing.csm_id}" if existing.csm_id is not None else f"the {existing.queue or DEFAULT_TEAM} queue"
        detail = (
            f"open task #{existing.id} for account {task['account_id']} ({task['dedupe_key']}) updated, "
            f"occurrence {existing.occurrences + 1}, {who}"
        )
        return Placement(existing.id, existing.csm_id, existing.queue, Reason.TASK_UPDATED, detail)
    csm_id, queue, reason, detail = _assign(conn, task, policy, team_of_owner)
    row = {**task, "csm_id": csm_id, "queue": queue, "updated_at": now, "occurrences": 1}
    task_id = conn.execute(insert(tasks).values(**row).returning(tasks.c.id)).scalar_one()
    return Placement(task_id, csm_id, queue, reason, detail)


def _assign(
    conn: Connection, task: dict[str, Any], policy: CsmPolicy, team: str | None
) -> tuple[int | None, str | None, Reason, str]:
    owner = task["csm_id"]
    team = team or DEFAULT_TEAM
    if owner is None:
        return None, team, Reason.TASK_CREATED, f"account {task['account_id']} has no CSM: queued for team {team}"
    if policy.assign == "owner":
        order = [owner]
    else:
        members = [r.id for r in conn.execute(select(csms.c.id).where(csms.c.team == team).order_by(csms.c.id))]
        order = _by_turn(conn, members) if policy.assign == "round_robin" else _by_load(conn, members)
    loads = _open_counts(conn, order)
    cap = policy.max_open_tasks
    for csm_id in order:
        if cap is None or loads.get(csm_id, 0) < cap:
            how = "owner" if csm_id == owner else policy.assign.replace("_", " ")
            return csm_id, None, Reason.TASK_CREATED, f"assigned to csm {csm_id} ({how}, {loads.get(csm_id, 0)} open)"
    full = ", ".join(f"csm {c} has {loads.get(c, 0)}" for c in order)
    return None, team, Reason.OVER_CSM_CAPACITY, f"{full} open tasks, cap {cap}: queued for team {team}"


def _open_counts(conn: Connection, csm_ids: list[int]) -> dict[int, int]:
    if not csm_ids:
        return {}
    query = (
        select(tasks.c.csm_id, func.count())
        .where(tasks.c.csm_id.in_(csm_ids), tasks.c.status == "open")
        .group_by(tasks.c.csm_id)
    )
    return {int(csm_id): int(n) for csm_id, n in conn.execute(query).all()}


def _by_load(conn: Connection, members: list[int]) -> list[int]:
    loads = _open_counts(conn, members)
    return sorted(members, key=lambda c: (loads.get(c, 0), c))


def _by_turn(conn: Connection, members: list[int]) -> list[int]:
    """Members by when they were last given a task: never first, then longest ago."""
    if not members:
        return []
    query = select(tasks.c.csm_id, func.max(tasks.c.id)).where(tasks.c.csm_id.in_(members)).group_by(tasks.c.csm_id)
    last = {int(csm_id): int(task_id) for csm_id, task_id in conn.execute(query).all()}
    return sorted(members, key=lambda c: (last.get(c, 0), c))
