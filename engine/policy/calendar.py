"""When a recipient may be emailed: quiet hours, business days and holidays in their own time zone.

Every instant in and out is a naive datetime in UTC (the store's convention); the calendar itself
is written in the recipient's local wall-clock time, so each question converts the instant into
the zone first. Local time is not a continuous function of UTC: on a spring-forward day some wall
times never happen, on a fall-back day some happen twice, and a few zones even jump across local
midnight. `next_allowed` therefore never builds a local wall time and converts it back; it walks
forward through UTC, one stretch of constant UTC offset at a time, so the answer is always a real
instant and always the earliest one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

HOLIDAY = "deferred_holiday"
NOT_BUSINESS_DAY = "deferred_business_day"
QUIET_HOURS = "deferred_quiet_hours"

SEARCH_DAYS = 400
"""How far `next_allowed` looks before giving up: more than a year, so any yearly holiday list fits."""

_ONE_DAY = timedelta(days=1)
_RESOLUTION = timedelta(microseconds=1)


def to_local(at: datetime, tz: str) -> datetime:
    """The wall-clock time in `tz` at the naive-UTC instant `at`, as an aware datetime."""
    return at.replace(tzinfo=UTC).astimezone(ZoneInfo(tz))


@dataclass(frozen=True)
class Calendar:
    """The local hours, weekdays and dates on which email may go out.

    `quiet_start`/`quiet_end` bound the quiet period `[start, end)` in local time; an end earlier
    than the start means the period wraps past midnight (20:00–08:00). Both unset means no quiet
    hours. `business_days` uses `date.weekday()` numbering (0 = Monday … 6 = Sunday); `holidays`
    are local dates.
    """

    quiet_start: time | None = None
    quiet_end: time | None = None
    business_days: frozenset[int] = frozenset(range(7))
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise ValueError("quiet hours need both a start and an end (or neither)")
        if self.quiet_start is not None and self.quiet_start == self.quiet_end:
            # The spec rejects this too: an empty period and a 24-hour one would be spelt the same.
            raise ValueError(f"quiet hours start and end are both {self.quiet_start}")
        for bound in (self.quiet_start, self.quiet_end):
            if bound is not None and bound.tzinfo is not None:
                raise ValueError("quiet hours are local wall-clock times: give them without a tzinfo")
        if not self.business_days <= frozenset(range(7)):
            raise ValueError(f"business days must be 0 (Monday) … 6 (Sunday), got {sorted(self.business_days)}")

    def blocked(self, at: datetime, tz: str) -> str | None:
        """Why `at` (naive UTC) is not a moment to email someone in `tz`, or None when it is.

        Returns a `Reason` value: "deferred_holiday" (the local date is a holiday),
        "deferred_business_day" (the local weekday is not a business day) or
        "deferred_quiet_hours", checked in that order.
        """
        return self._blocked_local(to_local(at, tz).replace(tzinfo=None))

    def in_quiet_hours(self, clock: time) -> bool:
        """Whether the local time of day `clock` falls within the quiet hours."""
        start, end = self.quiet_start, self.quiet_end
        if start is None or end is None:
            return False
        if start < end:
            return start <= clock < end
        return clock >= start or clock < end  # wraps past midnight

    def next_allowed(self, at: datetime, tz: str) -> datetime:
        """The earliest moment >= `at` (naive UTC) that is not blocked, as naive UTC.

        Raises ValueError when nothing is allowed within `SEARCH_DAYS` days (no business days,
        or holidays covering every business day of that stretch).
        """
        zone = ZoneInfo(tz)
        give_up = at + timedelta(days=SEARCH_DAYS)
        cur = at
        while cur <= give_up:
            local = _wall(cur, zone)
            reason = self._blocked_local(local)
            if reason is None:
                return cur
            # Where the block could lift were the UTC offset to stay as it is: a whole blocked day
            # lasts until the next local midnight, quiet hours until their end.
            target = self._quiet_end_after(local) if reason == QUIET_HOURS else _midnight_after(local)
            nxt = cur + (target - local)
            offset = local - cur
            if _wall(nxt, zone) - nxt != offset:
                # The offset changes on the way, so the wall clock jumps (possibly past `target`,
                # possibly back before it): stop at the jump and look again from there.
                nxt = _offset_change(cur, nxt, zone, offset)
            cur = nxt
        raise ValueError(f"no moment within {SEARCH_DAYS} days of {at:%Y-%m-%d %H:%M} UTC is allowed in {tz}")

    def _blocked_local(self, local: datetime) -> str | None:
        if local.date() in self.holidays:
            return HOLIDAY
        if local.weekday() not in self.business_days:
            return NOT_BUSINESS_DAY
        if self.in_quiet_hours(local.time()):
            return QUIET_HOURS
        return None

    def _quiet_end_after(self, local: datetime) -> datetime:
        # Only called while `local` is inside the quiet hours, so both bounds are set.
        assert self.quiet_start is not None and self.quiet_end is not None
        end_today = datetime.combine(local.date(), self.quiet_end)
        # In the evening part of a wrapping period the end is tomorrow morning.
        return end_today if local < end_today else end_today + _ONE_DAY


def _wall(at: datetime, zone: ZoneInfo) -> datetime:
    """Naive local wall-clock time at naive-UTC `at`."""
    return at.replace(tzinfo=UTC).astimezone(zone).replace(tzinfo=None)


def _midnight_after(local: datetime) -> datetime:
    return datetime.combine(local.date() + _ONE_DAY, time())


def _offset_change(lo: datetime, hi: datetime, zone: ZoneInfo, offset: timedelta) -> datetime:
    """The first instant in (lo, hi] whose UTC offset is not `offset`, given that `hi`'s is not.

    zoneinfo has no public list of transitions, so bisect; transitions sit on whole seconds, and
    bisecting to the microsecond lands exactly on one in about 40 steps.
    """
    while hi - lo > _RESOLUTION:
        mid = lo + (hi - lo) / 2
        if _wall(mid, zone) - mid == offset:
            lo = mid
        else:
            hi = mid
    return hi
