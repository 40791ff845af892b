"""The calendar: quiet hours, business days and holidays in the recipient's zone, across DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.audit import Reason
from engine.policy.calendar import SEARCH_DAYS, Calendar

WEEKDAYS = frozenset(range(5))
EVENINGS = Calendar(quiet_start=time(20), quiet_end=time(8))
OFFICE = Calendar(quiet_start=time(20), quiet_end=time(8), business_days=WEEKDAYS)

# Zones with the awkward transitions: 1 h DST at 02:00 / 01:00 UTC, 30-min DST (Lord Howe),
# 45-min offsets (Chatham), DST starting at local midnight (Havana, Santiago) and Santiago's
# fall-back from 00:00 to 23:00 of the previous day, plus a few without DST.
ZONES = [
    "Asia/Seoul",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "America/Havana",
    "America/Santiago",
    "Pacific/Chatham",
    "Asia/Kolkata",
    "UTC",
]
# Days on which one of those zones changes its offset (2026–2027).
TRANSITIONS = [
    date(2026, 3, 8),  # New York, Havana
    date(2026, 3, 29),  # London
    date(2026, 4, 5),  # Lord Howe, Santiago, Chatham
    date(2026, 9, 6),  # Santiago
    date(2026, 9, 27),  # Chatham
    date(2026, 10, 4),  # Lord Howe
    date(2026, 10, 25),  # London
    date(2026, 11, 1),  # New York, Havana
    date(2027, 3, 14),  # New York, Havana
    date(2027, 3, 28),  # London
    date(2027, 4, 4),  # Lord Howe, Santiago, Chatham
    date(2027, 10, 31),  # London
    date(2027, 11, 7),  # New York, Havana
]


def utc(text: str) -> datetime:
    """A naive-UTC instant from ISO text."""
    return datetime.fromisoformat(text)


def test_reasons_are_audit_reasons() -> None:
    reasons = {Reason.DEFERRED_HOLIDAY, Reason.DEFERRED_BUSINESS_DAY, Reason.DEFERRED_QUIET_HOURS}
    calendar = Calendar(time(20), time(8), WEEKDAYS, frozenset({date(2026, 12, 25)}))
    seen = {
        calendar.blocked(utc(at), "Asia/Seoul") for at in ("2026-12-25T03:00", "2026-11-28T03:00", "2026-11-23T13:00")
    }
    assert seen == {r.value for r in reasons}


# --- examples -------------------------------------------------------------------------------


def test_quiet_hours_in_seoul() -> None:
    # 13:14 UTC is 22:14 in Seoul (UTC+9): quiet until 08:00 there, 23:00 UTC.
    at = utc("2026-11-23T13:14")
    assert EVENINGS.blocked(at, "Asia/Seoul") == "deferred_quiet_hours"
    assert EVENINGS.next_allowed(at, "Asia/Seoul") == utc("2026-11-23T23:00")
    # The same instant is 13:14 in UTC: allowed.
    assert EVENINGS.blocked(at, "UTC") is None
    assert EVENINGS.next_allowed(at, "UTC") == at


def test_wrapping_quiet_hours_both_sides_of_midnight() -> None:
    assert EVENINGS.blocked(utc("2026-06-10T19:59:59"), "UTC") is None
    assert EVENINGS.blocked(utc("2026-06-10T20:00"), "UTC") == "deferred_quiet_hours"
    assert EVENINGS.blocked(utc("2026-06-10T23:59"), "UTC") == "deferred_quiet_hours"
    assert EVENINGS.blocked(utc("2026-06-11T00:00"), "UTC") == "deferred_quiet_hours"
    assert EVENINGS.blocked(utc("2026-06-11T07:59:59.999999"), "UTC") == "deferred_quiet_hours"
    assert EVENINGS.blocked(utc("2026-06-11T08:00"), "UTC") is None
    assert EVENINGS.next_allowed(utc("2026-06-10T21:00"), "UTC") == utc("2026-06-11T08:00")
    assert EVENINGS.next_allowed(utc("2026-06-11T03:00"), "UTC") == utc("2026-06-11T08:00")


def test_non_wrapping_quiet_hours() -> None:
    lunch = Calendar(quiet_start=time(12), quiet_end=time(13, 30))
    assert lunch.blocked(utc("2026-06-10T11:59"), "UTC") is None
    assert lunch.blocked(utc("2026-06-10T12:00"), "UTC") == "deferred_quiet_hours"
    assert lunch.blocked(utc("2026-06-10T13:30"), "UTC") is None
    assert lunch.next_allowed(utc("2026-06-10T12:45"), "UTC") == utc("2026-06-10T13:30")
    # Evenings are fine when the quiet period does not wrap.
    assert lunch.blocked(utc("2026-06-10T23:00"), "UTC") is None


def test_weekends() -> None:
    weekdays = Calendar(business_days=WEEKDAYS)
    saturday = utc("2026-11-28T10:00")
    assert weekdays.blocked(saturday, "UTC") == "deferred_business_day"
    assert weekdays.next_allowed(saturday, "UTC") == utc("2026-11-30T00:00")
    # Saturday 02:00 UTC is still Friday 21:00 in New York.
    assert weekdays.blocked(utc("2026-11-28T02:00"), "America/New_York") is None
    # Monday 01:00 UTC is Monday 10:00 in Seoul but Sunday 20:00 in New York.
    monday = utc("2026-11-30T01:00")
    assert weekdays.blocked(monday, "Asia/Seoul") is None
    assert weekdays.blocked(monday, "America/New_York") == "deferred_business_day"
    assert weekdays.next_allowed(monday, "America/New_York") == utc("2026-11-30T05:00")


def test_holidays_are_local_dates() -> None:
    christmas = Calendar(holidays=frozenset({date(2026, 12, 25)}))
    # 16:00 UTC on the 24th is already the 25th in Seoul, still the 24th in London.
    assert christmas.blocked(utc("2026-12-24T16:00"), "Asia/Seoul") == "deferred_holiday"
    assert christmas.blocked(utc("2026-12-24T16:00"), "Europe/London") is None
    assert christmas.next_allowed(utc("2026-12-24T16:00"), "Asia/Seoul") == utc("2026-12-25T15:00")


def test_reasons_are_checked_holiday_then_business_day_then_quiet_hours() -> None:
    calendar = Calendar(time(20), time(8), WEEKDAYS, frozenset({date(2026, 12, 26), date(2026, 12, 24)}))
    assert calendar.blocked(utc("2026-12-26T22:00"), "UTC") == "deferred_holiday"  # a Saturday night
    assert calendar.blocked(utc("2026-12-27T22:00"), "UTC") == "deferred_business_day"  # Sunday night
    assert calendar.blocked(utc("2026-12-24T22:00"), "UTC") == "deferred_holiday"  # a weekday night
    assert calendar.blocked(utc("2026-12-23T22:00"), "UTC") == "deferred_quiet_hours"


def test_friday_evening_waits_for_monday_morning() -> None:
    # Friday 2026-11-27 21:00 in Seoul.
    at = utc("2026-11-27T12:00")
    assert OFFICE.blocked(at, "Asia/Seoul") == "deferred_quiet_hours"
    assert OFFICE.next_allowed(at, "Asia/Seoul") == utc("2026-11-29T23:00")  # Monday 08:00 KST
    # A Monday holiday pushes it to Tuesday.
    office = Calendar(time(20), time(8), WEEKDAYS, frozenset({date(2026, 11, 30)}))
    assert office.next_allowed(at, "Asia/Seoul") == utc("2026-11-30T23:00")


def test_long_holiday_runs_and_the_search_bound() -> None:
    start = date(2026, 1, 1)
    fortnight = Calendar(holidays=frozenset(start + timedelta(days=n) for n in range(14)))
    assert fortnight.next_allowed(utc("2026-01-01T09:00"), "UTC") == utc("2026-01-15T00:00")
    forever = Calendar(holidays=frozenset(start + timedelta(days=n) for n in range(SEARCH_DAYS + 2)))
    with pytest.raises(ValueError, match="no moment"):
        forever.next_allowed(utc("2026-01-01T09:00"), "UTC")
    with pytest.raises(ValueError, match="no moment"):
        Calendar(business_days=frozenset()).next_allowed(utc("2026-01-01T09:00"), "Asia/Seoul")


def test_invalid_calendars() -> None:
    with pytest.raises(ValueError):
        Calendar(quiet_start=time(8), quiet_end=time(8))
    with pytest.raises(ValueError):
        Calendar(quiet_start=time(8))
    with pytest.raises(ValueError):
        Calendar(business_days=frozenset({7}))


# --- daylight saving ------------------------------------------------------------------------


def test_new_york_spring_forward() -> None:
    # 2026-03-08 02:00 EST (07:00 UTC) becomes 03:00 EDT. Saturday 23:00 EST = 04:00 UTC.
    assert EVENINGS.next_allowed(utc("2026-03-08T04:00"), "America/New_York") == utc("2026-03-08T12:00")  # 08:00 EDT


def test_new_york_fall_back() -> None:
    # 2026-11-01 02:00 EDT (06:00 UTC) becomes 01:00 EST. Saturday 23:00 EDT = 03:00 UTC.
    assert EVENINGS.next_allowed(utc("2026-11-01T03:00"), "America/New_York") == utc("2026-11-01T13:00")  # 08:00 EST
    # 01:00–01:30 happens twice: quiet, allowed, quiet again, allowed.
    small_hours = Calendar(quiet_start=time(1), quiet_end=time(1, 30))
    tz = "America/New_York"
    assert small_hours.next_allowed(utc("2026-11-01T05:10"), tz) == utc("2026-11-01T05:30")  # 01:30 EDT
    assert small_hours.blocked(utc("2026-11-01T05:45"), tz) is None  # 01:45 EDT
    assert small_hours.blocked(utc("2026-11-01T06:00"), tz) == "deferred_quiet_hours"  # 01:00 EST
    assert small_hours.next_allowed(utc("2026-11-01T05:45"), tz) == utc("2026-11-01T05:45")
    assert small_hours.next_allowed(utc("2026-11-01T06:05"), tz) == utc("2026-11-01T06:30")  # 01:30 EST


def test_quiet_end_inside_the_spring_forward_gap() -> None:
    # Quiet 22:00–02:30, but on 2026-03-08 New York jumps from 02:00 to 03:00: 02:30 never
    # happens, and the earliest allowed instant is the jump itself (07:00 UTC, 03:00 EDT).
    late = Calendar(quiet_start=time(22), quiet_end=time(2, 30))
    tz = "America/New_York"
    at = utc("2026-03-08T03:00")  # Saturday 22:00 EST
    assert late.blocked(at, tz) == "deferred_quiet_hours"
    assert late.next_allowed(at, tz) == utc("2026-03-08T07:00")
    assert late.blocked(utc("2026-03-08T06:59:59.999999"), tz) == "deferred_quiet_hours"  # 01:59:59 EST
    # The next night the end exists again: 02:30 EDT.
    assert late.next_allowed(utc("2026-03-09T03:00"), tz) == utc("2026-03-09T06:30")


def test_london() -> None:
    tz = "Europe/London"
    # 2026-03-29 01:00 GMT becomes 02:00 BST (at 01:00 UTC).
    night = Calendar(quiet_start=time(23), quiet_end=time(7))
    assert night.next_allowed(utc("2026-03-28T23:30"), tz) == utc("2026-03-29T06:00")  # 07:00 BST
    gap = Calendar(quiet_start=time(0, 30), quiet_end=time(1, 30))  # 01:30 does not exist that night
    assert gap.next_allowed(utc("2026-03-29T00:40"), tz) == utc("2026-03-29T01:00")  # 02:00 BST
    # 2026-10-25 02:00 BST becomes 01:00 GMT (at 01:00 UTC).
    assert night.next_allowed(utc("2026-10-24T22:30"), tz) == utc("2026-10-25T07:00")  # 07:00 GMT
    twice = Calendar(quiet_start=time(1), quiet_end=time(1, 30))
    assert twice.next_allowed(utc("2026-10-25T00:10"), tz) == utc("2026-10-25T00:30")  # 01:30 BST
    assert twice.next_allowed(utc("2026-10-25T00:45"), tz) == utc("2026-10-25T00:45")  # 01:45 BST
    assert twice.next_allowed(utc("2026-10-25T01:00"), tz) == utc("2026-10-25T01:30")  # 01:00 GMT → 01:30 GMT


def test_lord_howe_half_hour_dst() -> None:
    tz = "Australia/Lord_Howe"  # +10:30 standard, +11:00 in summer
    # 2026-04-05 02:00 +11 (15:00 UTC on the 4th) becomes 01:30 +10:30.
    assert EVENINGS.next_allowed(utc("2026-04-04T10:00"), tz) == utc("2026-04-04T21:30")  # 08:00 +10:30
    # 2026-10-04 02:00 +10:30 (15:30 UTC on the 3rd) becomes 02:30 +11: 02:15 never happens.
    inside = Calendar(quiet_start=time(22), quiet_end=time(2, 15))
    assert inside.next_allowed(utc("2026-10-03T12:00"), tz) == utc("2026-10-03T15:30")
    after = Calendar(quiet_start=time(22), quiet_end=time(2, 45))
    assert after.next_allowed(utc("2026-10-03T12:00"), tz) == utc("2026-10-03T15:45")  # 02:45 +11


def test_midnight_that_does_not_exist() -> None:
    # Havana springs forward at local midnight: 2026-03-08 starts at 01:00 CDT (05:00 UTC).
    saturday_off = Calendar(holidays=frozenset({date(2026, 3, 7)}))
    assert saturday_off.next_allowed(utc("2026-03-07T20:00"), "America/Havana") == utc("2026-03-08T05:00")


def test_midnight_that_happens_twice() -> None:
    # Santiago falls back at 2026-04-05 00:00 -03 (03:00 UTC) to 2026-04-04 23:00 -04: the
    # Saturday gets an extra hour, so a Saturday holiday lasts until 00:00 -04 (04:00 UTC).
    tz = "America/Santiago"
    saturday_off = Calendar(holidays=frozenset({date(2026, 4, 4)}))
    assert saturday_off.blocked(utc("2026-04-05T03:30"), tz) == "deferred_holiday"
    assert saturday_off.next_allowed(utc("2026-04-05T02:00"), tz) == utc("2026-04-05T04:00")
    # A Sunday holiday: the hour after the jump is Saturday again, so allowed.
    sunday_off = Calendar(holidays=frozenset({date(2026, 4, 5)}))
    assert sunday_off.blocked(utc("2026-04-05T03:30"), tz) is None
    assert sunday_off.next_allowed(utc("2026-04-05T04:00"), tz) == utc("2026-04-06T04:00")


# --- the property ---------------------------------------------------------------------------

quarter_hours = st.integers(0, 24 * 4 - 1).map(lambda q: time(q // 4, q % 4 * 15))


@st.composite
def instants(draw: st.DrawFn) -> datetime:
    """Instants in 2026–2027, half of them within two days of a DST transition."""
    if draw(st.booleans()):
        base = datetime.combine(draw(st.sampled_from(TRANSITIONS)), time()) - timedelta(days=2)
        return base + timedelta(seconds=draw(st.integers(0, 4 * 24 * 3600)))
    return datetime(2026, 1, 1) + timedelta(seconds=draw(st.integers(0, 2 * 365 * 24 * 3600)))


@st.composite
def calendars(draw: st.DrawFn, near: date, min_days: int = 1) -> Calendar:
    """A random calendar with at least `min_days` business days; its holidays fall within a few weeks of `near`."""
    quiet = draw(st.none() | st.tuples(quarter_hours, quarter_hours).filter(lambda q: q[0] != q[1]))
    days = draw(st.frozensets(st.integers(0, 6), min_size=min_days))
    holidays = draw(st.frozensets(st.integers(-2, 30).map(lambda n: near + timedelta(days=n)), max_size=8))
    start, end = quiet if quiet else (None, None)
    return Calendar(start, end, days, holidays)


@st.composite
def questions(draw: st.DrawFn) -> tuple[datetime, str, Calendar]:
    """An instant, a zone and a calendar to ask about."""
    at = draw(instants())
    return at, draw(st.sampled_from(ZONES)), draw(calendars(at.date()))


@settings(max_examples=400, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(questions(), st.lists(st.floats(0, 1, exclude_max=True), min_size=5, max_size=5))
def test_next_allowed_is_the_earliest_allowed_moment(
    question: tuple[datetime, str, Calendar], probes: list[float]
) -> None:
    at, tz, calendar = question
    found = calendar.next_allowed(at, tz)
    assert found >= at
    assert calendar.blocked(found, tz) is None
    assert calendar.next_allowed(found, tz) == found
    if found == at:
        return
    # Nothing earlier was allowed: not the moment just before, nor a minute before, nor any of
    # a few minutes sampled in between.
    assert calendar.blocked(at, tz) is not None
    assert calendar.blocked(found - timedelta(microseconds=1), tz) is not None
    if found - timedelta(minutes=1) >= at:
        assert calendar.blocked(found - timedelta(minutes=1), tz) is not None
    minutes = int((found - at).total_seconds() // 60)
    for probe in probes:
        assert calendar.blocked(at + timedelta(minutes=int(probe * minutes)), tz) is not None


minutes_of_day = st.integers(0, 24 * 60 - 1)


@settings(max_examples=500, derandomize=True, deadline=None)
@given(
    minutes_of_day, minutes_of_day, st.sampled_from(["start", "end", "anywhere"]), st.integers(-1, 1), minutes_of_day
)
def test_quiet_hours_bounds(start: int, end: int, near: str, nudge: int, anywhere: int) -> None:
    """Quiet hours hold from `start` (included) to `end` (excluded), wrapping or not."""
    if start == end:
        return
    clock = ({"start": start, "end": end}.get(near, anywhere) + nudge) % (24 * 60)
    calendar = Calendar(time(start // 60, start % 60), time(end // 60, end % 60))
    length = (end - start) % (24 * 60)
    assert calendar.in_quiet_hours(time(clock // 60, clock % 60)) == ((clock - start) % (24 * 60) < length)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(questions(), st.sampled_from(["anywhere", "quiet_start", "quiet_end"]), st.integers(-1, 1))
def test_blocked_agrees_with_minute_arithmetic(question: tuple[datetime, str, Calendar], snap: str, nudge: int) -> None:
    """`blocked` against a separately written check, at whole minutes, often right at a bound."""
    at, tz, calendar = question
    zone = ZoneInfo(tz)
    bound = getattr(calendar, snap, None)
    if bound is not None:
        # The bound's wall time on that local date (if it does not exist, a nearby real instant).
        wall = datetime.combine(zone.fromutc(at.replace(tzinfo=zone)).date(), bound, tzinfo=zone)
        at = wall.astimezone(UTC).replace(tzinfo=None) + timedelta(minutes=nudge)
    at = at.replace(second=0, microsecond=0)
    local = zone.fromutc(at.replace(tzinfo=zone)).replace(tzinfo=None)
    expected = None
    if calendar.quiet_start is not None and calendar.quiet_end is not None:
        start = calendar.quiet_start.hour * 60 + calendar.quiet_start.minute
        length = (calendar.quiet_end.hour * 60 + calendar.quiet_end.minute - start) % (24 * 60)
        if (local.hour * 60 + local.minute - start) % (24 * 60) < length:
            expected = "deferred_quiet_hours"
    if local.isoweekday() - 1 not in calendar.business_days:
        expected = "deferred_business_day"
    if local.date() in calendar.holidays:
        expected = "deferred_holiday"
    assert calendar.blocked(at, tz) == expected


@settings(max_examples=200, derandomize=True, deadline=None)
@given(questions())
def test_next_allowed_agrees_with_a_minute_by_minute_walk(question: tuple[datetime, str, Calendar]) -> None:
    """Around DST transitions, walk the minutes (the slow, obviously right way) for a few days."""
    at, tz, calendar = question
    at = at.replace(second=0, microsecond=0)
    found = calendar.next_allowed(at, tz)
    if found - at > timedelta(days=3):
        return  # too long to walk; the property above covers it
    walk = at
    while calendar.blocked(walk, tz) is not None:
        walk += timedelta(minutes=1)
    # Transitions and quiet-hour ends fall on whole minutes in every zone used here.
    assert walk == found
