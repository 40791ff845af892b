"""Event conditions — windows, no_events, per-tier thresholds, first/last, trends, active share.

Windows are (now - within, now]: an event exactly `within` ago is outside, one at `now` inside,
one after `now` never counts.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine

from tests.factories import Store
from tests.language.helpers import add_events, who

NOW = datetime(2026, 11, 23, 9, 0)
MINUTE = timedelta(minutes=1)


def test_event_window_counts(db: Engine) -> None:
    store = Store(db, NOW)
    three = store.account()
    add_events(db, NOW, three, "login", [1, 3, 6.9])
    two_and_edge = store.account()
    add_events(db, NOW, two_and_edge, "login", [1, 3, 7])  # exactly 7 days ago: outside
    two_and_future = store.account()
    add_events(db, NOW, two_and_future, "login", [1, 3, -MINUTE])  # after now: does not count
    at_now = store.account()
    add_events(db, NOW, at_now, "login", [0, timedelta(days=7) - MINUTE, 2])  # now and just inside
    four = store.account()
    add_events(db, NOW, four, "login", [0.5, 1, 2, 3])
    add_events(db, NOW, four, "logout", [1, 2, 3])  # other names do not count
    none = store.account()
    add_events(db, NOW, none, "logout", [1, 2, 3])

    assert who(db, "{events: {name: login, within: 7d, at_least: 3}}", NOW) == {three, at_now, four}
    assert who(db, "{events: {name: login, within: 7d}}", NOW) == {three, two_and_edge, two_and_future, at_now, four}
    assert who(db, "{events: {name: login, within: 7d, at_most: 2}}", NOW) == {two_and_edge, two_and_future, none}
    assert who(db, "{events: {name: login, within: 7d, at_most: 0}}", NOW) == {none}  # zero events match at_most
    assert who(db, "{events: {name: login, within: 7d, at_least: 3, at_most: 3}}", NOW) == {three, at_now}
    assert who(db, "{events: {name: login, within: 7d, at_least: 2, at_most: 3}}", NOW) == {
        three,
        two_and_edge,
        two_and_future,
        at_now,
    }
    assert who(db, "{events: {name: login, within: 8d, at_least: 3}}", NOW) == {three, two_and_edge, at_now, four}
    assert who(db, "{events: {name: login, within: 7d, at_least: 0}}", NOW) == {
        three,
        two_and_edge,
        two_and_future,
        at_now,
        four,
        none,
    }


def test_event_where_on_properties(db: Engine) -> None:
    store = Store(db, NOW)
    six = store.account()
    add_events(db, NOW, six, "nps_response", [1], properties={"score": 6})
    seven = store.account()
    add_events(db, NOW, seven, "nps_response", [1], properties={"score": 7})
    no_score = store.account()
    add_events(db, NOW, no_score, "nps_response", [1], properties={"comment": "meh"})
    old_six = store.account()
    add_events(db, NOW, old_six, "nps_response", [31], properties={"score": 2})
    two_low = store.account()
    add_events(db, NOW, two_low, "nps_response", [1, 2], properties={"score": 0, "channel": "email"})
    add_events(db, NOW, two_low, "nps_response", [3], properties={"score": 10, "channel": "email"})

    detractors = "{events: {name: nps_response, where: {score: {lte: 6}}, within: 30d}}"
    assert who(db, detractors, NOW) == {six, two_low}
    assert who(db, "{events: {name: nps_response, where: {score: {gte: 7}}, within: 30d}}", NOW) == {seven, two_low}
    assert who(db, "{events: {name: nps_response, where: {score: 7}, within: 30d}}", NOW) == {seven}
    assert who(db, "{events: {name: nps_response, where: {score: {lte: 6}}, within: 30d, at_least: 2}}", NOW) == {
        two_low
    }
    assert who(db, "{events: {name: nps_response, where: {channel: email, score: {lt: 5}}, within: 30d}}", NOW) == {
        two_low
    }
    assert who(db, "{no_events: {name: nps_response, where: {score: {lte: 6}}, within: 30d}}", NOW) == {
        seven,
        no_score,
        old_six,
    }


def test_per_contact_and_contact_subjects(db: Engine) -> None:
    store = Store(db, NOW)
    one_person = store.account()
    busy = store.contact(one_person, "admin")
    idle = store.contact(one_person, "user")
    add_events(db, NOW, one_person, "login", [1, 2, 3], contact_id=busy)
    spread = store.account()
    people = [store.contact(spread, "user") for _ in range(3)]
    for person in people:
        add_events(db, NOW, spread, "login", [1], contact_id=person)
    other = store.account()
    loner = store.contact(other, "admin")
    add_events(db, NOW, other, "login", [1, 2], contact_id=loner)

    assert who(db, "{events: {name: login, within: 7d, at_least: 3}}", NOW) == {one_person, spread}
    assert who(db, "{events: {name: login, within: 7d, at_least: 3, per: contact}}", NOW) == {one_person}
    assert who(db, "{events: {name: login, within: 7d, at_least: 2, per: contact}}", NOW) == {one_person, other}
    assert who(db, "{events: {name: login, within: 7d, per: contact}}", NOW) == {one_person, spread, other}

    def contacts(condition: str) -> set[int]:
        return who(db, condition, NOW, subject="contact")

    # Contact subjects count their own events; per: account counts the whole account's.
    assert contacts("{events: {name: login, within: 7d, at_least: 3}}") == {busy}
    assert contacts("{events: {name: login, within: 7d}}") == {busy, *people, loner}
    assert contacts("{events: {name: login, within: 7d, at_least: 3, per: account}}") == {busy, idle, *people}
    assert contacts("{no_events: {name: login, within: 7d}}") == {idle}
    assert contacts("{no_events: {name: login, within: 7d, per: account}}") == set()
    assert contacts("{events: {name: login, within: 7d, at_most: 1}}") == {idle, *people}


def test_per_contact_ignores_events_without_a_contact(db: Engine) -> None:
    store = Store(db, NOW)
    account_level = store.account()
    add_events(db, NOW, account_level, "login", [1, 2, 3])  # no contact
    assert who(db, "{events: {name: login, within: 7d, at_least: 1, per: contact}}", NOW) == set()
    assert who(db, "{events: {name: login, within: 7d, at_least: 3, per: contact}}", NOW) == set()


def test_no_events_previously_active(db: Engine) -> None:
    store = Store(db, NOW)
    lapsed = store.account()
    add_events(db, NOW, lapsed, "login", [70, 90])
    recent = store.account()
    add_events(db, NOW, recent, "login", [3, 70])
    never = store.account()
    long_gone = store.account()
    add_events(db, NOW, long_gone, "login", [200])
    edge_60 = store.account()
    add_events(db, NOW, edge_60, "login", [60])  # exactly 60 days ago: outside 60d, inside 180d
    edge_180 = store.account()
    add_events(db, NOW, edge_180, "login", [180])  # exactly 180 days ago: outside 180d
    future = store.account()
    add_events(db, NOW, future, "login", [-1, 70])  # a login after now does not count as recent
    just_inside = store.account()
    add_events(db, NOW, just_inside, "login", [timedelta(days=60) - MINUTE])

    assert who(db, "{no_events: {name: login, within: 60d}}", NOW) == {
        lapsed,
        never,
        long_gone,
        edge_60,
        edge_180,
        future,
    }
    previously_active = "{all: [{no_events: {name: login, within: 60d}}, {events: {name: login, within: 180d}}]}"
    assert who(db, previously_active, NOW) == {lapsed, edge_60, future}
    # A minute earlier the 60-days-ago login was still recent, and the 180-days-ago one inside 180d.
    assert who(db, previously_active, NOW - MINUTE) == {lapsed, edge_180, future}
    assert who(db, previously_active, NOW + MINUTE) == {lapsed, edge_60, future, just_inside}


def test_per_tier_thresholds(db: Engine) -> None:
    store = Store(db, NOW)
    by: dict[tuple[str, int], int] = {}
    for tier, n in [
        ("high_touch", 10),
        ("high_touch", 9),
        ("high_touch", 5),
        ("low_touch", 10),
        ("low_touch", 20),
        ("low_touch", 19),
        ("tech_touch", 30),
        ("tech_touch", 5),
        ("tech_touch", 4),
        ("strategic", 5),
    ]:
        by[tier, n] = store.account(tier=tier)
        add_events(db, NOW, by[tier, n], "support_ticket_opened", [0.5 + i for i in range(n)])

    tiered = "{events: {name: support_ticket_opened, within: 30d, at_least: {high_touch: 10, low_touch: 20}}}"
    assert who(db, tiered, NOW) == {by["high_touch", 10], by["low_touch", 20]}
    with_other = (
        "{events: {name: support_ticket_opened, within: 30d, at_least: {high_touch: 10, low_touch: 20, other: 5}}}"
    )
    assert who(db, with_other, NOW) == {
        by["high_touch", 10],
        by["low_touch", 20],
        by["tech_touch", 30],
        by["tech_touch", 5],
        by["strategic", 5],
    }
    only_other = "{events: {name: support_ticket_opened, within: 30d, at_least: {other: 10}}}"
    assert who(db, only_other, NOW) == {
        by["high_touch", 10],
        by["low_touch", 10],
        by["low_touch", 19],
        by["low_touch", 20],
        by["tech_touch", 30],
    }
    # Per-tier for contact subjects reads the account's tier.
    person = store.contact(by["high_touch", 10], "admin")
    assert who(db, tiered.replace("within: 30d", "within: 30d, per: account"), NOW, subject="contact") == {person}


def test_first_and_last_event(db: Engine) -> None:
    store = Store(db, NOW)
    new_user = store.account()
    add_events(db, NOW, new_user, "login", [10, 1])
    old_user = store.account()
    add_events(db, NOW, old_user, "login", [20, 10])
    brand_new = store.account()
    add_events(db, NOW, brand_new, "login", [3])
    never = store.account()
    edge = store.account()
    add_events(db, NOW, edge, "login", [14])  # exactly 14 days: not more recent than 14d
    future_first = store.account()
    add_events(db, NOW, future_first, "login", [-1, 10])

    first = "{first_event: {name: login, more_recent_than: 14d, older_than: 7d}}"
    assert who(db, first, NOW) == {new_user, future_first}
    assert who(db, "{first_event: {name: login, older_than: 14d}}", NOW) == {old_user}
    assert who(db, "{first_event: {name: login, more_recent_than: 5d}}", NOW) == {brand_new}
    assert who(db, "{last_event: {name: login, older_than: 3d}}", NOW) == {old_user, edge, future_first}
    assert who(db, "{last_event: {name: login, more_recent_than: 3d}}", NOW) == {new_user}
    assert who(db, "{last_event: {name: login, older_than: 9d, more_recent_than: 15d}}", NOW) == {
        old_user,
        edge,
        future_first,
    }
    # brand_new's only login is exactly 3 days old: not more recent than 3d. never has none at all.
    assert who(db, "{not: {last_event: {name: login, more_recent_than: 3d}}}", NOW) == {
        old_user,
        brand_new,
        never,
        edge,
        future_first,
    }


def test_trend(db: Engine) -> None:
    store = Store(db, NOW)

    def usage(previous: list[float], current: list[float]) -> int:
        account = store.account()
        add_events(db, NOW, account, "feature_used", previous + current)
        return account

    def spread(n: int, start: float) -> list[float]:
        return [start + i * (29 / max(n, 1)) for i in range(n)]

    dropped = usage(spread(20, 30.5), spread(15, 0.5))  # 20 → 15: exactly -25 %
    held = usage(spread(20, 30.5), spread(16, 0.5))  # 20 → 16: -20 %
    tiny = usage(spread(4, 30.5), [])  # 4 → 0: below min_base 5
    base = usage(spread(4, 31) + [30], [])  # exactly 30 days ago is the previous window: 5 → 0
    past = usage(spread(4, 31) + [60], [])  # exactly 60 days ago is outside both: 4 → 0
    grew = usage(spread(10, 30.5), spread(15, 0.5))  # 10 → 15: +50 %
    grew_less = usage(spread(10, 30.5), spread(14, 0.5))  # 10 → 14: +40 %
    from_zero = usage([], spread(20, 0.5))  # 0 → 20: no base
    nine = usage(spread(9, 30.5), [])  # 9 → 0: below the default min_base 10

    drop = "{trend: {name: feature_used, window: 30d, drop_at_least: 25, min_base: 5}}"
    assert who(db, drop, NOW) == {dropped, base, nine}  # not held, tiny (4 < min_base), past
    assert who(db, "{trend: {name: feature_used, window: 30d, drop_at_least: 25}}", NOW) == {dropped}  # min_base 10
    assert who(db, "{trend: {name: feature_used, window: 30d, drop_at_least: 100, min_base: 5}}", NOW) == {
        base,
        nine,
    }
    assert who(db, "{trend: {name: feature_used, window: 30d, drop_at_least: 25, min_base: 4}}", NOW) == {
        dropped,
        tiny,
        base,
        past,
        nine,
    }
    assert held not in who(db, "{trend: {name: feature_used, window: 30d, drop_at_least: 21}}", NOW)
    assert held in who(db, "{trend: {name: feature_used, window: 30d, drop_at_least: 20}}", NOW)
    assert who(db, "{trend: {name: feature_used, window: 30d, rise_at_least: 50, min_base: 5}}", NOW) == {grew}
    assert who(db, "{trend: {name: feature_used, window: 30d, rise_at_least: 40}}", NOW) == {grew, grew_less}
    assert from_zero not in who(db, "{trend: {name: feature_used, window: 30d, rise_at_least: 1, min_base: 1}}", NOW)
    assert nine not in who(db, "{trend: {name: feature_used, window: 30d, drop_at_least: 1}}", NOW)


def test_active_share(db: Engine) -> None:
    store = Store(db, NOW)

    def team(size: int, active: int, seats: int = 10) -> int:
        account = store.account(seats_purchased=seats)
        for i in range(size):
            person = store.contact(account, "user")
            if i < active:
                add_events(db, NOW, account, "login", [1, 2], contact_id=person)  # twice: counted once
            else:
                add_events(db, NOW, account, "login", [31], contact_id=person)  # outside 30 days
        return account

    four_of_five = team(5, 4)
    three_of_five = team(5, 3)
    none_of_five = team(5, 0)
    one_of_five = team(5, 1)
    nobody = store.account()  # no contacts: no share
    add_events(db, NOW, nobody, "login", [1, 2, 3])  # account-level events have no contact
    eight_seats = team(8, 8, seats=10)
    seven_seats = team(8, 7, seats=10)
    no_seats = team(2, 2, seats=0)

    contacts_80 = "{active_share: {name: login, within: 30d, at_least: 80}}"
    assert who(db, contacts_80, NOW) == {four_of_five, eight_seats, seven_seats, no_seats}  # 7 of 8 contacts
    assert who(db, "{active_share: {name: login, within: 30d, at_most: 20}}", NOW) == {none_of_five, one_of_five}
    assert who(db, "{active_share: {name: login, within: 30d, at_least: 60, at_most: 60}}", NOW) == {three_of_five}
    assert who(db, "{active_share: {name: login, within: 30d, of: seats, at_least: 80}}", NOW) == {eight_seats}
    assert who(db, "{active_share: {name: login, within: 30d, of: seats, at_most: 0}}", NOW) == {
        none_of_five,
        nobody,
    }
    assert who(db, "{active_share: {name: login, within: 30d, of: seats, at_least: 70, at_most: 79}}", NOW) == {
        seven_seats
    }
