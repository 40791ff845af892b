"""The sending policy as a pure function: which of the messages due now may go out, and if not, why
and when to try again.

`decide(candidates, history, now)` returns one `Verdict` per candidate. No database and no clock:
everything it needs is in the arguments, so a dispatcher, a simulation and a test all get the same
answer. All datetimes are naive UTC.

Semantics
---------
* Order. Candidates are considered in the order (-priority, due, playbook_id, key): higher priority
  first, then the one that came due earliest. The result lists the verdicts in that order, so it
  does not depend on the order of `candidates`. Send keys must be unique (ValueError otherwise).
* Calendar first. If `now` is blocked by the candidate's calendar in its time zone (holiday, then
  business day, then quiet hours) the candidate is deferred with that reason until
  `calendar.next_allowed(now, tz)`. Its caps are not looked at: they are judged when it is allowed.
* Caps. A cap counts the sends with `at > now - window` (a rolling window; sends dated in the future
  count too, to be safe) to the same contact (scope "contact"; a candidate without a contact is not
  subject to contact caps) or to the same account (scope "account", whichever contact), and only
  the cap's playbook's sends when it names one. The sends are `history` plus those approved earlier
  in this same call (at `now`). A cap with count >= limit is violated.
  - Any violated cap with limit 0 ("never"): the candidate is skipped (reason: the first such cap;
    deferring it would only postpone the same answer).
  - Otherwise it is deferred until every violated cap has room again: for each, with `t` the sorted
    send times in its window, `t[count - limit] + window` (then the count is limit - 1), the latest
    of those, pushed forward to the calendar's next allowed moment.
  - Reason "lower_priority" when the candidate lost to higher-priority messages in this call: every
    violated cap would have had room without the sends approved in this call for candidates of
    strictly higher priority. Otherwise the reason is the first violated cap (in the candidate's
    `caps` order) that is full even without them. Sends approved for equal-priority candidates
    (earlier due) count like history: a tie-break is not a priority.
* Otherwise the candidate is sent (reason "sent") and counts against every later candidate of the
  call as a send at `now`.

Reasons are `engine.audit.Reason` values (kept as plain strings so this module needs only the
standard library).
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from engine.policy.calendar import HOLIDAY, NOT_BUSINESS_DAY, QUIET_HOURS, Calendar, to_local

Period = Literal["day", "week", "month"]
"""Rolling windows of 24 hours, 7 days and 30 days."""
Scope = Literal["contact", "account"]
Action = Literal["send", "defer", "skip"]

SENT = "sent"
LOWER_PRIORITY = "lower_priority"

WINDOWS: dict[str, timedelta] = {"day": timedelta(hours=24), "week": timedelta(days=7), "month": timedelta(days=30)}
_ADJECTIVES = {"day": "daily", "week": "weekly", "month": "monthly"}
_SPANS = {"day": "24 hours", "week": "7 days", "month": "30 days"}
_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Cap:
    """At most `limit` emails in any rolling `period` to one contact or one account.

    `limit` 0 means never. With `playbook_id` only that playbook's emails count (and the cap is
    meant for that playbook's messages); without, every playbook's do.
    """

    scope: Scope
    period: Period
    limit: int
    playbook_id: str | None = None

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise ValueError(f"cap limit must be >= 0, got {self.limit}")
        if self.period not in WINDOWS:
            raise ValueError(f"cap period must be day, week or month, got {self.period!r}")
        if self.scope not in ("contact", "account"):
            raise ValueError(f"cap scope must be contact or account, got {self.scope!r}")

    @property
    def window(self) -> timedelta:
        """The rolling window's length: 24 hours, 7 days or 30 days."""
        return WINDOWS[self.period]

    @property
    def reason(self) -> str:
        """The audit reason when this cap holds a message back, e.g. "capped_playbook_contact_daily"."""
        playbook = "playbook_" if self.playbook_id is not None else ""
        return f"capped_{playbook}{self.scope}_{_ADJECTIVES[self.period]}"


