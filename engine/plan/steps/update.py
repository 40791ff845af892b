"""The update step: change the account's or contact's fields, traits and tags in the store.

The walk only records the update; `apply_update` writes it once the enrollment's move has won
(see the driver's `_apply`). An update ends its walk and re-queues the enrollment at once, so the
goals, exits and step conditions of the next round of the tick see the new data.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy import update as update_stmt

from engine.audit import Decision, Reason
from engine.compile import CompiledStep
from engine.plan.batch import Walk
from engine.spec import UpdateStep
from engine.store.models import accounts, contacts


def update(walk: Walk, step: CompiledStep, spec: UpdateStep, index: int) -> int | None:
    """Record the update and yield (due again now); skip it when its row cannot be read."""
    enrollment = walk.enrollment
    if unreadable := walk.batch.places.get(enrollment.id, {}).get("problems", {}).get(spec.update.target):
        # Never write to a row that cannot be read: traits would be rebuilt from nothing.
        walk.audit(step, Decision.SKIPPED, Reason.UNREADABLE_ROW, unreadable)
        walk.plan.result.skipped += 1
        return index + 1
    contact = enrollment.subject_id if enrollment.subject_type == "contact" else None
    walk.plan.updates.append((spec, enrollment.id, enrollment.account_id, contact))
    walk.audit(step, Decision.UPDATED, Reason.UPDATE_STEP, describe_update(spec))
    walk.plan.result.updated += 1
    # Yield right after an update: the enrollment is due again at once, and the next round
    # of this tick checks goals, exits and step conditions against the updated data.
    walk.move_to(index + 1, walk.now)
    return None


def describe_update(spec: UpdateStep) -> str:
    """What the update changes, for its audit row."""
    u = spec.update
    parts = [f"{k}={v!r}" for k, v in u.set.items()] + [f"{k} cleared" for k in u.clear]
    parts += [f"tag +{t}" for t in u.tag] + [f"tag -{t}" for t in u.untag]
    return f"{u.target}: " + ", ".join(parts)


def apply_update(conn: Connection, spec: UpdateStep, account_id: int, contact_id: int | None) -> None:
    """Write the update to the target row (the contact for contact subjects, else the account)."""
    u = spec.update
    table = contacts if u.target == "contact" else accounts
    row_id = contact_id if u.target == "contact" and contact_id is not None else account_id
    values: dict[str, Any] = {}
    traits: dict[str, Any] | None = None
    for name, value in [*u.set.items(), *((n, None) for n in u.clear)]:
        if name.startswith("traits."):
            if traits is None:
                traits = dict(
                    conn.execute(select(table.c.traits).where(table.c.id == row_id)).scalar_one_or_none() or {}
                )
            key = name.removeprefix("traits.")
            if value is None:
                traits.pop(key, None)
            else:
                traits[key] = value
        else:
            values[name] = value
    if u.tag or u.untag:
        if traits is None:
            traits = dict(conn.execute(select(table.c.traits).where(table.c.id == row_id)).scalar_one_or_none() or {})
        tags = [t for t in traits.get("tags", []) if t not in u.untag]
        traits["tags"] = tags + [t for t in u.tag if t not in tags]
    if traits is not None:
        values["traits"] = traits
    conn.execute(update_stmt(table).where(table.c.id == row_id).values(**values))
