"""Caps hold exactly under concurrency: four dispatcher processes on one ledger (PostgreSQL).

A store of 15 accounts (6 with three contacts, 3 with two, 6 with one: 30 contacts) and 8 loaded
playbooks of different priorities, each with one planned email per contact: 240 candidates, 8 per
contact, inserted as `advance` writes them but in a seeded random order, so the small batches
(8 rows) that the dispatchers claim side by side mix contacts and accounts. The project's
`touchflow.yaml` caps every contact at 1 email a day and 2 a week, and every account at 4 a week.

Four dispatcher processes (`_dispatcher`, forked, each with its own connections) loop
`tick.claim_batch` → `tick.deliver_batch` at the same `now`; the test moves all four to the next
day together, ten times (`now` advancing by exactly 24 h, so deferrals land exactly on a later
round). Then, from the ledger (`approved_at` of the rows with status `sent`):

* no contact and no account exceeds any cap in any rolling window (and every cap is reached);
* no send key reached a channel twice, and the channels got exactly the rows marked sent;
* the total, and the count on every day, equal what ONE dispatcher sends on an identical fresh
  store — and the figures worked out by hand (96 in all) — so the caps hold exactly, not
  conservatively. (The caps are chosen so that the counts do not depend on which message wins a
  tie: per account of three contacts, 3 then 1 (the account's week is full) on days 0 and 1 and
  again on days 7 and 8; of two contacts, 2 and 2; of one, 1 and 1 (the contact's week is full).)

PostgreSQL only: on SQLite one writer at a time holds the database, and its busy handler lets one
dispatcher run a whole round while the others sleep, so nothing interleaves there.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from engine import tick
from engine.dispatch.channels import OutgoingEmail
from engine.project import Project, load_project
from engine.store.db import connect
from engine.store.models import accounts, audit_log, contacts, ledger
from tests.conftest import PG_URL, migrated_pg_schema
from tests.factories import project

NOW = datetime(2026, 11, 23, 9, 0)
DAY = timedelta(days=1)
DAYS = 10
DISPATCHERS = 4
BATCH = 8
SEED = 20_261_123
TOUCHFLOW_YAML = "policy: {caps: {contact: {day: 1, week: 2}, account: {week: 4}}}\n"
CAPS = {("contact", DAY): 1, ("contact", 7 * DAY): 2, ("account", 7 * DAY): 4}
ACCOUNT_SIZES = [3] * 6 + [2] * 3 + [1] * 6
PLAYBOOKS = {f"pb{i}": 10 * i for i in range(1, 9)}  # id → priority
EXPECTED_PER_DAY = {
    3: [3, 1, 0, 0, 0, 0, 0, 3, 1, 0],
    2: [2, 2, 0, 0, 0, 0, 0, 2, 2, 0],
    1: [1, 1, 0, 0, 0, 0, 0, 1, 1, 0],
}
"""Emails per account on each day, by the account's number of contacts (see the docstring)."""
ROUND_TIMEOUT_S = 60


def playbook_yaml(pid: str, priority: int) -> str:
    return (
        f"id: {pid}\nname: {pid}\npriority: {priority}\ntrigger: {{date: contract_start, offset: 1d}}\n"
        "steps:\n  - email: {to: {role: [admin, champion, user]}, template: welcome/hello}\n"
    )


# --- the dispatcher processes ---------------------------------------------------------------------


class _KeyRecorder:
    """A channel that keeps the send key of every message it is handed."""

    name = "recording"

    def __init__(self) -> None:
        self.keys: list[str] = []

    def send(self, email: OutgoingEmail) -> str:
        self.keys.append(email.send_key)
        return f"rec:{email.send_key}"


def _dispatcher(pipe: Connection, db_url: str, proj: Project) -> None:
    """One dispatcher process with its own connections: for each `(now, run_id)` it receives, it
    drains everything claimable at that moment (claim → deliver in batches of BATCH, under the
    project's touchflow.yaml policy) and answers with the send keys its channel was handed; None
    ends it. A failure is answered with its traceback."""
    engine = connect(db_url)
    try:
        while (order := pipe.recv()) is not None:
            now, run_id = order
            channel = _KeyRecorder()
            while ids := tick.claim_batch(engine, now, BATCH):
                tick.deliver_batch(engine, proj, ids, channel, now, run_id)
            pipe.send(channel.keys)
    except BaseException:
        pipe.send(traceback.format_exc())
    finally:
        engine.dispose()
        pipe.close()
        # A forked child must not run the clean-up it inherited (e.g. a Prefect test server
        # started by an earlier test in this session): that made the exit code 1.
        os._exit(0)


