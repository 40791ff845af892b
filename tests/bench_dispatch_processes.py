"""Messages per second of dispatch with 1, 2 and 4 dispatcher processes, on PostgreSQL, against
the fake SendGrid in its own process answering after 50 ms; and, in the same run, the floor: the
bare SendGrid client posting a valid body at the same total concurrency (8 per process).

    TOUCHFLOW_TEST_PG_URL=postgresql+psycopg://… .venv/bin/python -m tests.bench_dispatch_processes [MESSAGES]

Each measurement gets a fresh schema with MESSAGES planned emails (one playbook, no caps, no
send rate) and times `dispatch_in_processes` with the tick's claim size for that many processes.
Prints one JSON line per process count, with the load average at its start.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.dispatch import NOW, WARM_UP_BODY, build_store, time_floor
from engine.project import load_project
from engine.store.db import connect
from engine.store.models import ledger
from engine.tick import evaluate_and_advance
from engine.tick.dispatchers import MIN_PROCESS_BATCH, dispatch_in_processes
from engine.tick.stages import DISPATCH_BATCH
from tests.conftest import migrated_pg_schema
from tests.factories import project
from tests.fakes.provider_process import provider_process

CONCURRENCY = 8
PLAYBOOK = """
id: bench
name: bench
trigger: {date: contract_start, offset: 1d}
steps:
  - email: {to: {role: [admin, champion]}, template: welcome/hello}
"""
TOUCHFLOW_YAML = (
    f"channel: sendgrid\nsendgrid: {{api_key_env: SENDGRID_API_KEY, concurrency: {CONCURRENCY}, attempts: 1}}\n"
)


def measure(base: str, processes: int, messages: int, url: str) -> dict[str, object]:
    """One measurement: dispatch `messages` planned emails in `processes` processes, and the floor."""
    load = os.getloadavg()
    with migrated_pg_schema(base, "bench") as db_url, tempfile.TemporaryDirectory() as tmp:
        engine = connect(db_url)
        build_store(engine, messages)
        proj = project(Path(tmp), db_url, playbooks={"bench": PLAYBOOK})
        (proj.settings.project_dir / "touchflow.yaml").write_text(TOUCHFLOW_YAML, encoding="utf-8")
        proj = load_project(proj.settings)
        evaluate_and_advance(engine, proj, "bench", NOW, "plan", "sendgrid")
        batch = max(DISPATCH_BATCH // processes, MIN_PROCESS_BATCH)
        started = time.perf_counter()
        reports = dispatch_in_processes(proj.settings, NOW, "bench", ["bench"], processes, batch=batch, archive=False)
        seconds = time.perf_counter() - started
        with engine.connect() as conn:
            sent = conn.execute(ledger.select().where(ledger.c.status == "sent")).rowcount
        engine.dispose()
    floor_s = time_floor(url, [WARM_UP_BODY] * messages, CONCURRENCY * processes)
    emails = sum(sum(r.counts.get("emails", {}).values()) for r in reports)
    return {
        "processes": processes,
        "messages": messages,
        "sent": emails,
        "sent_in_ledger": sent,
        "seconds": round(seconds, 2),
        "msgs_per_s": round(emails / seconds, 1),
        "floor_concurrency": CONCURRENCY * processes,
        "floor_msgs_per_s": round(messages / floor_s, 1),
        "ratio": round((emails / seconds) / (messages / floor_s), 2),
        "per_process": [sum(r.counts.get("emails", {}).values()) for r in reports],
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def main() -> int:
    base = os.environ["TOUCHFLOW_TEST_PG_URL"]
    messages = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    os.environ["SENDGRID_API_KEY"] = "SG.bench-processes"
    with provider_process(latency=0.05) as fake:
        os.environ["TOUCHFLOW_SENDGRID_HOST"] = fake.url  # read by each spawned process
        time_floor(fake.url, [WARM_UP_BODY] * 100, CONCURRENCY)  # connections, imports
        for processes in (1, 2, 4):
            print(json.dumps(measure(base, processes, messages, fake.url)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
