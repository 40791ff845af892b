"""A dispatcher process for `tests/test_dispatch_crash.py`, meant to be killed with SIGKILL.

It loops `claim_batch` → `deliver_batch` through a `SendGridChannel` or the outbox exactly as the
flow's dispatch tasks do, committing each outcome as soon as it is known. Configuration comes
from the environment (the test sets it):

* TOUCHFLOW_DATABASE_URL, TOUCHFLOW_PROJECT_DIR — the store and the project, as for any command;
* CRASH_SENDGRID_URL, CRASH_SENDGRID_KEY — the fake SendGrid in the test process and a key;
* CRASH_CHANNEL=outbox — send through the outbox (the project's `outbox/`) instead;
* CRASH_KILL_AT, CRASH_KILL_N — the process kills itself with SIGKILL at a chosen point:
  `after-claim` once its N-th batch is claimed (committed) and before it is delivered,
  `before-rename` as the N-th outbox message is written to its temp file but not yet renamed,
  `after-rename` just after the N-th outbox message is committed, before its outcome is written;
* CRASH_NOW — the tick's moment (ISO 8601, naive UTC); CRASH_RUN_ID — the run id of the audit rows;
* CRASH_BATCH, CRASH_CONCURRENCY, CRASH_ATTEMPTS, CRASH_TIMEOUT_S — dispatch knobs;
* CRASH_DRAIN=1 — run to completion: once nothing is claimable but rows wait for a retry
  (`planned` with a later `not_before`), move the clock past their `not_before` and go on.

It writes ``ready`` on stdout (after imports and project load, before the first claim) so the
test can time its kill from the moment dispatching starts, and ``done`` when it finishes.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from engine.config import load_settings
from engine.dispatch import EmailChannel, OutboxChannel
from engine.dispatch.sendgrid_channel import SendGridChannel
from engine.dispatch.settings import DispatchSettings
from engine.project import load_project
from engine.store.db import connect
from engine.store.models import ledger
from engine.tick import claim_batch, deliver_batch

MAX_DRAIN_STEPS = 12


def die() -> None:
    """kill -9 of this very process: no cleanup, no flush, exactly what an OOM killer does."""
    os.kill(os.getpid(), signal.SIGKILL)


def kill_at_rename(phase: str, nth: int) -> None:
    """Make the N-th rename of an outbox message (the channel's commit) kill the process, just
    before it or just after it; the calls of every sending thread count."""
    real_replace = os.replace
    lock = threading.Lock()
    seen = [0]

    def replace(src: Any, dst: Any, **kw: Any) -> None:
        if str(dst).endswith(".eml"):
            with lock:
                seen[0] += 1
                last = seen[0] == nth
            if last and phase == "before-rename":
                die()
            real_replace(src, dst, **kw)
            if last and phase == "after-rename":
                die()
            return
        real_replace(src, dst, **kw)

    os.replace = replace


def main() -> int:
    env = os.environ
    settings = load_settings()
    project = load_project(settings)
    engine = connect(settings.database_url)
    channel: EmailChannel
    if env.get("CRASH_CHANNEL") == "outbox":
        channel = OutboxChannel(settings.outbox_dir)
    else:
        channel = SendGridChannel(env["CRASH_SENDGRID_KEY"], env["CRASH_SENDGRID_URL"], float(env["CRASH_TIMEOUT_S"]))
    kill_at, kill_n = env.get("CRASH_KILL_AT", ""), int(env.get("CRASH_KILL_N", "0"))
    if kill_at in ("before-rename", "after-rename"):
        kill_at_rename(kill_at, kill_n)
    settings = DispatchSettings(attempts=int(env["CRASH_ATTEMPTS"]), concurrency=int(env["CRASH_CONCURRENCY"]))
    batch = int(env["CRASH_BATCH"])
    now = datetime.fromisoformat(env["CRASH_NOW"])
    run_id = env["CRASH_RUN_ID"]
    drain = env.get("CRASH_DRAIN") == "1"
    playbook_ids = [p.id for p in project.active()]
    sys.stdout.write("ready\n")
    sys.stdout.flush()

    steps = batches = 0
    while True:
        ids = claim_batch(engine, now, batch, playbook_ids)
        if ids:
            batches += 1
            if kill_at == "after-claim" and batches == kill_n:
                die()
            deliver_batch(engine, project, ids, channel, now, run_id, settings=settings)
            continue
        if not drain or steps >= MAX_DRAIN_STEPS:
            break
        with engine.connect() as conn:
            waiting = conn.execute(
                select(func.count(), func.max(ledger.c.not_before)).where(ledger.c.status == "planned")
            ).one()
        if not waiting[0]:
            break
        steps += 1
        now = max(now + timedelta(minutes=5), (waiting[1] or now) + timedelta(seconds=1))
    engine.dispose()
    sys.stdout.write("done\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
