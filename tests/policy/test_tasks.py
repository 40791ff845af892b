"""CSM tasks under the workload policy (`engine/policy/tasks.py`), end to end on SQLite and PostgreSQL.

Each test plans real task-step playbooks with the engine (`evaluate_and_advance`), dispatches with
`tick.claim_batch` + `tick.deliver_batch`, and checks the `tasks` rows and the audit. Together
they prove that

* one account has at most one open task per reason: a second task with the same `reason` (from
  another playbook) updates it — one more occurrence, the higher priority, the earlier due date —
  audited `task_updated` naming the task; other accounts, other reasons and tasks marked `done`
  do not dedupe;
* `policy.csm.assign` places tasks on the account's owner, the least loaded member of the owner's
  team (ties to the lower id) or the team member next in turn; accounts without a CSM go to the
  team queue;
* `max_open_tasks` sends what a full CSM (or a full team) cannot take to the team queue, audited
  `over_csm_capacity` with the numbers, and `least_loaded` tries the other members first;
* a whole-day `due` counts business days (weekdays and holidays of the policy) in the account's
  zone at the same local time, across DST changes; other durations and
  `due_in_business_days: false` are plain calendar time;
* do-not-contact accounts get no task unless the playbook says `tasks_when_suppressed: true`;
* two dispatchers placing tasks for one account and reason at once never open two (PostgreSQL).
"""

from __future__ import annotations

import importlib
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update

from engine import tick
from engine.dispatch.settings import DispatchSettings
from engine.policy.calendar import Calendar
from engine.policy.tasks import add_business_days
from engine.project import Project
from engine.spec.policy import CsmPolicy, Policy
from engine.store.models import audit_log, ledger, tasks
from tests.factories import Store
from tests.policy.test_gate import Recorder, make_project

NOW = datetime(2026, 11, 2, 9, 0)  # a Monday, 09:00 UTC (and in London)
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
PLAN = "tasks"  # every test playbook enrolls accounts on this plan
MON_FRI = frozenset(range(5))
outcomes_module = importlib.import_module("engine.dispatch.outcomes")  # where a window's tasks are placed


# --- helpers --------------------------------------------------------------------------------------


def task_playbook(pid: str, task: str, policy: str | None = None) -> str:
    """A playbook `pid` with one task step (`task` is the flow mapping's inside) for accounts on
    plan `tasks`."""
    head = f"policy: {policy}\n" if policy is not None else ""
    return (
        f"id: {pid}\nname: {pid.title()}\ntrigger: {{plan: {PLAN}}}\n{head}steps:\n  - id: act\n    task: {{{task}}}\n"
    )


def plan(db: Engine, proj: Project, now: datetime, *pids: str) -> None:
    for pid in pids:
        tick.evaluate_and_advance(db, proj, pid, now, f"plan-{pid}", "recording")


def dispatch(
    db: Engine,
    proj: Project,
    now: datetime,
    rules: Policy | None = None,
    playbook_ids: list[str] | None = None,
) -> tick.DispatchResult:
    """Claim and deliver everything due at `now`; `rules` None: the project's touchflow.yaml."""
    settings = DispatchSettings(policy=rules) if rules is not None else None
    total = tick.DispatchResult()
    while ids := tick.claim_batch(db, now, 500, playbook_ids):
        result = tick.deliver_batch(db, proj, ids, Recorder(), now, f"dispatch-{now:%Y%m%dT%H%M}", settings=settings)
        for name in ("emails", "tasks", "failed", "deferred", "skipped"):
            getattr(total, name).update(getattr(result, name))
    return total


def task_rows(db: Engine, **where: Any) -> list[Any]:
    stmt = select(tasks).order_by(tasks.c.id)
    for key, value in where.items():
        stmt = stmt.where(tasks.c[key] == value)
    with db.connect() as conn:
        return list(conn.execute(stmt).all())


def select_ledger(db: Engine) -> list[Any]:
    with db.connect() as conn:
        return list(conn.execute(select(ledger).order_by(ledger.c.id)).all())


def task_audits(db: Engine, playbook_id: str | None = None) -> list[Any]:
    """Audit rows of task steps (not enrollments), in the order written."""
    stmt = select(audit_log).where(audit_log.c.step_id == "act").order_by(audit_log.c.id)
    if playbook_id is not None:
        stmt = stmt.where(audit_log.c.playbook_id == playbook_id)
    with db.connect() as conn:
        return list(conn.execute(stmt).all())