@dataclass(frozen=True)
class Candidate:
    """A message due to go out, with everything the policy needs to judge it."""

    key: str
    """The message's send key; unique within one call."""
    playbook_id: str
    priority: int
    """Higher wins when caps let only some through."""
    account_id: int
    contact_id: int | None
    timezone: str
    """IANA zone, already resolved (contact → account → project)."""
    caps: tuple[Cap, ...]
    """Every cap that applies to this message."""
    calendar: Calendar
    due: datetime
    """When it came due; the earlier wins a priority tie."""


@dataclass(frozen=True)
class PastSend:
    """An email already sent (or claimed for sending), as the caps count it."""

    at: datetime
    playbook_id: str
    account_id: int
    contact_id: int | None


@dataclass(frozen=True)
class Verdict:
    """What to do with one candidate, and why."""

    key: str
    action: Action
    reason: str
    """An `engine.audit.Reason` value: "sent", a calendar deferral, a cap's reason or "lower_priority"."""
    detail: str
    """The numbers behind the reason, for a human reading the audit trail."""
    until: datetime | None
    """For a deferral, when to try again (naive UTC, after `now`, allowed by the calendar)."""


def order_key(candidate: Candidate) -> tuple[int, datetime, str, str]:
    """The order in which `decide` considers candidates (and lists its verdicts)."""
    return (-candidate.priority, candidate.due, candidate.playbook_id, candidate.key)


@dataclass
class _Send:
    at: datetime
    playbook_id: str
    priority: int | None  # None: from history; else approved in this call for this priority


@dataclass
class _Sends:
    """Sends per contact and per account, each list sorted by time."""

    by_contact: dict[int, list[_Send]] = field(default_factory=dict)
    by_account: dict[int, list[_Send]] = field(default_factory=dict)

    @classmethod
    def of(cls, history: Sequence[PastSend]) -> _Sends:
        """The history grouped and sorted (once: it may be long, the in-call additions are few)."""
        sends = cls()
        for past in history:
            send = _Send(past.at, past.playbook_id, None)
            sends.by_account.setdefault(past.account_id, []).append(send)
            if past.contact_id is not None:
                sends.by_contact.setdefault(past.contact_id, []).append(send)
        for pool in (*sends.by_account.values(), *sends.by_contact.values()):
            pool.sort(key=lambda s: s.at)
        return sends

    def add(self, account_id: int, contact_id: int | None, send: _Send) -> None:
        """Count one more send, keeping the lists sorted."""
        insort(self.by_account.setdefault(account_id, []), send, key=lambda s: s.at)
        if contact_id is not None:
            insort(self.by_contact.setdefault(contact_id, []), send, key=lambda s: s.at)


@dataclass
class _Count:
    cap: Cap
    subject: int
    times: list[datetime]  # sorted send times inside the window
    winners: list[str]  # playbooks approved in this call for strictly higher priority, in the window

    @property
    def full(self) -> bool:
        return len(self.times) >= self.cap.limit

    @property
    def contested(self) -> bool:
        """Full only because of higher-priority messages approved in this call."""
        return self.full and len(self.times) - len(self.winners) < self.cap.limit

    @property
    def room_at(self) -> datetime:
        """When the oldest sends have left the window and the count is below the limit again."""
        return self.times[len(self.times) - self.cap.limit] + self.cap.window


def decide(candidates: Sequence[Candidate], history: Sequence[PastSend], now: datetime) -> list[Verdict]:
    """One verdict per candidate, in the order of `order_key`; see the module docstring."""
    ordered = sorted(candidates, key=order_key)
    keys = [c.key for c in ordered]
    if len(set(keys)) != len(keys):
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"send keys must be unique within a call: {dupes}")

    sends = _Sends.of(history)

    verdicts = []
    for candidate in ordered:
        verdict = _judge(candidate, sends, now)
        if verdict.action == "send":
            sends.add(candidate.account_id, candidate.contact_id, _Send(now, candidate.playbook_id, candidate.priority))
        verdicts.append(verdict)
    return verdicts


