"""Waits, driven by `now`: durations, a date field with an offset, and local windows across DST."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.factories import Store
from tests.journeys.helpers import (
    NOW,
    audit,
    decisions,
    enrollment,
    ledger_rows,
    load,
    playbook,
    run_tick,
    steps_done,
    task_rows,
)

THREE_STEPS = playbook(
    "three",
    """\
  - id: hello
    email: {to: {role: [admin]}, template: welcome/hello}
  - id: pause
    wait: 3d
  - id: call
    task: {title: "Call {{ account.name }}"}
  - id: settle
    wait: 2d
  - id: bye
    email: {to: {role: [admin]}, template: renewal/notice}
""",
)


def test_three_step_journey_over_several_ticks(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    acc = store.account(name="Hanbit Logistics", plan="three")
    store.contact(acc, "admin")
    store.contact(acc, "user")  # not a recipient
    proj = load(tmp_path, db_url, THREE_STEPS)
    day3, day5 = NOW + timedelta(days=3), NOW + timedelta(days=5)

    first = run_tick(db, proj, NOW)["three"]
    assert (first.enrolled, first.emails, first.tasks) == (1, 1, 0)
    e = enrollment(db, acc)
    assert (e.status, e.step_index, e.step_id, e.next_run_at) == ("active", 2, "call", day3)

    for early in (NOW + timedelta(hours=1), day3 - timedelta(seconds=1)):
        assert run_tick(db, proj, early)["three"].tasks == 0
    assert steps_done(db, acc) == ["hello"]

    assert run_tick(db, proj, day3)["three"].tasks == 1
    e = enrollment(db, acc)
    assert (e.status, e.step_index, e.step_id, e.next_run_at) == ("active", 4, "bye", day5)
    assert run_tick(db, proj, day5 - timedelta(minutes=1))["three"].emails == 0

    assert run_tick(db, proj, day5)["three"].emails == 1
    e = enrollment(db, acc)
    assert (e.status, e.step_index, e.step_id, e.next_run_at) == ("completed", 5, None, None)
    assert (e.ended_at, e.outcome) == (day5, "all 5 steps done")

    assert run_tick(db, proj, day5 + timedelta(days=30))["three"].emails == 0
    assert [(r.step_id, r.kind, r.status) for r in ledger_rows(db)] == [
        ("hello", "email", "sent"),
        ("call", "task", "sent"),
        ("bye", "email", "sent"),
    ]
    assert [t.title for t in task_rows(db)] == ["Call Hanbit Logistics"]
    assert [(r.at, r.decision, r.reason, r.step_id) for r in audit(db)] == [
        (NOW, "enrolled", "trigger_matched", None),
        (NOW, "waiting", "wait_step", "pause"),
        (NOW, "sent", "delivered_to_channel", "hello"),
        (day3, "waiting", "wait_step", "settle"),
        (day3, "task_opened", "task_created", "call"),
        (day5, "completed", "journey_end", None),
        (day5, "sent", "delivered_to_channel", "bye"),
    ]
    assert audit(db, decision="waiting")[0].detail == f"until {day3.isoformat()}"
    assert len(list(proj.settings.outbox_dir.glob("*.eml"))) == 2


UNTIL = playbook(
    "until",
    """\
  - id: before-renewal
    wait: {until: renewal_date, offset: -30d}
  - id: prep
    task: {title: "Prepare the renewal of {{ account.name }}"}