def open_tasks(db: Engine, csm_id: int, n: int, status: str = "open") -> None:
    """`n` tasks of `csm_id` already in the store (on an account of their own)."""
    rows = [
        {
            "send_key": f"old-{csm_id}-{status}-{i}",
            "playbook_id": "old",
            "step_id": "old",
            "account_id": 999_000 + csm_id,
            "csm_id": csm_id,
            "title": "older task",
            "body": "",
            "priority": "normal",
            "status": status,
            "due_at": NOW,
            "created_at": NOW - DAY,
            "dedupe_key": f"old-{i}",
            "queue": None,
            "updated_at": NOW - DAY,
            "occurrences": 1,
        }
        for i in range(n)
    ]
    with db.begin() as conn:
        conn.execute(insert(tasks), rows)


def team(store: Store, name: str, n: int) -> list[int]:
    return [store.csm(team=name, name=f"{name} {i}", email=f"{name}{i}@touchflow.example") for i in range(n)]


# --- dedupe ---------------------------------------------------------------------------------------


def test_same_reason_for_one_account_is_one_task(db: Engine, db_url: str, tmp_path: Path) -> None:
    """`alpha` (high, due 5d) and `beta` (low, due 2d) share `reason: renewal-risk`: one account
    gets one open task with 2 occurrences, the higher priority (alpha's), the earlier due date
    (beta's) and beta's title; beta's audit row is `task_opened` / `task_updated` naming the task.
    Another account gets its own task; `gamma` (reason `expansion`) a separate one."""
    store = Store(db, NOW)
    csm = store.csm()
    acc = store.account(plan=PLAN, csm_id=csm)
    other = store.account(plan=PLAN, csm_id=csm)
    proj = make_project(
        tmp_path,
        db_url,
        {
            "alpha": task_playbook("alpha", "title: Alpha call, priority: high, due: 5d, reason: renewal-risk"),
            "beta": task_playbook("beta", "title: Beta call, priority: low, due: 2d, reason: renewal-risk"),
            "gamma": task_playbook("gamma", "title: Gamma call, reason: expansion"),
        },
    )
    plan(db, proj, NOW, "alpha", "beta", "gamma")
    result = dispatch(db, proj, NOW, Policy())
    assert result.tasks == {"alpha": 2, "beta": 2, "gamma": 2}
    assert {r.status for r in select_ledger(db)} == {"sent"}

    risk = task_rows(db, account_id=acc, dedupe_key="renewal-risk")
    assert len(risk) == 1
    (task,) = risk
    assert (task.occurrences, task.priority, task.title, task.status) == (2, "high", "Beta call", "open")
    assert (task.due_at, task.created_at, task.updated_at) == (NOW + 2 * DAY, NOW, NOW)
    assert (task.playbook_id, task.csm_id, task.queue) == ("alpha", csm, None)  # opened by alpha
    assert [(t.dedupe_key, t.occurrences) for t in task_rows(db, account_id=other)] == [
        ("renewal-risk", 2),
        ("expansion", 1),
    ]
    assert [t.dedupe_key for t in task_rows(db, account_id=acc)] == ["renewal-risk", "expansion"]

    (alpha,) = [a for a in task_audits(db, "alpha") if a.account_id == acc]
    (beta,) = [a for a in task_audits(db, "beta") if a.account_id == acc]
    assert (alpha.decision, alpha.reason) == ("task_opened", "task_created")
    assert (beta.decision, beta.reason) == ("task_opened", "task_updated")
    assert f"open task #{task.id} for account {acc} (renewal-risk) updated, occurrence 2" in beta.detail
    assert f"csm {csm}" in beta.detail