def run_dispatchers(db_url: str, proj: Project, n: int) -> list[list[str]]:
    """`n` dispatcher processes over DAYS rounds: all at the same `now`, then all at the next day.
    Returns, per dispatcher, the send keys its channel was handed.

    The processes are forked from this one (the engine already imported and the project loaded,
    so they start in milliseconds); each opens its own connections."""
    context = multiprocessing.get_context("fork")
    pipes = [context.Pipe() for _ in range(n)]
    procs = [context.Process(target=_dispatcher, args=(child, db_url, proj), daemon=True) for _, child in pipes]
    for p in procs:
        p.start()
    sent: list[list[str]] = [[] for _ in range(n)]
    try:
        for day in range(DAYS):
            now = NOW + day * DAY
            for i, (mine, _) in enumerate(pipes):
                mine.send((now, f"d{i}-day{day}"))
            for i, (mine, _) in enumerate(pipes):
                assert mine.poll(ROUND_TIMEOUT_S), f"dispatcher {i} did not finish day {day}"
                answer = mine.recv()
                assert isinstance(answer, list), answer
                sent[i].extend(answer)
        for mine, _ in pipes:
            mine.send(None)
        for p in procs:
            p.join(timeout=ROUND_TIMEOUT_S)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    return sent


# --- the test -------------------------------------------------------------------------------------


@contextmanager
def fresh_store(tmp_path: Path, name: str) -> Iterator[str]:
    """Another empty, migrated PostgreSQL schema (for the single dispatcher's run)."""
    assert PG_URL is not None
    with migrated_pg_schema(PG_URL, name) as url:
        yield url


def build(db_url: str, tmp_path: Path, name: str) -> Project:
    """Accounts, contacts and the shuffled ledger in the store at `db_url`, and the project (with
    its touchflow.yaml). Deterministic: the same store for every call."""
    proj = project(tmp_path / name, db_url, playbooks={pid: playbook_yaml(pid, p) for pid, p in PLAYBOOKS.items()})
    (proj.settings.project_dir / "touchflow.yaml").write_text(TOUCHFLOW_YAML, encoding="utf-8")
    versions = {p.id: p.version for p in proj.playbooks}
    account_rows, contact_rows, planned = [], [], []
    contact_id = 0
    for account_id, size in enumerate(ACCOUNT_SIZES, start=1):
        account_rows.append(
            {"id": account_id, "name": f"Account {account_id}", "tier": "tech_touch", "plan": "starter", "arr": 9000.0,
             "seats_purchased": 10, "lifecycle_stage": "onboarding", "contract_start": date(2026, 11, 22),
             "renewal_date": date(2027, 11, 22), "csm_id": None, "status": "active", "timezone": "UTC",
             "locale": "en", "traits": {}}
        )  # fmt: skip
        for role in ("admin", "champion", "user")[:size]:
            contact_id += 1
            contact_rows.append(
                {"id": contact_id, "account_id": account_id, "email": f"person{contact_id}@example.com",
                 "name": f"Person {contact_id}", "role": role, "timezone": None, "locale": None, "traits": {}}
            )  # fmt: skip
            for pid in PLAYBOOKS:
                planned.append(
                    {"send_key": f"{pid}-c{contact_id}", "kind": "email", "channel": "recording", "status": "planned",
                     "playbook_id": pid, "playbook_version": versions[pid], "step_id": "email-1",
                     "enrollment_id": account_id, "account_id": account_id, "contact_id": contact_id,
                     "payload": {"template": "welcome/hello", "from": "team"}, "error": None,
                     "created_at": NOW, "updated_at": NOW}
                )  # fmt: skip
    random.Random(SEED).shuffle(planned)
    engine = connect(db_url)
    with engine.begin() as conn:
        conn.execute(insert(accounts), account_rows)
        conn.execute(insert(contacts), contact_rows)
        conn.execute(insert(ledger), planned)
    engine.dispose()
    return load_project(proj.settings)


