"""A claim never strands: whatever fails after it releases it, and a claim whose dispatcher died
expires by wall-clock time, so a re-run at the same `--now` sends what was left.

Both databases; the real outbox channel writing real files.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from engine import tick
from engine.dispatch import OutboxChannel
from engine.dispatch.claims import claim
from engine.dispatch.reconcile import reconcile
from engine.project import Project
from engine.store.models import ledger
from tests.factories import Store, project

NOW = datetime(2026, 11, 23, 9, 0)
HELLO = """id: hello
name: Hello
trigger: {plan: hello}
steps:
  - id: hello
    email: {to: {role: [admin]}, template: welcome/hello}
"""


def _store_with_three(db: Engine, tmp_path: Path, db_url: str) -> Project:
    store = Store(db, NOW)
    for n in range(3):
        store.contact(store.account(plan="hello", name=f"Hello {n}"), "admin")
    return project(tmp_path, db_url, playbooks={"hello": HELLO})


def _statuses(db: Engine) -> dict[str, int]:
    with db.connect() as conn:
        rows = conn.execute(select(ledger.c.status, func.count()).group_by(ledger.c.status)).all()
    return {status: count for status, count in rows}


def test_a_failure_after_the_claim_releases_it_and_the_same_now_sends_it(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = _store_with_three(db, tmp_path, db_url)
    channel = OutboxChannel(proj.settings.outbox_dir)

    def connection_lost(*args: object, **kwargs: object) -> None:
        raise RuntimeError("server closed the connection unexpectedly")

    delivering = sys.modules["engine.dispatch.deliver"]  # the module (the package exports the function)
    monkeypatch.setattr(delivering, "gate", connection_lost)  # after the claim, before any send
    with pytest.raises(RuntimeError, match="server closed the connection"):
        tick.run_stages(db, proj, ["hello"], NOW, "first", channel)
    monkeypatch.undo()

    assert _statuses(db) == {"planned": 3}  # released: nothing left claimed, nothing attempted
    with db.connect() as conn:
        held = conn.execute(select(ledger.c.claim_token).where(ledger.c.claim_token.is_not(None))).all()
    assert held == []

    again = tick.run_stages(db, proj, ["hello"], NOW, "second", channel)  # the same --now
    assert again["hello"].emails == 3
    assert _statuses(db) == {"sent": 3}
    assert len(list(proj.settings.outbox_dir.glob("*.eml"))) == 3


def test_a_dead_dispatchers_claim_expires_by_the_wall_clock_not_the_ticks_now(
    db: Engine, db_url: str, tmp_path: Path
) -> None:
    proj = _store_with_three(db, tmp_path, db_url)
    after = proj.delivery.reconcile_after
    tick.evaluate_and_advance(db, proj, "hello", NOW, "plan")  # planning only
    claimed_wall = time.time()
    with db.begin() as conn:  # a dispatcher claims, then dies (SIGKILL: no release)
        ids = claim(conn, 500, NOW, token="dead", claimed_at=_naive(claimed_wall))
    assert len(ids) == 3 and _statuses(db) == {"claimed": 3}

    with db.begin() as conn:  # same tick time, the wall clock not yet past the deadline
        early = reconcile(conn, NOW, after, "early", wall=_naive(claimed_wall) + after - timedelta(seconds=1))
    assert early.requeued == 0 and _statuses(db) == {"claimed": 3}

    with db.begin() as conn:  # same tick time, the deadline passed on the wall clock
        late = reconcile(conn, NOW, after, "late", wall=_naive(claimed_wall) + after + timedelta(seconds=1))
    assert late.requeued == 3 and _statuses(db) == {"planned": 3}


def test_a_rerun_at_the_same_now_recovers_claims_once_their_wall_clock_deadline_passed(
    db: Engine, db_url: str, tmp_path: Path
) -> None:
    proj = _store_with_three(db, tmp_path, db_url)
    channel = OutboxChannel(proj.settings.outbox_dir)
    tick.evaluate_and_advance(db, proj, "hello", NOW, "plan")
    with db.begin() as conn:
        claim(conn, 500, NOW, token="dead", claimed_at=_naive(time.time()))

    later = time.time() + proj.delivery.reconcile_after.total_seconds() + 1
    rerun = tick.Tick(tick.LiveStore(db), proj, NOW, "rerun", ["hello"], channel, wall_clock=lambda: later)
    summaries = tick.run_tick(rerun)

    assert summaries["hello"].emails == 3
    assert _statuses(db) == {"sent": 3}


def _naive(unix: float) -> datetime:
    """A unix time as the store keeps moments: naive UTC."""
    return datetime.fromtimestamp(unix, UTC).replace(tzinfo=None)


def test_planning_records_the_projects_channel_when_none_is_named(db: Engine, db_url: str, tmp_path: Path) -> None:
    """`evaluate_and_advance` writes the channel of the project's settings on the rows it plans
    (the channel of `touchflow.yaml`, not a name the caller must remember to pass)."""
    proj = _store_with_three(db, tmp_path, db_url)
    (proj.settings.project_dir / "touchflow.yaml").write_text("channel: smtp\nsmtp: {host: mail.invalid}\n")
    from engine.project import load_project

    proj = load_project(proj.settings)
    tick.evaluate_and_advance(db, proj, "hello", NOW, "plan")
    with db.connect() as conn:
        assert conn.execute(select(ledger.c.channel).distinct()).scalars().all() == ["smtp"]


def test_a_send_slot_that_cannot_be_reserved_leaves_nothing_sending(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window is committed `sending` before its send times are reserved; when the reservation
    fails (the limiter's server unreachable), the rows never left, so they go back to `planned`
    instead of ending `unknown` and then `failed`."""
    proj = _store_with_three(db, tmp_path, db_url)
    channel = OutboxChannel(proj.settings.outbox_dir)
    delivering = sys.modules["engine.dispatch.deliver"]
    real_submit = delivering._submit_paced

    def unreachable(sender: object, outgoing: list[object], settings: object) -> None:
        raise ConnectionError("rate limiter unreachable")

    monkeypatch.setattr(delivering, "_submit_paced", unreachable)
    with pytest.raises(ConnectionError, match="unreachable"):
        tick.run_stages(db, proj, ["hello"], NOW, "first", channel)
    monkeypatch.setattr(delivering, "_submit_paced", real_submit)

    assert _statuses(db) == {"planned": 3}
    assert list(proj.settings.outbox_dir.glob("*.eml")) == []
    again = tick.run_stages(db, proj, ["hello"], NOW, "second", channel)
    assert again["hello"].emails == 3
    assert _statuses(db) == {"sent": 3}