def test_a_done_task_no_longer_dedupes(db: Engine, db_url: str, tmp_path: Path) -> None:
    """Once the open task is marked `done`, the same reason opens a new task (occurrence 1); the
    done task is left as it was."""
    store = Store(db, NOW)
    acc = store.account(plan=PLAN, csm_id=store.csm())
    proj = make_project(
        tmp_path,
        db_url,
        {
            "alpha": task_playbook("alpha", "title: First, reason: renewal-risk"),
            "beta": task_playbook("beta", "title: Second, reason: renewal-risk"),
        },
    )
    plan(db, proj, NOW, "alpha")
    dispatch(db, proj, NOW, Policy())
    (first,) = task_rows(db, account_id=acc)
    with db.begin() as conn:
        conn.execute(update(tasks).where(tasks.c.id == first.id).values(status="done"))

    plan(db, proj, NOW + HOUR, "beta")
    assert dispatch(db, proj, NOW + HOUR, Policy()).tasks == {"beta": 1}
    done, new = task_rows(db, account_id=acc)
    assert (done.id, done.status, done.title, done.occurrences) == (first.id, "done", "First", 1)
    assert (new.status, new.title, new.occurrences, new.dedupe_key) == ("open", "Second", 1, "renewal-risk")
    assert [a.reason for a in task_audits(db)] == ["task_created", "task_created"]


# --- assignment -----------------------------------------------------------------------------------


def test_owner_assignment_and_accounts_without_a_csm(db: Engine, db_url: str, tmp_path: Path) -> None:
    """`assign: owner`: each task goes to its account's CSM even when a teammate is idle; an account
    without a CSM gets a task in the `default` queue with no CSM."""
    store = Store(db, NOW)
    busy, idle = team(store, "growth", 2)
    open_tasks(db, busy, 3)
    mine = store.account(plan=PLAN, csm_id=busy)
    orphan = store.account(plan=PLAN, csm_id=None)
    proj = make_project(tmp_path, db_url, {"call": task_playbook("call", "title: Call")})
    plan(db, proj, NOW, "call")
    dispatch(db, proj, NOW, Policy(csm=CsmPolicy(assign="owner")))

    (owned,) = task_rows(db, account_id=mine)
    assert (owned.csm_id, owned.queue) == (busy, None)
    (queued,) = task_rows(db, account_id=orphan)
    assert (queued.csm_id, queued.queue) == (None, "default")
    assert task_rows(db, csm_id=idle) == []
    by_account = {a.account_id: a for a in task_audits(db)}
    assert by_account[mine].reason == "task_created"
    assert f"assigned to csm {busy} (owner, 3 open)" in by_account[mine].detail
    assert by_account[orphan].reason == "task_created"
    assert f"account {orphan} has no CSM: queued for team default" in by_account[orphan].detail


def test_least_loaded_picks_the_team_member_with_fewest_open_tasks(db: Engine, db_url: str, tmp_path: Path) -> None:
    """Team growth: A has 2 open tasks, B 1, C 1 and 3 done ones (done tasks do not count); an idle
    CSM of another team is never picked. Three tasks on A's accounts go to B (tie with C: lower id),
    then C, then A (all at 2: lower id)."""
    store = Store(db, NOW)
    a, b, c = team(store, "growth", 3)
    (outsider,) = team(store, "enterprise", 1)
    open_tasks(db, a, 2)
    open_tasks(db, b, 1)
    open_tasks(db, c, 1)
    open_tasks(db, c, 3, status="done")
    accs = [store.account(plan=PLAN, csm_id=a) for _ in range(3)]
    proj = make_project(tmp_path, db_url, {"call": task_playbook("call", "title: Call")})
    plan(db, proj, NOW, "call")
    dispatch(db, proj, NOW, Policy(csm=CsmPolicy(assign="least_loaded")))

    placed = task_rows(db, playbook_id="call")
    assert sorted(t.account_id for t in placed) == accs
    assert [t.csm_id for t in placed] == [b, c, a]
    assert task_rows(db, csm_id=outsider) == []
    assert all(t.queue is None for t in placed)
    details = [x.detail for x in task_audits(db)]
    assert f"assigned to csm {b} (least loaded, 1 open)" in details[0]
    assert f"assigned to csm {a} (owner, 2 open)" in details[2]


def test_round_robin_rotates_through_the_team(db: Engine, db_url: str, tmp_path: Path) -> None:
    """`assign: round_robin`: four tasks on accounts of A go A, B, C, A (never-assigned first, by
    id, then the one assigned longest ago); a CSM of another team gets none. The next dispatch goes
    on from where the rotation stopped: B, C, A, B."""
    store = Store(db, NOW)
    a, b, c = team(store, "growth", 3)
    (outsider,) = team(store, "enterprise", 1)
    for _ in range(4):
        store.account(plan=PLAN, csm_id=a)
    proj = make_project(
        tmp_path,
        db_url,
        {"call": task_playbook("call", "title: Call"), "later": task_playbook("later", "title: Later")},
    )
    rules = Policy(csm=CsmPolicy(assign="round_robin"))
    plan(db, proj, NOW, "call")
    dispatch(db, proj, NOW, rules)
    assert [t.csm_id for t in task_rows(db, playbook_id="call")] == [a, b, c, a]
    assert f"assigned to csm {b} (round robin, 0 open)" in task_audits(db, "call")[1].detail

    plan(db, proj, NOW + HOUR, "later")
    dispatch(db, proj, NOW + HOUR, rules)
    assert [t.csm_id for t in task_rows(db, playbook_id="later")] == [b, c, a, b]
    assert task_rows(db, csm_id=outsider) == []


