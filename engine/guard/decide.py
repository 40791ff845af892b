"""The guardrails' decisions, pure: is a source stale at `now`, does a tick's enrollment trip the
circuit breaker, and the words the audit and the tick summary say it with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.guard.sources import shown
from engine.spec.base import format_duration
from engine.spec.playbook import Limits


@dataclass(frozen=True)
class Stale:
    """A source whose newest data is older than its limit at `now`."""

    source: str
    last_data_at: datetime
    age: timedelta
    limit: timedelta

    def describe(self) -> str:
        """`login: newest data 2026-11-10 09:00 (13d old); limit 48h`."""
        return (
            f"{shown(self.source)}: newest data {self.last_data_at.isoformat(sep=' ', timespec='minutes')}"
            f" ({age_text(self.age)} old); limit {format_duration(self.limit)}"
        )


def stale_sources(
    limits: Mapping[str, timedelta], last_data: Mapping[str, datetime | None], now: datetime
) -> list[Stale]:
    """The sources in `limits` whose newest data (at or before `now`) is older than their limit.

    A source that never received any data is not judged: a store that is new, or a playbook
    waiting for an event no one has sent yet, is not a feed that stopped (`touchflow status`
    shows it as `never`)."""
    found = []
    for source in sorted(limits):
        last = last_data.get(source)
        if last is not None and now - last > limits[source]:
            found.append(Stale(source, last, now - last, limits[source]))
    return found


def describe_stale(stale: list[Stale]) -> str:
    """One line for the audit and the summary: every stale source with its age and limit."""
    return "stale data: " + "; ".join(s.describe() for s in stale)


@dataclass(frozen=True)
class Trip:
    """What a tick would have enrolled when it tripped the circuit breaker."""

    would_enroll: int
    segment: int
    limits: Limits

    @property
    def share(self) -> float:
        """The share of the segment, in percent (100 when the segment is empty)."""
        return 100.0 if self.segment <= 0 else 100.0 * self.would_enroll / self.segment

    def describe(self, subject: str) -> str:
        """`would enroll 48,211 accounts, 96 % of the segment (50,000); limit 10 % and 500`."""
        noun = subject if self.would_enroll == 1 else f"{subject}s"
        return (
            f"would enroll {self.would_enroll:,} {noun}, {self.share:.0f} % of the segment ({self.segment:,});"
            f" limit {self.limits.max_share:g} % and {self.limits.max_enrollments:,}"
        )

    def as_detail(self) -> dict[str, float | int]:
        """The numbers, for the hold row."""
        return {
            "would_enroll": self.would_enroll,
            "segment": self.segment,
            "share": round(self.share, 2),
            "max_share": self.limits.max_share,
            "max_enrollments": self.limits.max_enrollments,
        }


def exceeds_count(would_enroll: int, limits: Limits) -> bool:
    """The cheap half of the test, before the segment is counted."""
    return would_enroll > limits.max_enrollments


def trips(would_enroll: int, segment: int, limits: Limits) -> Trip | None:
    """A `Trip` when enrolling `would_enroll` of a segment of `segment` exceeds both limits.

    Both, so that neither a small playbook on a small segment (a few subjects are a large share)
    nor a routine day of a large one (many subjects, a small share) is stopped."""
    trip = Trip(would_enroll, segment, limits)
    if exceeds_count(would_enroll, limits) and trip.share > limits.max_share:
        return trip
    return None


def age_text(age: timedelta) -> str:
    """An age in the largest whole unit that fits: `13d`, `5h`, `12m`."""
    seconds = int(age.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"
