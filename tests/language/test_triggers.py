"""Triggers — date, anniversary, event, became_true, schedule: who enters, with which occurrence key."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import Engine, insert, update

from engine.store.models import accounts, events
from tests.factories import Store
from tests.language.helpers import (
    add_events,
    compiled,
    complete_all,
    condition_states,
    matching,
    playbook_yaml,
    run,
)

NOW = datetime(2026, 11, 23, 9, 0)  # a Monday
TODAY = NOW.date()
YEAR = timedelta(days=365)


def _days(n: int) -> date:
    return TODAY + timedelta(days=n)


def test_date_trigger_offset_window_and_next_year(db: Engine) -> None:
    store = Store(db, NOW)
    in_90 = store.account(renewal_date=_days(90))
    in_91 = store.account(renewal_date=_days(91))
    in_87 = store.account(renewal_date=_days(87))  # was 90 days out 3 days ago
    in_83 = store.account(renewal_date=_days(83))  # was 90 days out exactly 7 days ago
    in_89 = store.account(renewal_date=_days(89), status="churned")
    admin = store.contact(in_90, "admin")
    store.contact(in_90, "user")

    default_window = playbook_yaml("{date: renewal_date, offset: -90d}")
    assert matching(db, default_window, NOW) == {in_90, in_87, in_89}
    assert matching(db, playbook_yaml("{date: renewal_date, offset: -90d, window: 2d}"), NOW) == {in_90, in_89}
    assert matching(db, playbook_yaml("{date: renewal_date, offset: -90d, window: 4d}"), NOW) == {
        in_90,
        in_87,
        in_89,
    }
    assert in_83 in matching(db, playbook_yaml("{date: renewal_date, offset: -90d, window: 8d}"), NOW)
    assert matching(db, playbook_yaml("{date: renewal_date, offset: -91d, window: 1d}"), NOW) == {in_91}
    assert matching(db, playbook_yaml("{date: renewal_date, offset: -90d}", segment="{status: active}"), NOW) == {
        in_90,
        in_87,
    }
    assert matching(db, default_window, NOW.replace(hour=23, minute=59)) == {in_90, in_87, in_89}  # by day
    contact_pb = playbook_yaml(
        "{date: account.renewal_date, offset: -90d, window: 1d}", subject="contact", segment="{role: admin}"
    )
    assert matching(db, contact_pb, NOW) == {admin}

    renewal = compiled(playbook_yaml("{date: renewal_date, offset: -90d}", segment="{status: active}"))
    assert run(db, renewal, NOW) == [(in_90, _days(90).isoformat()), (in_87, _days(87).isoformat())]
    assert run(db, renewal, NOW) == []
    assert run(db, renewal, NOW + timedelta(days=1)) == [(in_91, _days(91).isoformat())]
    complete_all(db)
    assert run(db, renewal, NOW + timedelta(days=2)) == []  # the same renewal date is the same occurrence
    assert run(db, compiled(contact_pb), NOW) == [(admin, _days(90).isoformat())]

    # Next year's renewal date is a new occurrence: it enrolls again (once the first journey ended).
    next_renewal = (NOW + YEAR).date() + timedelta(days=90)
    with db.begin() as conn:
        conn.execute(update(accounts).where(accounts.c.id == in_90).values(renewal_date=next_renewal))
    assert run(db, renewal, NOW + YEAR) == [(in_90, next_renewal.isoformat())]


def test_anniversary(db: Engine) -> None:
    store = Store(db, NOW)
    two_years = store.account(contract_start=date(2024, 11, 23))
    one_year = store.account(contract_start=date(2025, 11, 23))
    today = store.account(contract_start=TODAY)
    year_and_day = store.account(contract_start=date(2025, 11, 22))
    tomorrow = store.account(contract_start=date(2025, 11, 24))
    this_year = store.account(contract_start=date(2026, 11, 20))  # three days ago: not a year yet
    year_and_week = store.account(contract_start=date(2025, 11, 16))  # 7 days late: outside 7d

    one_day = compiled(playbook_yaml("{date: contract_start, every_year: true, window: 1d}"))
    assert matching(db, playbook_yaml("{date: contract_start, every_year: true, window: 1d}"), NOW) == {
        two_years,
        one_year,
    }
    assert matching(db, playbook_yaml("{date: contract_start, every_year: true}"), NOW) == {
        two_years,
        one_year,
        year_and_day,
    }
    assert matching(db, playbook_yaml("{date: contract_start, every_year: true, offset: -1d, window: 1d}"), NOW) == {
        tomorrow
    }
    assert this_year not in matching(db, playbook_yaml("{date: contract_start, every_year: true, window: 7d}"), NOW)
    assert year_and_week not in matching(db, playbook_yaml("{date: contract_start, every_year: true}"), NOW)

    assert run(db, one_day, NOW) == [(two_years, "2026"), (one_year, "2026")]
    assert run(db, one_day, NOW + timedelta(hours=12)) == []
    complete_all(db)
    assert run(db, one_day, NOW + timedelta(hours=12)) == []  # same year: same occurrence
    next_year = NOW + YEAR  # 2027-11-23
    assert run(db, one_day, next_year) == [(two_years, "2027"), (one_year, "2027"), (today, "2027")]


def test_anniversary_of_a_leap_day(db: Engine) -> None:
    store = Store(db, NOW)
    leap = store.account(contract_start=date(2024, 2, 29))
    pb = compiled(playbook_yaml("{date: contract_start, every_year: true}"))
    fired = [run(db, pb, datetime(2027, 2, 25, 9, 0) + timedelta(days=d)) for d in range(10)]
    assert [row for rows in fired for row in rows] == [(leap, "2027")]


def test_event_trigger_occurrences(db: Engine) -> None:
    store = Store(db, NOW)
    detractor = store.account()
    add_events(db, NOW, detractor, "nps_response", [0.5, 1, 1.5], properties={"score": 3})
    add_events(db, NOW, detractor, "nps_response", [0.2], properties={"score": 9})  # not a detractor
    stale = store.account()
    add_events(db, NOW, stale, "nps_response", [2], properties={"score": 1})  # exactly `within` ago: too old
    early = store.account()
    add_events(db, NOW, early, "nps_response", [-0.1], properties={"score": 1})  # after now
    trigger = "{event: {name: nps_response, where: {score: {lte: 6}}, within: 2d}}"

    concurrent = compiled(playbook_yaml(trigger, entry="{allow_concurrent: true}", pid="nps-concurrent"))
    first = run(db, concurrent, NOW)
    assert [subject for subject, _ in first] == [detractor] * 3  # one enrollment per event
    assert len({key for _, key in first}) == 3
    assert run(db, concurrent, NOW) == []

    single = compiled(playbook_yaml(trigger, pid="nps-single"))
    entered = run(db, single, NOW)
    assert [subject for subject, _ in entered] == [detractor]
    assert entered[0][1] in {key for _, key in first}
    assert run(db, single, NOW) == []
    add_events(db, NOW, detractor, "nps_response", [-0.05], properties={"score": 2})
    assert run(db, single, NOW + timedelta(hours=2)) == []  # still in the journey
    assert [s for s, _ in run(db, concurrent, NOW + timedelta(hours=2))] == [detractor]  # the new event
    assert [s for s, _ in run(db, concurrent, NOW + timedelta(hours=3))] == [early]  # now it is in the past


def test_event_trigger_keeps_the_earliest_event(db: Engine) -> None:
    store = Store(db, NOW)
    account = store.account()
    with db.begin() as conn:
        conn.execute(
            insert(events),
            [
                {"id": 9, "account_id": account, "name": "signup", "occurred_at": NOW - timedelta(days=1)},
                {"id": 10, "account_id": account, "name": "signup", "occurred_at": NOW - timedelta(hours=1)},
            ],
        )
    assert run(db, compiled(playbook_yaml("{event: {name: signup}}")), NOW) == [(account, "9")]


def _spike(db: Engine, account: int, at: datetime) -> None:
    add_events(db, at, account, "support_ticket_opened", [0.1, 0.2])


def test_became_true_edges(db: Engine) -> None:
    store = Store(db, NOW)
    spiky = store.account()
    calm = store.account()
    _spike(db, spiky, NOW)
    add_events(db, NOW, calm, "support_ticket_opened", [1])
    pb = compiled(playbook_yaml("{became_true: {events: {name: support_ticket_opened, at_least: 2, within: 7d}}}"))
    t0, t1, t2, t3 = NOW, NOW + timedelta(days=1), NOW + timedelta(days=7), NOW + timedelta(days=10)

    assert run(db, pb, t0) == [(spiky, t0.isoformat(timespec="minutes"))]
    assert condition_states(db) == {spiky: (True, t0)}
    assert run(db, pb, t1) == []  # still true: no edge
    assert condition_states(db) == {spiky: (True, t0)}
    assert run(db, pb, t2) == []  # false now
    assert condition_states(db) == {spiky: (False, t2)}
    complete_all(db)
    _spike(db, spiky, t3)
    add_events(db, t3, calm, "support_ticket_opened", [-0.01, -0.02])  # a spike just after t3
    assert run(db, pb, t3) == [(spiky, t3.isoformat(timespec="minutes"))]  # true again: enters again
    assert condition_states(db) == {spiky: (True, t3)}
    t4 = t3 + timedelta(hours=2)
    assert run(db, pb, t4) == [(calm, t4.isoformat(timespec="minutes"))]
    assert condition_states(db) == {spiky: (True, t3), calm: (True, t4)}


def test_became_true_cooldown(db: Engine) -> None:
    store = Store(db, NOW)
    spiky = store.account()
    _spike(db, spiky, NOW)
    pb = compiled(
        playbook_yaml("{became_true: {events: {name: support_ticket_opened, at_least: 2, within: 7d}}, cooldown: 30d}")
    )
    assert [s for s, _ in run(db, pb, NOW)] == [spiky]
    assert run(db, pb, NOW + timedelta(days=7)) == []  # false
    complete_all(db)
    t3 = NOW + timedelta(days=10)
    _spike(db, spiky, t3)
    assert run(db, pb, t3) == []  # true again, but within the cooldown
    assert condition_states(db) == {spiky: (True, t3)}
    assert run(db, pb, NOW + timedelta(days=20)) == []  # false again
    t5 = NOW + timedelta(days=31)
    _spike(db, spiky, t5)
    assert [s for s, _ in run(db, pb, t5)] == [spiky]  # a new edge after the cooldown enters


def test_became_true_cooldown_reentry_waits(db: Engine) -> None:
    store = Store(db, NOW)
    spiky = store.account()
    _spike(db, spiky, NOW)
    pb = compiled(
        playbook_yaml("{became_true: {events: {name: support_ticket_opened, at_least: 2, within: 7d}}, cooldown: 30d}")
    )
    assert [s for s, _ in run(db, pb, NOW)] == [spiky]
    assert run(db, pb, NOW + timedelta(days=7)) == []  # false again
    complete_all(db)
    for day in range(10, 32):  # true again from day 10 on, every day
        _spike(db, spiky, NOW + timedelta(days=day))
    assert run(db, pb, NOW + timedelta(days=10)) == []  # within the cooldown: waits
    assert [s for s, _ in run(db, pb, NOW + timedelta(days=31))] == [spiky]  # cooldown over, still true


def test_schedule_trigger(db: Engine) -> None:
    monday = datetime(2026, 11, 23, 0, 0)  # Monday 09:00 in Seoul
    store = Store(db, monday)
    tech = store.account(tier="tech_touch")
    store.account(tier="high_touch")
    text = playbook_yaml("{schedule: {cron: '0 9 * * MON', timezone: Asia/Seoul}}", segment="{tier: tech_touch}")
    key = "2026-11-23T00:00:00"

    assert matching(db, text, monday) == {tech}  # at the scheduled time
    assert matching(db, text, monday - timedelta(minutes=1)) == set()  # last week's is more than 1d ago
    assert matching(db, text, monday + timedelta(hours=23, minutes=59)) == {tech}
    assert matching(db, text, monday + timedelta(days=1)) == set()  # exactly `window` late: too late
    two_hours = "{schedule: {cron: '0 9 * * MON', timezone: Asia/Seoul, window: 2h}}"
    assert matching(db, playbook_yaml(two_hours), monday + timedelta(hours=1, minutes=59)) == {tech, tech + 1}
    assert matching(db, playbook_yaml(two_hours), monday + timedelta(hours=2, minutes=1)) == set()
    utc = playbook_yaml("{schedule: {cron: '0 9 * * MON'}}")
    assert matching(db, utc, monday + timedelta(minutes=30)) == set()  # 09:00 UTC is later
    assert matching(db, utc, monday + timedelta(hours=9)) == {tech, tech + 1}

    pb = compiled(text)
    assert run(db, pb, monday + timedelta(minutes=30)) == [(tech, key)]
    assert run(db, pb, monday + timedelta(hours=1)) == []
    complete_all(db)
    assert run(db, pb, monday + timedelta(hours=2)) == []  # the same scheduled time: once
    assert run(db, pb, monday + timedelta(days=3)) == []
    assert run(db, pb, monday + timedelta(days=7, minutes=10)) == [(tech, "2026-11-30T00:00:00")]