# --- capacity -------------------------------------------------------------------------------------


def test_a_full_owner_overflows_to_the_team_queue(db: Engine, db_url: str, tmp_path: Path) -> None:
    """`touchflow.yaml` → `policy: {csm: {max_open_tasks: 2}}`: the owner takes two tasks; the third
    goes to the team's queue (no CSM), audited `task_opened` / `over_csm_capacity` with the numbers.
    Closing one of the owner's tasks makes room again."""
    store = Store(db, NOW)
    owner, teammate = team(store, "growth", 2)
    accs = [store.account(plan=PLAN, csm_id=owner) for _ in range(3)]
    proj = make_project(
        tmp_path,
        db_url,
        {"call": task_playbook("call", "title: Call"), "again": task_playbook("again", "title: Again")},
        touchflow="policy: {csm: {assign: owner, max_open_tasks: 2}}\n",
    )
    assert proj.delivery.policy.csm.max_open_tasks == 2
    plan(db, proj, NOW, "call")
    dispatch(db, proj, NOW)  # the project's touchflow.yaml

    placed = task_rows(db, playbook_id="call")
    assert [t.account_id for t in placed] == accs
    assert [(t.csm_id, t.queue) for t in placed] == [(owner, None), (owner, None), (None, "growth")]
    assert task_rows(db, csm_id=teammate) == []
    audits = task_audits(db, "call")
    assert [(x.decision, x.reason) for x in audits] == [("task_opened", "task_created")] * 2 + [
        ("task_opened", "over_csm_capacity")
    ]
    assert f"csm {owner} has 2 open tasks, cap 2: queued for team growth" in audits[2].detail

    with db.begin() as conn:
        conn.execute(update(tasks).where(tasks.c.id == placed[0].id).values(status="done"))
    plan(db, proj, NOW + HOUR, "again")
    dispatch(db, proj, NOW + HOUR)
    assert [(t.csm_id, t.queue) for t in task_rows(db, playbook_id="again")] == [
        (owner, None),
        (None, "growth"),
        (None, "growth"),
    ]


def test_least_loaded_fills_the_team_before_the_queue(db: Engine, db_url: str, tmp_path: Path) -> None:
    """`least_loaded` with `max_open_tasks: 2`: A has 2 open tasks, B 1, C 2. A's first task goes
    to B (not over the cap); the second finds everyone at 2 and goes to the queue, the detail
    naming each member's count."""
    store = Store(db, NOW)
    a, b, c = team(store, "growth", 3)
    open_tasks(db, a, 2)
    open_tasks(db, b, 1)
    open_tasks(db, c, 2)
    for _ in range(2):
        store.account(plan=PLAN, csm_id=a)
    proj = make_project(
        tmp_path,
        db_url,
        {"call": task_playbook("call", "title: Call")},
        touchflow="policy: {csm: {assign: least_loaded, max_open_tasks: 2}}\n",
    )
    plan(db, proj, NOW, "call")
    dispatch(db, proj, NOW)
    assert [(t.csm_id, t.queue) for t in task_rows(db, playbook_id="call")] == [(b, None), (None, "growth")]
    first, second = task_audits(db, "call")
    assert first.reason == "task_created"
    assert second.reason == "over_csm_capacity"
    assert f"csm {a} has 2, csm {b} has 2, csm {c} has 2 open tasks, cap 2: queued for team growth" in second.detail


# --- due dates ------------------------------------------------------------------------------------

HOLIDAY_POLICY = "policy: {timezone: UTC, business_days: [mon, tue, wed, thu, fri], holidays: [2026-12-21]%s}\n"
FRIDAY = datetime(2026, 12, 18, 16, 30)  # 11:30 in New York


