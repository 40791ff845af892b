"""Rows the task and portfolio tests build by hand: CSM tasks and health history."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert

from engine.store.models import health_history, tasks

_ids = itertools.count(1)


def task(db: Engine, account_id: int, csm_id: int | None, created: datetime, **kw: Any) -> int:
    """One CSM task opened at `created` (open unless `status` says otherwise)."""
    tid = kw.pop("id", next(_ids) + 1000)
    row = {
        "id": tid,
        "send_key": f"task-{tid}",
        "playbook_id": "support-spike",
        "step_id": "alert-csm",
        "account_id": account_id,
        "csm_id": csm_id,
        "title": f"Support spike at account {account_id}",
        "priority": "high",
        "status": "open",
        "due_at": created + timedelta(days=2),
        "created_at": created,
        **kw,
    }
    with db.begin() as conn:
        conn.execute(insert(tasks), [row])
    return int(tid)


def health(db: Engine, account_id: int, on: date, score: float, band: str, components: dict[str, float]) -> None:
    """One day's health of an account: its score, band and each component's points."""
    with db.begin() as conn:
        conn.execute(
            insert(health_history),
            [{"account_id": account_id, "computed_on": on, "score": score, "band": band, "components": components}],
        )
