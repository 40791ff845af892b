"""Pacing under the global send rate takes the dispatch's injected clock and sleep: each message
waits until its send time by that clock, so a test (or a simulation) drives time itself."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select

from benchmarks.dispatch import NOW, build_store
from engine import tick
from engine.dispatch.settings import DispatchSettings
from engine.store.models import ledger
from tests.factories import project
from tests.policy.test_gate import Recorder

T0 = 1_800_000_000.0
PLAYBOOK = """
id: paced
name: Paced
trigger: {date: contract_start, offset: 1d}
steps:
  - email: {to: {role: [admin, champion]}, template: welcome/hello}
"""


class Schedule:
    """A limiter handing out send times one second apart from T0 + 1, and remembering them."""

    rate = 1.0

    def __init__(self) -> None:
        self.handed: list[float] = []

    def reserve(self, n: int) -> list[float]:
        start = T0 + 1 + len(self.handed)
        moments = [start + i for i in range(n)]
        self.handed += moments
        return moments


def test_each_message_waits_for_its_send_time_by_the_injected_clock(db: Engine, db_url: str, tmp_path: Path) -> None:
    build_store(db, 4)
    proj = project(tmp_path, db_url, playbooks={"paced": PLAYBOOK})
    tick.evaluate_and_advance(db, proj, "paced", NOW, "plan", "recording")
    sleeps: list[float] = []
    limiter = Schedule()
    settings = DispatchSettings(limiter=limiter, clock=lambda: T0, sleep=sleeps.append)
    channel = Recorder()
    ids = tick.claim_batch(db, NOW, 500)
    result = tick.deliver_batch(db, proj, ids, channel, NOW, "paced", settings=settings)
    assert sum(result.emails.values()) == len(channel.keys) == 4
    # One message, one send time, one sleep from the frozen clock until it (never a real wait).
    assert sorted(sleeps) == [at - T0 for at in limiter.handed] == [1.0, 2.0, 3.0, 4.0]
    with db.connect() as conn:
        assert set(conn.execute(select(ledger.c.status)).scalars()) == {"sent"}
