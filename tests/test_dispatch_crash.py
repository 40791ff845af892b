"""Exactly-once under SIGKILL: a dispatcher killed at random moments, on SQLite and PostgreSQL.

One tick plans 2,000 emails (1,000 accounts × admin + champion). Ten dispatcher processes
(`tests/crash_dispatcher.py`) in turn send them through the SendGrid channel to a `FakeSendGrid`
in this process, each killed with SIGKILL at a seeded random moment; a last one runs to the end.
The fake injects 429s, 500s, answers slower than the client's timeout (accepted, but the
dispatcher records `unknown`) and dropped connections. The fake's accepted messages then come
back as provider events and reconciliation settles what the crashes left open.

Invariants: nothing reached the fake twice, nothing is left planned / sending / unknown, every
failed row says why, and the rows marked sent are exactly the messages the fake accepted.

The outbox has its truth on disk: dispatchers killed at chosen points (after a claim, between a
message's temp file and its rename, right after the rename) and at random moments, each tick
reconciling first, leave every planned message exactly once on disk and `sent` in the ledger.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from select import select as readable
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update
from typer.testing import CliRunner

from benchmarks.dispatch import build_store as bench_store
from engine.cli.main import app
from engine.dispatch import OutboxChannel
from engine.dispatch.deliver import WINDOW_PER_THREAD
from engine.dispatch.outcomes import MAX_DISPATCHES
from engine.dispatch.reconcile import reconcile
from engine.project import Project
from engine.store.models import audit_log, ledger, message_events
from engine.tick import evaluate_and_advance, reconcile_pending
from tests.conftest import REPO
from tests.factories import project
from tests.fakes.sendgrid_server import FakeSendGrid, Fault, FaultHook, RecordedRequest

NOW = datetime(2026, 11, 23, 9, 0)
HOUR = timedelta(hours=1)
FINAL = NOW + 3 * HOUR  # the last dispatcher's clock; the rounds run at NOW + 10 min × i
ACCOUNTS = 1_000
SEED = 20_261_123
API_KEY = "SG.crash-test-key"
ROUNDS = 10
TIMEOUT_S = 0.6  # the client's timeout; a "slow" fault answers after it
SLOW_S = 1.0
DISPATCHER = REPO / "tests" / "crash_dispatcher.py"

PLAYBOOK = """
id: crash
name: Crash
trigger: {date: contract_start, offset: 1d}
steps:
  - email: {to: {role: [admin, champion]}, template: crash}