@pytest.mark.parametrize(
    ("due", "csm_policy", "expected"),
    [
        # Mon 21 is a holiday: Tue 22, Wed 23, Thu 24, at 11:30 New York time (16:30 UTC)
        ("3d", "", datetime(2026, 12, 24, 16, 30)),
        ("1d", "", datetime(2026, 12, 22, 16, 30)),
        ("3d", ", csm: {due_in_business_days: false}", FRIDAY + 3 * DAY),  # Monday, the holiday
        ("12h", "", FRIDAY + 12 * HOUR),  # Saturday 04:30 UTC: not rounded to a business day
        ("36h", "", FRIDAY + 36 * HOUR),
    ],
    ids=["3d-business", "1d-business", "3d-calendar", "12h", "36h"],
)
def test_due_dates(db: Engine, db_url: str, tmp_path: Path, due: str, csm_policy: str, expected: datetime) -> None:
    store = Store(db, FRIDAY)
    acc = store.account(plan=PLAN, csm_id=store.csm(), timezone="America/New_York")
    proj = make_project(
        tmp_path,
        db_url,
        {"call": task_playbook("call", f"title: Call, due: {due}")},
        touchflow=HOLIDAY_POLICY % csm_policy,
    )
    plan(db, proj, FRIDAY, "call")
    dispatch(db, proj, FRIDAY)
    (task,) = task_rows(db, account_id=acc)
    assert (task.created_at, task.due_at) == (FRIDAY, expected)


def test_due_dates_count_business_days_in_the_accounts_zone(db: Engine, db_url: str, tmp_path: Path) -> None:
    """At Saturday 03:00 UTC it is still Friday 22:00 in New York: with Monday a holiday, `due: 1d`
    is Tuesday 22:00 there (Wednesday 03:00 UTC), but Tuesday 03:00 for a London account, whose
    Saturday has already begun."""
    at = datetime(2026, 12, 19, 3, 0)
    store = Store(db, at)
    ny = store.account(plan=PLAN, timezone="America/New_York")
    london = store.account(plan=PLAN, timezone="Europe/London")
    proj = make_project(
        tmp_path, db_url, {"call": task_playbook("call", "title: Call, due: 1d")}, touchflow=HOLIDAY_POLICY % ""
    )
    plan(db, proj, at, "call")
    dispatch(db, proj, at)
    (ny_task,) = task_rows(db, account_id=ny)
    (london_task,) = task_rows(db, account_id=london)
    assert ny_task.due_at == datetime(2026, 12, 23, 3, 0)
    assert london_task.due_at == datetime(2026, 12, 22, 3, 0)


@pytest.mark.parametrize(
    ("start", "days", "tz", "expected"),
    [
        # Friday 2027-03-05 → +3: Mon, Tue, Wed
        (datetime(2027, 3, 5, 14, 0), 3, "UTC", datetime(2027, 3, 10, 14, 0)),
        # Friday 2027-03-12 → +3 with Monday 2027-03-15 a holiday: Tue, Wed, Thu
        (datetime(2027, 3, 12, 14, 0), 3, "UTC", datetime(2027, 3, 18, 14, 0)),
        (datetime(2027, 3, 12, 14, 0), 0, "UTC", datetime(2027, 3, 12, 14, 0)),
        # spring forward in New York on Sunday 2027-03-14: Fri 09:00 EST → Thu 09:00 EDT (13:00 UTC)
        (datetime(2027, 3, 12, 14, 0), 3, "America/New_York", datetime(2027, 3, 18, 13, 0)),
        # spring forward in Berlin on Sunday 2027-03-28: Fri 09:00 CET → Mon 09:00 CEST
        (datetime(2027, 3, 26, 8, 0), 1, "Europe/Berlin", datetime(2027, 3, 29, 7, 0)),
        # fall back in New York on Sunday 2026-11-01: Fri 09:00 EDT → Mon 09:00 EST
        (datetime(2026, 10, 30, 13, 0), 1, "America/New_York", datetime(2026, 11, 2, 14, 0)),
        # the local date decides: Saturday 03:00 UTC is Friday 22:00 in New York
        (datetime(2027, 3, 6, 3, 0), 1, "America/New_York", datetime(2027, 3, 9, 3, 0)),
        (datetime(2027, 3, 6, 3, 0), 1, "UTC", datetime(2027, 3, 8, 3, 0)),
    ],
)
def test_add_business_days(start: datetime, days: int, tz: str, expected: datetime) -> None:
    calendar = Calendar(business_days=MON_FRI, holidays=frozenset({date(2027, 3, 15)}))
    assert add_business_days(start, days, calendar, tz) == expected


