"""When a wait ends: pure functions of `now`, a time zone and the step's spec."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.spec.steps import WEEKDAYS, LocalWindow


def known_zone(name: str | None) -> bool:
    """Whether `name` is a time zone this machine knows."""
    try:
        ZoneInfo(name or "")
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def zone(name: str | None) -> ZoneInfo:
    """The named zone, or UTC when it is missing or unknown (bad data must not stop a journey)."""
    return ZoneInfo(name) if name and known_zone(name) else ZoneInfo("UTC")


def next_in_window(now: datetime, tz: ZoneInfo, window: LocalWindow) -> datetime:
    """The first moment at or after `now` (naive UTC) inside `window` in `tz`, as naive UTC."""
    local = now.replace(tzinfo=UTC).astimezone(tz)
    start, end = time.fromisoformat(window.start), time.fromisoformat(window.end)
    for ahead in range(8):
        day: date = local.date() + timedelta(days=ahead)
        if WEEKDAYS[day.weekday()] not in window.days:
            continue
        opens = datetime.combine(day, start, tzinfo=tz)
        closes = datetime.combine(day, end, tzinfo=tz)
        if ahead == 0 and opens <= local < closes:
            return now
        if local < opens:
            return opens.astimezone(UTC).replace(tzinfo=None)
    raise ValueError(f"window {window} is never open")  # unreachable: days is non-empty


def at_date(value: date | datetime | None, offset: timedelta) -> datetime | None:
    """A date field plus an offset, as naive UTC (dates are taken at 00:00 UTC)."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.combine(value, time())
    return moment + offset
