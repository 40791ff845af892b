"""Editing a playbook never re-sends an email.

For every example playbook with more than one step, every single-step edit — a task inserted at
each position, each step deleted, each pair of adjacent steps swapped — is applied in the middle
of journeys (one account a week in, another just enrolled, emails already sent, waits running),
under `versions: {on_change: migrate, on_missing_step: next}`, the policy that moves journeys in
flight onto the new file. Then the journeys run to their end. No recipient may receive a message
(template and subject) more often in one enrollment than one version of the playbook sends it:
once, or twice for a template that two steps send on purpose (the overdue-invoice ladder).

Each example runs twice: with its step ids as written, and with the ids removed (steps named by
their content), keeping only the ids that are referenced or that validation requires.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, select

from engine import tick
from engine.dispatch import OutboxChannel
from engine.store.models import enrollments, ledger
from tests.conftest import REPO
from tests.factories import Store
from tests.journeys.helpers import NOW, load, run_tick
from tests.journeys.mailbox import received

ROLES = ("admin", "billing")
"""Every example's emails go to admins; billing contacts get some of them and not others."""
INSERTED = {"task": {"title": "Inserted check-in with {{ account.name }}"}}
LIVE = ("planned", "claimed", "sending", "sent", "unknown")
"""Ledger statuses of a message that went out or may still go out."""
WEEK = timedelta(days=7)
EDITED_AT = NOW + WEEK
"""The first account entered at NOW, the second at EDITED_AT; the file changes right after."""
RUN_UNTIL = NOW + 10 * WEEK
"""Long enough for every edited journey to end (an edit can put both waits after the last email)."""


def _examples() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted((REPO / "playbooks").glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if len(data["steps"]) > 1:
            out.append((path.stem, data))
    return out


EXAMPLES = _examples()


def _references(value: Any) -> set[str]:
    """Step ids named anywhere in the playbook: `engaged: {step: ...}`, branch targets."""
    if isinstance(value, dict):
        found = {v for k, v in value.items() if k in ("step", "then", "else") and isinstance(v, str)}
        return found.union(*(_references(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_references(v) for v in value))
    return set()


def _without_ids(steps: list[dict[str, Any]], data: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps without their ids, except ids referenced elsewhere and those of emails that share
    a template with another email (validation requires those when journeys migrate)."""
    keep = _references(data)
    templates = Counter(s["email"]["template"] for s in steps if "email" in s)
    out = []
    for step in steps:
        repeated = "email" in step and templates[step["email"]["template"]] > 1
        out.append(step if step.get("id") in keep or repeated else {k: v for k, v in step.items() if k != "id"})
    return out


def _edits(steps: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every single-step edit of `steps` that validation accepts, by name."""
    out = {f"ins{i}": [*steps[:i], INSERTED, *steps[i:]] for i in range(len(steps) + 1)}
    out |= {f"del{i}": steps[:i] + steps[i + 1 :] for i in range(len(steps))}
    for i in range(len(steps) - 1):
        swapped = list(steps)
        swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
        out[f"swap{i}"] = swapped
    return {name: edited for name, edited in out.items() if _refers_back(edited)}


def _refers_back(steps: list[dict[str, Any]]) -> bool:
    """Whether every step id a step names is an earlier step's (deleting the email an engagement
    condition looks at, or moving it after the condition, is refused by validation)."""
    seen: set[str] = set()
    for step in steps:
        if not _references(step) <= seen:
            return False
        seen.add(step.get("id", ""))
    return True


def _text(pid: str, data: dict[str, Any], steps: list[dict[str, Any]]) -> str:
    """The example as playbook `pid`: its steps, subject, goal and exit, entered by `plan: pid`."""
    kept = {k: data[k] for k in ("subject", "goal", "exit", "priority") if k in data}
    spec = {
        "id": pid,
        "name": f"{data['name']} ({pid})",
        **kept,
        "trigger": {"plan": pid},
        "versions": {"on_change": "migrate", "on_missing_step": "next"},
        "steps": steps,
    }
    return yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)


def _in_flight(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        query = select(enrollments.c.playbook_id).where(enrollments.c.status == "active").distinct()
        return sorted(conn.execute(query).scalars())


def _allowed(steps: list[dict[str, Any]]) -> Counter[str]:
    """How many times one version sends each template to a recipient (at most)."""
    return Counter(s["email"]["template"] for s in steps if "email" in s)


@pytest.mark.parametrize("ids", ["written", "auto"])
@pytest.mark.parametrize(("name", "data"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_no_single_step_edit_mid_journey_sends_an_email_twice(
    db: Engine, db_url: str, tmp_path: Path, name: str, data: dict[str, Any], ids: str
) -> None:
    steps = data["steps"] if ids == "written" else _without_ids(data["steps"], data)
    edits = {f"{name}-{ids[0]}-{edit}": new for edit, new in _edits(steps).items()}
    store = Store(db, NOW)

    def enroll(pids: list[str]) -> None:
        for pid in pids:
            account = store.account(name=f"Account {pid}", plan=pid)
            for role in ROLES:
                store.contact(account, role)

    before = load(tmp_path, db_url, *(_text(pid, data, steps) for pid in edits))
    enroll(list(edits))
    run_tick(db, before, NOW)
    enroll(list(edits))
    run_tick(db, before, EDITED_AT)
    assert len(list(before.settings.outbox_dir.glob("*.eml"))) >= 2 * len(edits)  # first emails went out

    after = load(tmp_path, db_url, *(_text(pid, data, new) for pid, new in edits.items()))  # the file changes
    at = EDITED_AT + WEEK
    while (running := _in_flight(db)) and at <= RUN_UNTIL:
        # Ticks of the playbooks that still have journeys in flight (as `touchflow run --playbook`).
        tick.run_stages(db, after, running, at, "tick", OutboxChannel(after.settings.outbox_dir))
        at += WEEK

    with db.connect() as conn:
        journeys = {r.id: r for r in conn.execute(select(enrollments))}
        live = conn.execute(
            select(ledger.c.enrollment_id, ledger.c.contact_id, ledger.c.payload).where(
                ledger.c.kind == "email", ledger.c.status.in_(LIVE)
            )
        ).all()
    mail = received(db, after.settings.outbox_dir)
    sent = Counter((journeys[m.enrollment_id].playbook_id, m.enrollment_id, m.to, m.template, m.subject) for m in mail)
    planned = Counter(
        (journeys[r.enrollment_id].playbook_id, r.enrollment_id, r.contact_id, r.payload["template"]) for r in live
    )
    too_many = [
        f"{key}: {n} times"
        for counts in (sent, planned)
        for key, n in counts.items()
        if n > max(_allowed(steps)[key[3]], _allowed(edits[key[0]])[key[3]])
    ]
    assert too_many == [], "\n".join(too_many)
    unfinished = [(e.playbook_id, e.status, e.outcome) for e in journeys.values() if e.status != "completed"]
    assert unfinished == []
    assert len(journeys) == 2 * len(edits)
    assert {m.enrollment_id for m in mail} == set(journeys)  # every journey sent something