"""
TEMPLATE = """{% extends "_layout.html" %}{% block subject %}Welcome, {{ account.name }}{% endblock %}
{% block content %}<p>Hi {{ contact.name }}, your {{ account.plan }} plan starts today.</p>{% endblock %}"""


def build_store(engine: Engine, n_accounts: int) -> None:
    """`n_accounts` accounts whose contract started yesterday, each with an admin and a champion."""
    bench_store(engine, 2 * n_accounts)


def fault_for(n: int, _request: RecordedRequest) -> Fault | None:
    """A seeded fault per request number: ~1% each of 429 and 500, ~0.5% each slow and dropped."""
    x = random.Random(SEED * 1_000_003 + n).random()
    if x < 0.01:
        return ("status", 429, {"Retry-After": "0"})
    if x < 0.02:
        return ("status", 500)
    if x < 0.025:
        return ("slow", SLOW_S)
    if x < 0.03:
        return ("drop",)
    return None


def send_key_of(request: RecordedRequest) -> str | None:
    try:
        body: Any = json.loads(request.body)
        return str(body["personalizations"][0]["custom_args"]["send_key"])
    except (ValueError, KeyError, TypeError):
        return None


def final_faults(doomed: dict[str, Fault]) -> FaultHook:
    """`doomed` send keys get their fault on every try; of the others, the first request gets a slow
    answer and the second a dropped connection (so a surviving dispatcher meets both), then the seeded ones."""
    firsts: list[Fault] = [("drop",), ("slow", SLOW_S)]
    lock = threading.Lock()

    def hook(n: int, request: RecordedRequest) -> Fault | None:
        key = send_key_of(request)
        if key in doomed:
            return doomed[key]
        with lock:
            if firsts:
                return firsts.pop()
        return fault_for(n, request)

    return hook


def dispatcher_env(db_url: str, proj: Project, fake: FakeSendGrid, now: datetime, run_id: str) -> dict[str, str]:
    return {
        **os.environ,
        "TOUCHFLOW_DATABASE_URL": db_url,
        "TOUCHFLOW_PROJECT_DIR": str(proj.settings.project_dir),
        "CRASH_SENDGRID_URL": fake.url,
        "CRASH_SENDGRID_KEY": API_KEY,
        "CRASH_NOW": now.isoformat(),
        "CRASH_RUN_ID": run_id,
        # Three windows a claim (4 threads): a kill finds rows still `claimed`, not only `sending`.
        "CRASH_BATCH": str(3 * WINDOW_PER_THREAD * 4),
        "CRASH_CONCURRENCY": "4",
        "CRASH_ATTEMPTS": "2",
        "CRASH_TIMEOUT_S": str(TIMEOUT_S),
        "PYTHONUNBUFFERED": "1",
    }


def start_dispatcher(env: dict[str, str], stderr_path: Path) -> subprocess.Popen[str]:
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(DISPATCHER)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    assert proc.stdout is not None
    ready, _, _ = readable([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != "ready":
        proc.kill()
        proc.wait()
        raise AssertionError(f"the dispatcher did not start: {stderr_path.read_text()[-3000:]}")
    return proc


def statuses(engine: Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(conn.execute(select(ledger.c.status)).scalars())


def requested_keys(fake: FakeSendGrid) -> set[str]:
    """Send keys of every mail-send request the fake received, whatever it answered."""
    return {key for key in map(send_key_of, fake.requests) if key is not None}


def feed_events(db: Engine, accepted: list[Any], at: datetime, already: set[str]) -> set[str]:
    """Store a `processed` event per accepted message not stored yet, as the signed webhook does."""
    rows = [
        {"send_key": key, "event": "processed", "occurred_at": at, "provider_event_id": f"{m.message_id}.{key[:8]}",
         "payload": {"sg_message_id": m.message_id}}
        for m in accepted
        for key in m.send_keys
        if f"{m.message_id}.{key[:8]}" not in already
    ]  # fmt: skip
    if rows:
        with db.begin() as conn:
            conn.execute(insert(message_events), rows)
    return already | {r["provider_event_id"] for r in rows}


def test_sigkilled_dispatchers_send_each_email_exactly_once(db: Engine, db_url: str, tmp_path: Path) -> None:
    build_store(db, ACCOUNTS)
    proj = project(tmp_path, db_url, playbooks={"crash": PLAYBOOK}, templates={"crash.en.html": TEMPLATE})
    planned = evaluate_and_advance(db, proj, "crash", NOW, "plan", "sendgrid")
    assert (planned.enrolled, statuses(db)) == (ACCOUNTS, Counter(planned=2 * ACCOUNTS))
    # Two messages the provider will always answer 429 / 500, held back for the last dispatcher.
    with db.begin() as conn:
        busy, broken = conn.execute(select(ledger.c.send_key).order_by(ledger.c.id.desc()).limit(2)).scalars()
        conn.execute(update(ledger).where(ledger.c.send_key.in_([busy, broken])).values(not_before=FINAL - HOUR))

    rng = random.Random(SEED)
    killed_with_work_left = 0
    with FakeSendGrid(api_keys=[API_KEY]) as fake:
        fake.set_fault_hook(fault_for)
        for i in range(ROUNDS):
            env = dispatcher_env(db_url, proj, fake, NOW + timedelta(minutes=10 * i), f"round-{i}")
            proc = start_dispatcher(env, tmp_path / f"round-{i}.err")
            time.sleep(rng.uniform(0.2, 1.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed_with_work_left += 1
            proc.wait()
            assert proc.returncode in (0, -signal.SIGKILL), (tmp_path / f"round-{i}.err").read_text()[-3000:]
        assert killed_with_work_left >= ROUNDS // 2, "the rounds must be killed mid-dispatch"
        left_by_crashes = statuses(db)
        assert left_by_crashes["sending"] > 0

        # The last dispatcher runs to the end. It meets a slow answer and a dropped connection
        # first, and the two messages the provider always answers 429 / 500: deferred at every
        # dispatch until MAX_DISPATCHES, then failed with the provider's answer.
        # As every tick does before dispatching: rows claimed by dead dispatchers go back to
        # `planned` (never requested), rows they left `sending` become `unknown` (maybe sent).
        # The webhook has meanwhile stored the provider's events for what it accepted so far.
        assert fake.wait_idle(timeout=10)
        fed = feed_events(db, fake.accepted, FINAL, set())
        with db.begin() as conn:
            zero = reconcile(conn, FINAL, timedelta(0), "reconcile-0")
        fake.set_fault_hook(final_faults({busy: ("status", 429, {"Retry-After": "0"}), broken: ("status", 500)}))
        env = {**dispatcher_env(db_url, proj, fake, FINAL, "final"), "CRASH_DRAIN": "1"}
        proc = start_dispatcher(env, tmp_path / "final.err")
        assert proc.wait(timeout=120) == 0, (tmp_path / "final.err").read_text()[-3000:]
        assert fake.wait_idle(timeout=10)
        accepted = fake.accepted
        requests = fake.requests
        asked = requested_keys(fake)
        assert fake.duplicates_by("send_key") == []

    # Provider events for every accepted message, as the signed webhook stores them.
    at = NOW + timedelta(days=1)
    feed_events(db, accepted, at, fed)
    with db.begin() as conn:
        first = reconcile(conn, at, timedelta(0), "reconcile-1")
    with db.begin() as conn:
        second = reconcile(conn, at + timedelta(minutes=1), timedelta(0), "reconcile-2")

    with db.connect() as conn:
        rows = conn.execute(select(ledger)).all()
        decisions = Counter((r.decision, r.reason) for r in conn.execute(select(audit_log)))
        unknown_details = list(
            conn.execute(select(audit_log.c.detail).where(audit_log.c.decision == "unknown")).scalars()
        )
    accepted_keys = [key for m in accepted for key in m.send_keys]
    sent = {r.send_key for r in rows if r.status == "sent"}
    failed = [r for r in rows if r.status == "failed"]
    final = Counter(r.status for r in rows)

    # Zero duplicates, zero lost.
    assert len(rows) == 2 * ACCOUNTS
    assert len(accepted_keys) == len(set(accepted_keys))
    assert sent == set(accepted_keys)
    assert set(final) <= {"sent", "failed"}, final
    assert all(r.error for r in failed)
    assert {r.error.split(":")[0] for r in failed} <= {"unconfirmed", "HTTP 429", "HTTP 500"}, [r.error for r in failed]
    by_key = {r.send_key: r for r in rows}
    assert (by_key[busy].status, by_key[busy].attempts) == ("failed", MAX_DISPATCHES - 1)
    assert by_key[busy].error == "HTTP 429: too many requests (after 2 attempts)"
    assert (by_key[broken].status, by_key[broken].attempts) == ("failed", MAX_DISPATCHES - 1)
    assert by_key[broken].error == "HTTP 500: internal error (after 2 attempts)"
    unconfirmed = [r for r in failed if r.error.startswith("unconfirmed")]
    assert zero.unconfirmed + first.unconfirmed + second.unconfirmed == len(unconfirmed)
    assert not {r.send_key for r in unconfirmed} & set(accepted_keys)
    # Every outcome kind occurred.
    assert decisions[("deferred", "provider_busy")] >= 2 * (MAX_DISPATCHES - 1)  # 429 / 500: retried later
    assert decisions[("failed", "provider_rejected")] >= 2
    assert any(d.startswith("no answer within") for d in unknown_details)  # slow: accepted, recorded unknown
    assert any("connection" in d for d in unknown_details)  # dropped mid-request
    assert decisions[("reconciled", "provider_event")] == zero.confirmed + first.confirmed + second.confirmed > 0
    assert zero.requeued > 0  # claimed by a killed dispatcher, never requested: sent by the final one
    assert zero.unknown + first.unknown > 0  # rows the crashes left sending
    assert {r.outcome for r in requests} >= {"accepted", "fault", "dropped"}
    assert not (sent - asked)
    never_tried = [r for r in unconfirmed if r.send_key not in asked]
    print(
        f"\n{db.dialect.name}: {dict(final)}; after the kills {dict(left_by_crashes)}; reconcile {first} {second};"
        f" requests {len(requests)}, accepted {len(accepted_keys)}; unconfirmed {len(unconfirmed)}, of which"
        f" never requested {len(never_tried)}; decisions {dict(decisions)}"
    )


def test_a_crash_strands_only_the_messages_in_flight(db: Engine, db_url: str, tmp_path: Path) -> None:
    window = WINDOW_PER_THREAD * 4  # the dispatcher sends on 4 threads
    build_store(db, 200)
    proj = project(tmp_path, db_url, playbooks={"crash": PLAYBOOK}, templates={"crash.en.html": TEMPLATE})
    evaluate_and_advance(db, proj, "crash", NOW, "plan", "sendgrid")
    with FakeSendGrid(api_keys=[API_KEY]) as fake:
        fake.set_fault_hook(lambda _n, _request: ("slow", 0.2))  # every answer takes 0.2 s, inside the timeout
        proc = start_dispatcher(dispatcher_env(db_url, proj, fake, NOW, "killed"), tmp_path / "killed.err")
        assert fake.wait_for(lambda: len(fake.requests) >= 1, timeout=30)
        proc.send_signal(signal.SIGKILL)  # one batch claimed, its first 4 requests in flight
        proc.wait()
        assert fake.wait_idle(timeout=10)
        asked = requested_keys(fake)
        accepted = fake.accepted
    at = NOW + timedelta(days=1)
    with db.begin() as conn:
        events = [
            {"send_key": key, "event": "processed", "occurred_at": at, "provider_event_id": m.message_id, "payload": {}}
            for m in accepted
            for key in m.send_keys
        ]
        if events:
            conn.execute(insert(message_events), events)
        reconcile(conn, at, timedelta(0), "reconcile-1")
    with db.begin() as conn:
        reconcile(conn, at + timedelta(minutes=1), timedelta(0), "reconcile-2")
    with db.connect() as conn:
        rows = conn.execute(select(ledger.c.send_key, ledger.c.status)).all()
    never_sent_but_failed = [r.send_key for r in rows if r.status == "failed" and r.send_key not in asked]
    # Only the windows in flight (two windows of WINDOW_PER_THREAD × concurrency 4, each marked
    # `sending` just before its requests) can be given up without having been requested; the rest
    # of the claim went back to `planned`.
    assert len(never_sent_but_failed) <= 2 * window
    assert sum(r.status == "planned" for r in rows) >= 200 - 2 * window


OUTBOX_KILLS = [
    ("after-claim", 2),
    ("before-rename", 9),
    ("after-rename", 17),
    ("random", 0),
    ("before-rename", 1),
    ("after-rename", 40),
    ("random", 0),
    ("after-claim", 1),
]
"""Where each outbox dispatcher dies: a chosen point at its N-th batch or message, or a random moment."""


def outbox_env(db_url: str, proj: Project, now: datetime, run_id: str, kill: tuple[str, int]) -> dict[str, str]:
    env = {
        **os.environ,
        "TOUCHFLOW_DATABASE_URL": db_url,
        "TOUCHFLOW_PROJECT_DIR": str(proj.settings.project_dir),
        "TOUCHFLOW_OUTBOX": str(proj.settings.outbox_dir),
        "CRASH_CHANNEL": "outbox",
        "CRASH_NOW": now.isoformat(),
        "CRASH_RUN_ID": run_id,
        "CRASH_BATCH": "20",
        "CRASH_CONCURRENCY": "4",
        "CRASH_ATTEMPTS": "1",
        "CRASH_KILL_AT": kill[0],
        "CRASH_KILL_N": str(kill[1]),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("TOUCHFLOW_CHANNEL", None)
    return env


def committed_files(outbox: Path) -> dict[str, bytes]:
    """send key → bytes of every committed message (temp files of killed writers are not messages)."""
    return {p.stem: p.read_bytes() for p in outbox.glob("*.eml") if not p.name.startswith(".")}


def test_sigkilled_outbox_dispatchers_leave_each_message_once_on_disk(db: Engine, db_url: str, tmp_path: Path) -> None:
    build_store(db, 250)
    proj = project(tmp_path, db_url, playbooks={"crash": PLAYBOOK}, templates={"crash.en.html": TEMPLATE})
    assert proj.delivery.channel == "outbox"
    outbox = proj.settings.outbox_dir
    evaluate_and_advance(db, proj, "crash", NOW, "plan", "outbox")
    assert statuses(db) == Counter(planned=500)

    rng = random.Random(SEED)
    settled = []
    for i, kill in enumerate(OUTBOX_KILLS):
        at = NOW + timedelta(minutes=10 * i)
        settled.append(reconcile_pending(db, proj, at, f"reconcile-{i}"))  # as every tick does first
        proc = start_dispatcher(outbox_env(db_url, proj, at, f"round-{i}", kill), tmp_path / f"round-{i}.err")
        if kill[0] == "random":
            time.sleep(rng.uniform(0.02, 0.3))
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=120)
        assert proc.returncode == -signal.SIGKILL, (tmp_path / f"round-{i}.err").read_text()[-3000:]
    left_by_kills = statuses(db)
    assert left_by_kills["sent"] < 500 and left_by_kills["sending"] + left_by_kills["claimed"] > 0, left_by_kills
    on_disk_after_kills = committed_files(outbox)
    temp_files = [name for name in os.listdir(outbox) if name.startswith(".tmp-")]
    assert temp_files  # the writers killed before their rename left them behind

    # The next tick: reconcile from the disk, then a dispatcher that runs to the end.
    settled.append(reconcile_pending(db, proj, FINAL, "reconcile-final"))
    proc = start_dispatcher(outbox_env(db_url, proj, FINAL, "final", ("", 0)), tmp_path / "final.err")
    assert proc.wait(timeout=120) == 0, (tmp_path / "final.err").read_text()[-3000:]
    index = OutboxChannel(outbox).write_index()

    with db.connect() as conn:
        rows = conn.execute(select(ledger)).all()
        delivered = Counter(
            conn.execute(
                select(audit_log.c.send_key).where(audit_log.c.reason.in_(["delivered_to_channel", "found_in_outbox"]))
            ).scalars()
        )
    files = committed_files(outbox)
    # Every planned message once on disk and `sent`, its ledger row pointing at that very file.
    assert Counter(r.status for r in rows) == Counter(sent=500)
    assert set(files) == {r.send_key for r in rows}
    for r in rows:
        assert OutboxChannel(outbox).committed(r.send_key) == r.provider_message_id
    # None sent twice: one delivery (or one finding on disk) per message in the audit, and what
    # the killed dispatchers had committed was taken as sent, never written again.
    assert delivered == Counter({r.send_key: 1 for r in rows})
    assert all(files[key] == data for key, data in on_disk_after_kills.items())
    # Every rule had work: claims of the dead requeued, files found, missing ones requeued.
    assert sum(s.requeued for s in settled) > 0
    assert sum(s.found_on_disk for s in settled) > 0
    assert sum(s.not_on_disk for s in settled) > 0
    assert sum(s.unknown + s.unconfirmed for s in settled) == 0
    assert index is not None
    page = index.read_text(encoding="utf-8")
    assert "Outbox: 500 messages" in page and ".tmp-" not in page
    print(f"\n{db.dialect.name}: after the kills {dict(left_by_kills)}; reconciled {settled}")


def test_bench_dispatch_smoke() -> None:
    result = CliRunner().invoke(app, ["bench", "dispatch", "--messages", "50", "--concurrency", "4"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert (figures["messages"], figures["concurrency"], figures["sent"], figures["server_requests"]) == (50, 4, 50, 50)
    assert figures["msgs_per_s"] > 0 and figures["floor_msgs_per_s"] > 0
    assert figures["ratio"] == pytest.approx(figures["msgs_per_s"] / figures["floor_msgs_per_s"], rel=0.01)