""",
)


def test_wait_until_a_date_field_with_an_offset(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    later = store.account(name="Later Co", plan="until", renewal_date=date(2027, 1, 15))
    soon = store.account(name="Soon Co", plan="until", renewal_date=date(2026, 11, 20))  # 30 days before: past
    proj = load(tmp_path, db_url, UNTIL)
    moment = datetime(2026, 12, 16)  # 2027-01-15 - 30 days, at 00:00 UTC

    assert run_tick(db, proj, NOW)["until"].tasks == 1
    assert (enrollment(db, soon).status, steps_done(db, soon)) == ("completed", ["prep"])
    assert decisions(db, account_id=soon, decision="waiting") == []
    e = enrollment(db, later)
    assert (e.status, e.step_id, e.next_run_at) == ("active", "prep", moment)
    assert audit(db, account_id=later, decision="waiting")[0].detail == f"until {moment.isoformat()}"

    assert run_tick(db, proj, moment - timedelta(minutes=1))["until"].tasks == 0
    assert run_tick(db, proj, moment)["until"].tasks == 1
    assert (enrollment(db, later).status, steps_done(db, later)) == ("completed", ["prep"])


WINDOW_STEPS = """\
  - id: office-hours
    wait: {window: {start: "09:00", end: "17:00", days: [mon, tue, wed, thu, fri]}}
  - id: call
    task: {title: "Call {{ account.name }}"}
"""
WINDOW = playbook("window", WINDOW_STEPS)
WINDOW_CONTACT = playbook("window-contact", WINDOW_STEPS, head="subject: contact\n")


@pytest.mark.parametrize(
    ("zone", "contact_zone", "now", "opens"),
    [
        # Saturday 10:00 KST → Monday 09:00 KST, which is Monday 00:00 UTC.
        ("Asia/Seoul", None, datetime(2026, 11, 7, 1, 0), datetime(2026, 11, 9, 0, 0)),
        # Tuesday 14:00 KST: inside the window, no wait.
        ("Asia/Seoul", None, datetime(2026, 11, 3, 5, 0), None),
        # Monday 08:59 KST is still Sunday in UTC: wait one minute, not for Monday in UTC.
        ("Asia/Seoul", None, datetime(2026, 11, 8, 23, 59), datetime(2026, 11, 9, 0, 0)),
        # Friday 17:00 KST: the end is exclusive, so Monday.
        ("Asia/Seoul", None, datetime(2026, 11, 6, 8, 0), datetime(2026, 11, 9, 0, 0)),
        # Friday 17:30 EDT; clocks go back on Sunday 1 November: Monday 09:00 EST is 14:00 UTC.
        ("America/New_York", None, datetime(2026, 10, 30, 21, 30), datetime(2026, 11, 2, 14, 0)),
        # Monday 08:30 EST, the day after the change: 30 minutes.
        ("America/New_York", None, datetime(2026, 11, 2, 13, 30), datetime(2026, 11, 2, 14, 0)),
        # A contact subject: the contact's zone (Seoul) wins over its account's (London).
        ("Europe/London", "Asia/Seoul", datetime(2026, 11, 7, 1, 0), datetime(2026, 11, 9, 0, 0)),
    ],
    ids=["seoul-saturday", "seoul-inside", "seoul-monday-early", "seoul-friday-close", "ny-dst", "ny-after", "contact"],
)
def test_wait_for_a_local_window(
    db: Engine, db_url: str, tmp_path: Path, zone: str, contact_zone: str | None, now: datetime, opens: datetime | None
) -> None:
    pid = "window" if contact_zone is None else "window-contact"
    store = Store(db, now)
    acc = store.account(name="Window Co", plan=pid, timezone=zone)
    store.contact(acc, "admin", timezone=contact_zone)
    proj = load(tmp_path, db_url, WINDOW if contact_zone is None else WINDOW_CONTACT)

    run_tick(db, proj, now)
    e = enrollment(db, acc)
    if opens is None:
        assert (e.status, steps_done(db, acc)) == ("completed", ["call"])
        assert decisions(db, decision="waiting") == []
        return
    assert (e.status, e.step_id, e.next_run_at, steps_done(db, acc)) == ("active", "call", opens, [])
    run_tick(db, proj, opens - timedelta(minutes=1))
    assert steps_done(db, acc) == []
    run_tick(db, proj, opens)
    assert (enrollment(db, acc).status, steps_done(db, acc)) == ("completed", ["call"])
