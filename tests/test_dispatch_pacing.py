"""Pacing under the global send rate takes the dispatch's injected clock and sleep: each message
waits until its send time by that clock, so a test (or a simulation) drives time itself."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from benchmarks.dispatch import NOW, build_store
from engine import tick
from engine.dispatch.channels import OutgoingEmail
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

    def release(self) -> int:
        return 0


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


class Stalled:
    """A limiter whose first window finds its process stalled: its first `LATE` send times passed
    a second ago, the rest lie ahead, 20 ms apart. Asking again for one time (a late message)
    waits `WAIT` s first, as Prefect's limiter does when the next grant is not due yet."""

    rate = 5.0  # the slack is half a gap at this rate (0.1 s): a slow thread wake-up is not late
    LATE, WAIT = 4, 0.5

    def __init__(self) -> None:
        self.ahead: dict[int, float] = {}
        self.retimed: list[float] = []
        self.lock = threading.Lock()

    def reserve(self, n: int) -> list[float]:
        now = time.time()
        if self.ahead:  # a late message asking again
            time.sleep(self.WAIT)
            with self.lock:
                self.retimed.append(time.time())
            return [time.time()]
        moments = [now - 1 + i * 0.02 for i in range(self.LATE)]
        moments += [now + 0.1 + i * 0.02 for i in range(n - self.LATE)]
        self.ahead = dict(enumerate(moments))
        return moments

    def release(self) -> int:
        return 0


class Timed(Recorder):
    """A Recorder that also notes when (unix seconds) each message was handed to it."""

    def __init__(self) -> None:
        super().__init__()
        self.at: list[float] = []

    def send(self, email: OutgoingEmail) -> str:
        with self.lock:
            self.at.append(time.time())
        return super().send(email)


def test_late_messages_wait_for_new_times_without_holding_up_the_others(
    db: Engine, db_url: str, tmp_path: Path
) -> None:
    """Four sending threads, four messages whose moments passed (a stall): each needs a new moment,
    and getting one takes 0.5 s. The eight messages whose moments lie ahead still go at them —
    no sending thread waits for a late message's new moment — and the late four go after, once
    each: 12 sent, nothing twice."""
    build_store(db, 12)
    proj = project(tmp_path, db_url, playbooks={"paced": PLAYBOOK})
    tick.evaluate_and_advance(db, proj, "paced", NOW, "plan", "recording")
    limiter, channel = Stalled(), Timed()
    settings = DispatchSettings(limiter=limiter, concurrency=4)
    ids = tick.claim_batch(db, NOW, 500)
    assert len(ids) == 12
    result = tick.deliver_batch(db, proj, ids, channel, NOW, "paced", settings=settings)
    assert sum(result.emails.values()) == 12 and len(channel.keys) == len(set(channel.keys)) == 12
    on_time = sorted(channel.at)[:8]
    planned = sorted(limiter.ahead.values())[Stalled.LATE :]
    # Each on its moment (a thread's wake-up late at most), long before the first new moment.
    assert all(abs(sent - moment) < 0.1 for sent, moment in zip(on_time, planned, strict=True)), (on_time, planned)
    assert len(limiter.retimed) == Stalled.LATE and max(on_time) < min(limiter.retimed)


class Unreachable(Stalled):
    """As `Stalled`, but a late message's new send time cannot be had: the limiter's server is
    unreachable."""

    def reserve(self, n: int) -> list[float]:
        if self.ahead:
            raise ConnectionError("the limiter's server is unreachable")
        return super().reserve(n)


@pytest.mark.parametrize("threads", [1, 4])
def test_late_messages_without_a_new_time_go_back_to_claimed(
    db: Engine, db_url: str, tmp_path: Path, threads: int
) -> None:
    """The stall of the test above, and no new send time to be had: the batch fails with the
    limiter's error, the eight messages on time are sent and written `sent`, the four late ones
    never left and are `claimed` again (the batch's release frees them), none `sending`; sending
    inline (one thread), the first late message stops the window: the rest are `claimed` too."""
    build_store(db, 12)
    proj = project(tmp_path, db_url, playbooks={"paced": PLAYBOOK})
    tick.evaluate_and_advance(db, proj, "paced", NOW, "plan", "recording")
    channel = Timed()
    ids = tick.claim_batch(db, NOW, 500)
    settings = DispatchSettings(limiter=Unreachable(), concurrency=threads)
    with pytest.raises(ConnectionError):
        tick.deliver_batch(db, proj, ids, channel, NOW, "paced", settings=settings)
    with db.connect() as conn:
        statuses = dict(Counter(conn.execute(select(ledger.c.status)).scalars()))
    assert len(channel.keys) == len(set(channel.keys))
    if threads > 1:
        assert statuses == {"sent": 8, "claimed": 4}, statuses
        assert len(channel.keys) == 8
    else:  # the first message is late: nothing went out
        assert statuses == {"claimed": 12}, statuses
        assert channel.keys == []