def _judge(candidate: Candidate, sends: _Sends, now: datetime) -> Verdict:
    calendar, tz = candidate.calendar, candidate.timezone
    blocked = calendar.blocked(now, tz)
    if blocked is not None:
        until = calendar.next_allowed(now, tz)
        detail = f"{_why_blocked(calendar, blocked, now, tz)}; next allowed {_local(until, tz)}"
        return Verdict(candidate.key, "defer", blocked, detail, until)

    counts = [count for cap in candidate.caps if (count := _count(cap, candidate, sends, now)) is not None]
    full = [count for count in counts if count.full]
    if not full:
        detail = "; ".join(_describe(count) for count in counts) or "no caps apply"
        return Verdict(candidate.key, "send", SENT, detail, None)

    never = [count for count in full if count.cap.limit == 0]
    if never:
        return Verdict(candidate.key, "skip", never[0].cap.reason, _describe(never[0]), None)

    # Wait for the last cap to make room; the calendar may push that further.
    until = calendar.next_allowed(max(count.room_at for count in full), tz)
    numbers = "; ".join(_describe(count) for count in full)
    if all(count.contested for count in full):
        winners = sorted({playbook for count in full for playbook in count.winners})
        playbooks = f"playbook{'' if len(winners) == 1 else 's'} {', '.join(winners)}"
        detail = f"lower priority than {playbooks} in this run: {numbers}"
        return Verdict(candidate.key, "defer", LOWER_PRIORITY, f"{detail}; next allowed {_local(until, tz)}", until)
    first = next(count for count in full if not count.contested)
    return Verdict(candidate.key, "defer", first.cap.reason, f"{numbers}; next allowed {_local(until, tz)}", until)


def _count(cap: Cap, candidate: Candidate, sends: _Sends, now: datetime) -> _Count | None:
    """The sends `cap` counts for `candidate` at `now`, or None when the cap does not apply."""
    if cap.scope == "contact":
        if candidate.contact_id is None:
            return None  # an account-level message has no contact to cap
        subject, pool = candidate.contact_id, sends.by_contact.get(candidate.contact_id, [])
    else:
        subject, pool = candidate.account_id, sends.by_account.get(candidate.account_id, [])
    since = now - cap.window
    counted = [s for s in pool if s.at > since and (cap.playbook_id is None or s.playbook_id == cap.playbook_id)]
    winners = [s.playbook_id for s in counted if s.priority is not None and s.priority > candidate.priority]
    return _Count(cap, subject, [s.at for s in counted], winners)


def _describe(count: _Count) -> str:
    cap = count.cap
    n = len(count.times)
    source = f" from playbook {cap.playbook_id}" if cap.playbook_id is not None else ""
    return (
        f"{n} email{'' if n == 1 else 's'}{source} to {cap.scope} {count.subject} "
        f"in the last {_SPANS[cap.period]}, cap {cap.limit}"
    )


def _why_blocked(calendar: Calendar, reason: str, now: datetime, tz: str) -> str:
    local = to_local(now, tz)
    if reason == HOLIDAY:
        return f"{local:%Y-%m-%d} is a holiday in {tz}"
    if reason == NOT_BUSINESS_DAY:
        return f"{_WEEKDAY_NAMES[local.weekday()]} {local:%Y-%m-%d} is not a business day in {tz}"
    assert reason == QUIET_HOURS and calendar.quiet_start is not None and calendar.quiet_end is not None
    return f"{local:%H:%M} {tz} is within quiet hours {calendar.quiet_start:%H:%M}–{calendar.quiet_end:%H:%M}"


def _local(at: datetime, tz: str) -> str:
    """`at` as local wall-clock time; with the UTC offset when that wall time happens twice."""
    local = to_local(at, tz)
    text = f"{local:%Y-%m-%d %H:%M} {tz}"
    twin = local.replace(fold=1 - local.fold)
    offset = local.utcoffset()
    if offset is not None and twin.utcoffset() != offset:
        # A fall-back day: say which of the two.
        minutes = int(offset.total_seconds()) // 60
        sign = "+" if minutes >= 0 else "-"
        text += f" (UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d})"
    return text