def sent_rows(db_url: str) -> list[Any]:
    engine = connect(db_url)
    with engine.connect() as conn:
        rows = list(conn.execute(select(ledger).where(ledger.c.status == "sent")).all())
    engine.dispose()
    return rows


def per_day(rows: list[Any]) -> list[int]:
    days = Counter((r.approved_at - NOW) // DAY for r in rows)
    return [days[d] for d in range(DAYS)]


def worst_windows(rows: list[Any]) -> dict[tuple[str, timedelta], int]:
    """The most sends any one contact / account got in any rolling window of each cap's length
    (windows (t - length, t] ending at each send time t: the count only grows at a send)."""
    worst: dict[tuple[str, timedelta], int] = {}
    for scope, length in CAPS:
        times: dict[int, list[datetime]] = defaultdict(list)
        for r in rows:
            times[r.contact_id if scope == "contact" else r.account_id].append(r.approved_at)
        worst[(scope, length)] = max(sum(1 for s in ts if t - length < s <= t) for ts in times.values() for t in ts)
    return worst


def test_four_dispatchers_hold_every_cap_exactly(db: Engine, db_url: str, tmp_path: Path) -> None:
    """See the module docstring: 4 processes, 10 days, 240 candidates; caps never exceeded, no
    duplicate, and exactly the single dispatcher's (and the hand-computed) count on every day."""
    if db.dialect.name == "sqlite":
        pytest.skip(
            "PostgreSQL only: SQLite admits one writer at a time and its busy handler lets one dispatcher "
            "run a whole round while the others sleep, so four dispatchers never interleave there"
        )
    started = time.monotonic()
    proj = build(db_url, tmp_path, "four")
    assert proj.delivery.policy.caps.account.week == 4
    db.dispose()  # no pooled connection of this process is inherited by the forked dispatchers
    sent_by = run_dispatchers(db_url, proj, DISPATCHERS)
    rows = sent_rows(db_url)
    with db.connect() as conn:  # nothing failed or was skipped: the rest is deferred (planned)
        assert set(conn.execute(select(ledger.c.status)).scalars()) == {"sent", "planned"}

    # No duplicates: every key reached a channel once, and those are exactly the rows marked sent.
    handed = [key for keys in sent_by for key in keys]
    assert len(handed) == len(set(handed))
    assert set(handed) == {r.send_key for r in rows}
    # The four really ran side by side: several of them sent on the first day.
    with db.connect() as conn:
        first_day = set(
            conn.execute(
                select(audit_log.c.run_id).where(audit_log.c.decision == "sent", audit_log.c.at == NOW)
            ).scalars()
        )
    assert len(first_day) >= 2, first_day

    # No cap exceeded in any window.
    worst = worst_windows(rows)
    assert all(worst[cap] <= limit for cap, limit in CAPS.items()), worst
    assert worst == CAPS  # and every cap was reached

    # Exactly what one dispatcher sends, and what the caps allow.
    with fresh_store(tmp_path, "one") as one_url:
        one_sent = run_dispatchers(one_url, build(one_url, tmp_path, "one"), 1)
        one_rows = sent_rows(one_url)
    assert len(one_sent[0]) == len(one_rows)
    expected = [sum(EXPECTED_PER_DAY[size][d] for size in ACCOUNT_SIZES) for d in range(DAYS)]
    assert per_day(one_rows) == expected
    assert per_day(rows) == expected
    assert len(rows) == len(one_rows) == 96
    with db.connect() as conn:
        reasons = Counter(conn.execute(select(audit_log.c.reason).where(audit_log.c.decision == "deferred")).scalars())
    assert set(reasons) <= {"capped_contact_daily", "capped_contact_weekly", "capped_account_weekly", "lower_priority"}
    print(f"\n{db.dialect.name}: {len(rows)} sent of 240, per day {per_day(rows)}, deferrals {dict(reasons)}, "
          f"{time.monotonic() - started:.1f} s")  # fmt: skip