# --- do-not-contact -------------------------------------------------------------------------------


def test_do_not_contact_accounts_get_no_task_unless_the_playbook_says_so(
    db: Engine, db_url: str, tmp_path: Path
) -> None:
    """For an account with `traits: {do_not_contact: true}`, `quiet`'s task step is `skipped`,
    audited `skipped` / `suppressed_do_not_contact`, and opens nothing; `loud`, with
    `policy: {tasks_when_suppressed: true}`, opens its task. An ordinary account gets both."""
    store = Store(db, NOW)
    csm = store.csm()
    closed = store.account(plan=PLAN, csm_id=csm, traits={"do_not_contact": True})
    fine = store.account(plan=PLAN, csm_id=csm)
    proj = make_project(
        tmp_path,
        db_url,
        {
            "quiet": task_playbook("quiet", "title: Quiet"),
            "loud": task_playbook("loud", "title: Loud", policy="{tasks_when_suppressed: true}"),
        },
    )
    plan(db, proj, NOW, "quiet", "loud")
    result = dispatch(db, proj, NOW, Policy())
    assert (result.tasks, result.skipped) == ({"quiet": 1, "loud": 2}, {"quiet": 1})

    assert [t.playbook_id for t in task_rows(db, account_id=closed)] == ["loud"]
    assert sorted(t.playbook_id for t in task_rows(db, account_id=fine)) == ["loud", "quiet"]
    (skipped,) = [r for r in select_ledger(db) if r.playbook_id == "quiet" and r.account_id == closed]
    assert skipped.status == "skipped"
    (audit,) = [a for a in task_audits(db, "quiet") if a.account_id == closed]
    assert (audit.decision, audit.reason, audit.send_key) == ("skipped", "suppressed_do_not_contact", skipped.send_key)
    assert f"account {closed} is do-not-contact" in audit.detail
    (loud,) = [a for a in task_audits(db, "loud") if a.account_id == closed]
    assert (loud.decision, loud.reason) == ("task_opened", "task_created")


# --- concurrency ----------------------------------------------------------------------------------


def test_concurrent_dispatchers_never_open_two_tasks_for_one_reason(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two threads, each dispatching the rows of one playbook, released together: `alpha` and
    `beta` share a reason for the same 8 accounts. Each placement is held open a little before its
    window commits (so, without the policy lock, the other dispatcher would look for the open task
    before it is visible, and open a second one). Every account ends with one open task with two
    occurrences, and exactly one of its two audit rows says `task_updated`."""
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite serialises every writer on the database file: no concurrent placement to race")
    real_place = outcomes_module.place_task

    def slow_place(*args: Any, **kwargs: Any) -> Any:
        placed = real_place(*args, **kwargs)
        time.sleep(0.02)  # the transaction stays open, its task not yet visible to the other thread
        return placed

    monkeypatch.setattr(outcomes_module, "place_task", slow_place)
    store = Store(db, NOW)
    csm = store.csm()
    accs = [store.account(plan=PLAN, csm_id=csm) for _ in range(8)]
    proj = make_project(
        tmp_path,
        db_url,
        {
            "alpha": task_playbook("alpha", "title: Alpha, reason: shared"),
            "beta": task_playbook("beta", "title: Beta, reason: shared"),
        },
    )
    plan(db, proj, NOW, "alpha", "beta")
    claimed = {pid: tick.claim_batch(db, NOW, 500, [pid]) for pid in ("alpha", "beta")}
    assert [len(ids) for ids in claimed.values()] == [8, 8]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(pid: str) -> None:
        try:
            start.wait(timeout=10)
            tick.deliver_batch(db, proj, claimed[pid], Recorder(), NOW, f"dispatch-{pid}", settings=DispatchSettings())
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(pid,)) for pid in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert {r.status for r in select_ledger(db)} == {"sent"}
    rows = task_rows(db)
    assert sorted(t.account_id for t in rows) == accs  # one task per account
    assert {(t.status, t.occurrences) for t in rows} == {("open", 2)}
    reasons = [(a.account_id, a.reason) for a in task_audits(db)]
    for acc in accs:
        assert sorted(r for x, r in reasons if x == acc) == ["task_created", "task_updated"]
