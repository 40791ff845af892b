"""The audit's keyset pages at scale: the same page query at N audit rows and at 100 × N, on
PostgreSQL (each size in a schema of its own, dropped afterwards). Rows are generated and loaded
with `bulk_insert` (COPY), indexes built after the load, then ANALYZE; each page query is timed
as the best of `repeat` runs, on the first page and on a page deep in the set, under every filter
`touchflow audit` has.

    .venv/bin/python -m benchmarks.audit_pages postgresql://… 50000 5000000
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from engine.audit_report import AuditFilter, Cursor, audit_page
from engine.store.bulk import bulk_insert, deferred_indexes
from engine.store.db import connect, migrate
from engine.store.models import audit_log

START = datetime(2026, 1, 1)
PLAYBOOKS = [f"playbook-{n:02d}" for n in range(15)]
DECISIONS = [("sent", "delivered_to_channel"), ("deferred", "capped_contact_daily"), ("enrolled", "trigger_matched"),
             ("skipped", "invalid_email"), ("deferred", "awaiting_approval"), ("completed", "journey_end"),
             ("waiting", "wait_step"), ("task_opened", "task_created")]  # fmt: skip
COLUMNS = ("at", "run_id", "playbook_id", "playbook_version", "step_id", "account_id", "contact_id", "channel",
           "decision", "reason", "detail", "send_key")  # fmt: skip


def rows(count: int, seed: int = 7) -> Iterator[tuple[Any, ...]]:
    """`count` audit rows over a year, oldest first, for 30,000 accounts and 100,000 contacts."""
    rng = random.Random(seed)
    step = timedelta(days=365) / count
    for n in range(count):
        decision, reason = DECISIONS[rng.randrange(len(DECISIONS))]
        contact = rng.randrange(100_000)
        detail = f"1 email to contact {contact} in the last 24 hours, cap 1"
        yield (START + step * n, "bench", PLAYBOOKS[n % 15], "v1", "greet", contact % 30_000, contact, "email",
               decision, reason, detail, uuid.uuid4().hex)  # fmt: skip


FILTERS = {
    "none": AuditFilter(),
    "playbook": AuditFilter(playbook="playbook-03"),
    "account": AuditFilter(account=1234),
    "contact": AuditFilter(contacts=(4321,)),
    "reason": AuditFilter(reason="awaiting_approval"),
    "decision": AuditFilter(decision="deferred"),
    "until": AuditFilter(until=START + timedelta(days=200)),
}


def measure(base: str, count: int, repeat: int = 5, size: int = 50) -> dict[str, Any]:
    """Load `count` rows into a fresh schema of `base` and time the page queries (ms)."""
    schema = f"bench_audit_{uuid.uuid4().hex[:8]}"
    admin = connect(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    engine = connect(url)
    try:
        migrate(engine)
        began = time.perf_counter()
        with engine.begin() as conn, deferred_indexes(conn, audit_log):
            bulk_insert(conn, audit_log, COLUMNS, rows(count))
        loaded = time.perf_counter() - began
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE audit_log"))
        timings: dict[str, dict[str, float]] = {}
        with engine.connect() as conn:
            for name, where in FILTERS.items():
                first = _best(lambda w=where: audit_page(conn, w, size=size), repeat)
                # A page deep in the set: after the row at 60 % of the year (or of the filter's end).
                deep = Cursor(START + timedelta(days=146), 10**12)
                later = _best(lambda w=where, c=deep: audit_page(conn, w, after=c, size=size), repeat)
                timings[name] = {"first_page_ms": first, "deep_page_ms": later}
        return {"rows": count, "load_s": round(loaded, 1), "pages": timings}
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _best(run: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        page = run()
        times.append(time.perf_counter() - began)
        assert page.rows or page.next is None
    return round(min(times) * 1000, 2)


def main(argv: list[str]) -> None:
    """`python -m benchmarks.audit_pages URL SMALL LARGE`: JSON with both sizes and the ratios."""
    base, small, large = argv[0], int(argv[1]), int(argv[2])
    results = [measure(base, small), measure(base, large)]
    ratios = {
        name: {
            kind: round(results[1]["pages"][name][kind] / max(results[0]["pages"][name][kind], 1e-3), 2)
            for kind in ("first_page_ms", "deep_page_ms")
        }
        for name in FILTERS
    }
    # The machine is shared: a figure means something only next to the load it was measured under.
    load = [round(value, 2) for value in os.getloadavg()]
    print(json.dumps({"small": results[0], "large": results[1], "ratio": ratios, "load_average": load}, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
