"""The simulated period: its ticks, ISO weeks, the step between ticks, and percentiles."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from engine.spec.base import format_duration, parse_duration

MIN_STEP = timedelta(hours=1)
"""The shortest time between two simulated ticks."""


class SimulationError(ValueError):
    """Options that make no simulation; the message is one line, naming the option."""


def parse_step(value: str) -> timedelta:
    """'1d', '12h', '2w' → timedelta; at least MIN_STEP. Raises SimulationError."""
    try:
        step = parse_duration(value, signed=False)
    except ValueError as exc:
        raise SimulationError(f"--step: {exc}") from None
    check_step(step)
    return step


def check_step(step: timedelta) -> None:
    """Raise SimulationError unless `step` is at least MIN_STEP."""
    if step < MIN_STEP:
        raise SimulationError(f"--step must be at least {format_duration(MIN_STEP)}, got {format_duration(step)}")


def tick_times(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """`start`, `start + step`, … up to and including `end`."""
    check_step(step)
    if end < start:
        raise SimulationError(f"--to ({end.isoformat(sep=' ')}) is before --from ({start.isoformat(sep=' ')})")
    count = (end - start) // step + 1
    return [start + i * step for i in range(count)]


def iso_week(at: datetime) -> str:
    """The ISO week of `at`, e.g. '2026-W48' (weeks start on Monday)."""
    year, week, _ = at.isocalendar()
    return f"{year}-W{week:02d}"


def week_bounds(times: Sequence[datetime]) -> dict[str, tuple[datetime, datetime]]:
    """ISO week → (its Monday 00:00, the next Monday), for the weeks `times` fall in, in order."""
    out: dict[str, tuple[datetime, datetime]] = {}
    for at in times:
        monday = datetime.combine((at - timedelta(days=at.weekday())).date(), datetime.min.time())
        out.setdefault(iso_week(at), (monday, monday + timedelta(days=7)))
    return out


def nearest_rank(histogram: Sequence[tuple[int, int]], percent: int) -> int:
    """The nearest-rank percentile of values given as (value, how many) pairs; 0 when empty."""
    ordered = sorted(histogram)
    total = sum(n for _, n in ordered)
    if total == 0:
        return 0
    rank = max(1, -(-percent * total // 100))  # ceil(percent/100 · total), in integers
    seen = 0
    for value, n in ordered:
        seen += n
        if seen >= rank:
            return value
    return ordered[-1][0]  # pragma: no cover - rank <= total
