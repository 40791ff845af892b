"""`decide`: calendars, caps and priorities, by example and by simulating weeks of sending."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.audit import Reason
from engine.policy import Calendar, Candidate, Cap, PastSend, Verdict, decide, order_key
from tests.policy.test_calendar import ZONES, calendars

NOW = datetime(2026, 11, 24, 5, 0)  # Tuesday; 14:00 in Seoul
EVENINGS = Calendar(quiet_start=time(20), quiet_end=time(8))
DAY, HOUR = timedelta(days=1), timedelta(hours=1)


def utc(text: str) -> datetime:
    """A naive-UTC instant from ISO text."""
    return datetime.fromisoformat(text)


def cand(
    key: str = "m1",
    *,
    playbook: str = "onboarding",
    priority: int = 0,
    account: int = 7,
    contact: int | None = 42,
    tz: str = "UTC",
    caps: tuple[Cap, ...] = (),
    calendar: Calendar = Calendar(),
    due: datetime = NOW - HOUR,
) -> Candidate:
    """A candidate with dull defaults."""
    return Candidate(key, playbook, priority, account, contact, tz, caps, calendar, due)


def sent(at: datetime, *, playbook: str = "onboarding", account: int = 7, contact: int | None = 42) -> PastSend:
    """A past send with dull defaults."""
    return PastSend(at, playbook, account, contact)


def only(verdicts: list[Verdict]) -> Verdict:
    """The one verdict of a one-candidate call."""
    assert len(verdicts) == 1
    return verdicts[0]


# --- reason codes ---------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["contact", "account"])
@pytest.mark.parametrize("period", ["day", "week", "month"])
@pytest.mark.parametrize("playbook", [None, "nps"])
def test_every_cap_reason_is_an_audit_reason(scope: str, period: str, playbook: str | None) -> None:
    cap = Cap(scope, period, 1, playbook)  # type: ignore[arg-type]
    adjective = {"day": "daily", "week": "weekly", "month": "monthly"}[period]
    assert cap.reason == f"capped_{'playbook_' if playbook else ''}{scope}_{adjective}"
    assert cap.reason in {r.value for r in Reason}
    assert cap.window == {"day": DAY, "week": 7 * DAY, "month": 30 * DAY}[period]


def test_sent_and_lower_priority_are_audit_reasons() -> None:
    assert Reason.CLEARED_BY_POLICY.value == "sent"
    assert Reason.LOWER_PRIORITY.value == "lower_priority"


def test_negative_limits_are_rejected() -> None:
    with pytest.raises(ValueError):
        Cap("contact", "day", -1)


# --- examples -------------------------------------------------------------------------------


def test_sent() -> None:
    verdict = only(decide([cand(caps=(Cap("contact", "day", 2),))], [sent(NOW - 2 * HOUR)], NOW))
    assert verdict == Verdict("m1", "send", "sent", "1 email to contact 42 in the last 24 hours, cap 2", None)
    assert only(decide([cand()], [], NOW)).detail == "no caps apply"


def test_deferred_quiet_hours() -> None:
    now = utc("2026-11-23T13:14")  # 22:14 in Seoul
    verdict = only(decide([cand(tz="Asia/Seoul", calendar=EVENINGS)], [], now))
    assert verdict == Verdict(
        "m1",
        "defer",
        "deferred_quiet_hours",
        "22:14 Asia/Seoul is within quiet hours 20:00–08:00; next allowed 2026-11-24 08:00 Asia/Seoul",
        utc("2026-11-23T23:00"),
    )


def test_deferred_holiday() -> None:
    calendar = replace(EVENINGS, holidays=frozenset({date(2026, 12, 25)}))
    verdict = only(decide([cand(tz="Asia/Seoul", calendar=calendar)], [], utc("2026-12-25T03:00")))
    assert (verdict.action, verdict.reason, verdict.until) == ("defer", "deferred_holiday", utc("2026-12-25T23:00"))
    assert verdict.detail == "2026-12-25 is a holiday in Asia/Seoul; next allowed 2026-12-26 08:00 Asia/Seoul"


def test_deferred_business_day() -> None:
    calendar = replace(EVENINGS, business_days=frozenset(range(5)))
    verdict = only(decide([cand(tz="Asia/Seoul", calendar=calendar)], [], utc("2026-11-28T03:00")))
    assert (verdict.action, verdict.reason, verdict.until) == (
        "defer",
        "deferred_business_day",
        utc("2026-11-29T23:00"),
    )
    assert verdict.detail == (
        "Saturday 2026-11-28 is not a business day in Asia/Seoul; next allowed 2026-11-30 08:00 Asia/Seoul"
    )


def test_capped_contact_weekly() -> None:
    history = [sent(NOW - 6 * DAY), sent(NOW - 3 * DAY, playbook="nps"), sent(NOW - HOUR)]
    verdict = only(decide([cand(caps=(Cap("contact", "week", 3),))], history, NOW))
    # The oldest of the three leaves the window 7 days after it was sent.
    assert verdict == Verdict(
        "m1",
        "defer",
        "capped_contact_weekly",
        "3 emails to contact 42 in the last 7 days, cap 3; next allowed 2026-11-25 05:00 UTC",
        NOW + DAY,
    )


def test_over_the_cap_waits_until_below_it() -> None:
    # Four sends against a cap of 3 (the cap was lowered): the two oldest must leave the window.
    history = [sent(NOW - n * DAY) for n in (6, 5, 2, 1)]
    verdict = only(decide([cand(caps=(Cap("contact", "week", 3),))], history, NOW))
    assert verdict.until == NOW + 2 * DAY
    assert verdict.detail.startswith("4 emails to contact 42 in the last 7 days, cap 3")


def test_capped_account_daily_counts_every_contact_of_the_account() -> None:
    history = [sent(NOW - 5 * HOUR, contact=1), sent(NOW - 2 * HOUR, contact=None), sent(NOW - HOUR, account=8)]
    verdict = only(decide([cand(caps=(Cap("account", "day", 2),))], history, NOW))
    assert (verdict.action, verdict.reason, verdict.until) == ("defer", "capped_account_daily", NOW + 19 * HOUR)
    assert verdict.detail.startswith("2 emails to account 7 in the last 24 hours, cap 2")


def test_capped_playbook_caps_count_only_their_playbook() -> None:
    cap = Cap("contact", "month", 2, "onboarding")
    history = [sent(NOW - 20 * DAY), sent(NOW - 10 * DAY, playbook="nps"), sent(NOW - DAY)]
    verdict = only(decide([cand(caps=(cap,))], history, NOW))
    assert (verdict.reason, verdict.until) == ("capped_playbook_contact_monthly", NOW + 10 * DAY)
    assert verdict.detail.startswith("2 emails from playbook onboarding to contact 42 in the last 30 days, cap 2")
    # Without the second onboarding email there is room.
    assert only(decide([cand(caps=(cap,))], history[:2], NOW)).action == "send"


def test_cap_zero_skips() -> None:
    caps = (Cap("contact", "day", 5), Cap("account", "week", 0, "nps"))
    verdict = only(decide([cand(playbook="nps", caps=caps)], [], NOW))
    assert verdict == Verdict(
        "m1",
        "skip",
        "capped_playbook_account_weekly",
        "0 emails from playbook nps to account 7 in the last 7 days, cap 0",
        None,
    )


def test_calendar_is_checked_before_caps() -> None:
    verdict = only(decide([cand(calendar=EVENINGS, caps=(Cap("contact", "day", 0),))], [], utc("2026-11-24T22:00")))
    assert (verdict.action, verdict.reason) == ("defer", "deferred_quiet_hours")


def test_the_latest_cap_decides_when_and_the_first_cap_why() -> None:
    caps = (Cap("contact", "day", 1), Cap("account", "week", 2))
    history = [sent(NOW - 3 * DAY, contact=1), sent(NOW - 23 * HOUR)]
    verdict = only(decide([cand(caps=caps)], history, NOW))
    assert verdict.reason == "capped_contact_daily"
    assert verdict.until == NOW + 4 * DAY  # the account cap frees up last
    assert verdict.detail == (
        "1 email to contact 42 in the last 24 hours, cap 1; 2 emails to account 7 in the last 7 days, cap 2; "
        "next allowed 2026-11-28 05:00 UTC"
    )


def test_until_is_pushed_past_the_calendar() -> None:
    calendar = Calendar(time(20), time(8), frozenset(range(5)))
    now = utc("2026-11-27T10:00")  # Friday 10:00 UTC; the cap frees Saturday 09:00
    verdict = only(decide([cand(calendar=calendar, caps=(Cap("contact", "day", 1),))], [sent(now - 1 * HOUR)], now))
    assert verdict.until == utc("2026-11-30T08:00")  # Monday 08:00


def test_contact_caps_skip_account_level_messages() -> None:
    caps = (Cap("contact", "day", 1), Cap("account", "day", 2))
    history = [sent(NOW - HOUR, contact=None)]
    assert only(decide([cand(contact=None, caps=caps)], history, NOW)).action == "send"
    # ... and account-level sends do not count against a contact.
    assert only(decide([cand(contact=42, caps=caps)], history, NOW)).action == "send"
    full = [*history, sent(NOW - 2 * HOUR, contact=3)]
    assert only(decide([cand(contact=None, caps=caps)], full, NOW)).reason == "capped_account_daily"


def test_the_window_is_open_at_its_start() -> None:
    cap = (Cap("contact", "day", 1),)
    assert only(decide([cand(caps=cap)], [sent(NOW - DAY)], NOW)).action == "send"
    verdict = only(decide([cand(caps=cap)], [sent(NOW - DAY + timedelta(microseconds=1))], NOW))
    assert (verdict.action, verdict.until) == ("defer", NOW + timedelta(microseconds=1))


def test_sends_in_the_future_count() -> None:
    verdict = only(decide([cand(caps=(Cap("contact", "day", 1),))], [sent(NOW + 2 * HOUR)], NOW))
    assert (verdict.action, verdict.until) == ("defer", NOW + 26 * HOUR)


def test_fall_back_detail_says_which_one_thirty() -> None:
    small_hours = Calendar(quiet_start=time(1), quiet_end=time(1, 30))
    verdict = only(decide([cand(tz="America/New_York", calendar=small_hours)], [], utc("2026-11-01T05:10")))
    assert verdict.detail.endswith("next allowed 2026-11-01 01:30 America/New_York (UTC-04:00)")
    verdict = only(decide([cand(tz="America/New_York", calendar=small_hours)], [], utc("2026-11-01T06:10")))
    assert verdict.detail.endswith("next allowed 2026-11-01 01:30 America/New_York (UTC-05:00)")


def test_send_keys_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        decide([cand("a"), cand("a", playbook="nps")], [], NOW)


# --- priority -------------------------------------------------------------------------------

DAILY = (Cap("contact", "day", 1),)


def test_higher_priority_wins_and_the_other_waits_with_lower_priority() -> None:
    low = cand("low", playbook="onboarding", priority=1, caps=DAILY, due=NOW - 5 * HOUR)
    high = cand("high", playbook="renewal", priority=2, caps=DAILY)
    verdicts = decide([low, high], [], NOW)
    assert [v.key for v in verdicts] == ["high", "low"]
    assert verdicts[0].action == "send"
    assert verdicts[1] == Verdict(
        "low",
        "defer",
        "lower_priority",
        "lower priority than playbook renewal in this run: 1 email to contact 42 in the last 24 hours, cap 1; "
        "next allowed 2026-11-25 05:00 UTC",
        NOW + DAY,
    )


def test_priority_ties_are_broken_by_due_then_playbook_then_key_and_are_not_lower_priority() -> None:
    early = cand("z", playbook="z", caps=DAILY, due=NOW - 2 * HOUR)
    late = cand("a", playbook="a", caps=DAILY, due=NOW - HOUR)
    assert [(v.key, v.action, v.reason) for v in decide([late, early], [], NOW)] == [
        ("z", "send", "sent"),
        ("a", "defer", "capped_contact_daily"),
    ]
    by_playbook = decide([cand("1", playbook="b", caps=DAILY), cand("2", playbook="a", caps=DAILY)], [], NOW)
    assert [(v.key, v.action) for v in by_playbook] == [("2", "send"), ("1", "defer")]
    by_key = decide([cand("b", caps=DAILY), cand("a", caps=DAILY)], [], NOW)
    assert [(v.key, v.action) for v in by_key] == [("a", "send"), ("b", "defer")]


def test_lower_priority_only_when_the_winners_made_the_difference() -> None:
    # The weekly cap was already full before this run: that is the reason, not the winner.
    caps = (Cap("contact", "day", 1), Cap("account", "week", 1))
    history = [sent(NOW - 2 * DAY, contact=5)]
    high = cand("high", playbook="renewal", priority=9, contact=42, caps=(Cap("contact", "day", 1),))
    low = cand("low", priority=1, caps=caps)
    verdicts = decide([high, low], history, NOW)
    assert verdicts[0].action == "send"
    assert verdicts[1].reason == "capped_account_weekly"
    # Without that history the winner alone stands in the way.
    assert decide([high, low], [], NOW)[1].reason == "lower_priority"


def test_several_winners_are_named() -> None:
    caps = (Cap("account", "day", 2),)
    batch = [
        cand("a", playbook="renewal", priority=3, contact=1, caps=caps),
        cand("b", playbook="nps", priority=2, contact=2, caps=caps),
        cand("c", playbook="onboarding", priority=1, contact=3, caps=caps),
    ]
    verdict = decide(batch, [], NOW)[2]
    assert verdict.reason == "lower_priority"
    assert verdict.detail.startswith("lower priority than playbooks nps, renewal in this run: 2 emails to account 7")


@st.composite
def batches(draw: st.DrawFn) -> list[Candidate]:
    """A handful of candidates competing for two contacts of one account."""
    caps = (Cap("contact", "day", 1), Cap("account", "day", 3), Cap("contact", "week", 1, "nps"))
    return [
        cand(
            f"k{n}",
            playbook=draw(st.sampled_from(["onboarding", "nps", "renewal"])),
            priority=draw(st.integers(0, 2)),
            contact=draw(st.sampled_from([1, 2, None])),
            caps=caps,
            due=NOW - draw(st.integers(0, 3)) * HOUR,
        )
        for n in range(draw(st.integers(1, 8)))
    ]


@settings(max_examples=100, derandomize=True, deadline=None)
@given(batches(), st.randoms(use_true_random=False))
def test_input_order_does_not_matter(batch: list[Candidate], rng: random.Random) -> None:
    shuffled = list(batch)
    rng.shuffle(shuffled)
    verdicts = decide(batch, [sent(NOW - 20 * HOUR, contact=2)], NOW)
    assert decide(shuffled, [sent(NOW - 20 * HOUR, contact=2)], NOW) == verdicts
    assert [v.key for v in verdicts] == [c.key for c in sorted(batch, key=order_key)]


# --- the simulation -------------------------------------------------------------------------

PLAYBOOKS = ("onboarding", "renewal", "nps")
# Three weeks from each of these spans at least one zone's DST transition.
STARTS = [datetime(2026, 3, 1), datetime(2026, 3, 20), datetime(2026, 10, 15), datetime(2026, 9, 26)]
LENGTH = timedelta(days=21)


@dataclass(frozen=True)
class Scenario:
    """Who may be emailed how often, and what comes due when."""

    start: datetime
    caps: tuple[Cap, ...]  # project caps (every message) and playbook caps (that playbook's)
    calendars: dict[str, Calendar]  # per playbook
    recipients: list[tuple[int, int | None, str]]  # (account, contact, zone)
    arrivals: list[tuple[timedelta, str, int, int]]  # (after start, playbook, recipient index, priority)
    tick_seed: int
    eager: bool  # re-present deferred messages at every tick, not only once their `until` has come

    def caps_for(self, playbook: str) -> tuple[Cap, ...]:
        """The caps on one playbook's messages."""
        return tuple(c for c in self.caps if c.playbook_id in (None, playbook))


@dataclass
class Outcome:
    """What happened over the simulated weeks."""

    sends: list[tuple[datetime, Candidate]] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)


caps_ = st.builds(
    Cap,
    scope=st.sampled_from(["contact", "account"]),
    period=st.sampled_from(["day", "week"]),
    limit=st.integers(1, 4),
    playbook_id=st.none() | st.sampled_from(PLAYBOOKS),
)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """A random three weeks of sending."""
    start = draw(st.sampled_from(STARTS)) + timedelta(minutes=draw(st.integers(0, 24 * 60 - 1)))
    policy = draw(st.lists(caps_, min_size=1, max_size=4))
    books = {p: draw(calendars(start.date(), min_days=3)) for p in PLAYBOOKS}
    recipients = []
    for account in range(1, draw(st.integers(1, 3)) + 1):
        for n in range(draw(st.integers(1, 3))):
            contact = None if n == 0 and draw(st.booleans()) else account * 10 + n
            recipients.append((account, contact, draw(st.sampled_from(ZONES))))
    arrivals = draw(
        st.lists(
            st.tuples(
                st.integers(0, 19 * 24 * 60).map(lambda m: timedelta(minutes=m)),
                st.sampled_from(PLAYBOOKS),
                st.integers(0, len(recipients) - 1),
                st.integers(0, 3),
            ),
            min_size=8,
            max_size=40,
        )
    )
    return Scenario(start, tuple(policy), books, recipients, arrivals, draw(st.integers(0, 2**32)), draw(st.booleans()))


def simulate(scenario: Scenario) -> Outcome:
    """Run `decide` at ticks 1–6 hours apart, checking each tick's verdicts as they come."""
    ticks = random.Random(scenario.tick_seed)
    arriving = sorted(
        (
            (
                scenario.start + after,
                Candidate(
                    key=f"m{n}",
                    playbook_id=playbook,
                    priority=priority,
                    account_id=scenario.recipients[who][0],
                    contact_id=scenario.recipients[who][1],
                    timezone=scenario.recipients[who][2],
                    caps=scenario.caps_for(playbook),
                    calendar=scenario.calendars[playbook],
                    due=scenario.start + after,
                ),
            )
            for n, (after, playbook, who, priority) in enumerate(scenario.arrivals)
        ),
        key=lambda arrival: arrival[0],
    )
    pending: dict[str, Candidate] = {}
    retry_at: dict[str, datetime] = {}
    history: list[PastSend] = []
    outcome = Outcome()
    now = scenario.start
    while now <= scenario.start + LENGTH:
        while arriving and arriving[0][0] <= now:
            _, candidate = arriving.pop(0)
            pending[candidate.key] = candidate
        batch = [c for c in pending.values() if scenario.eager or retry_at.get(c.key, now) <= now]
        verdicts = decide(batch, history, now)
        assert [v.key for v in verdicts] == [c.key for c in sorted(batch, key=order_key)]
        seen_in_call = list(history)
        won_at: list[int] = []  # the priority of each send approved in this call
        for verdict in verdicts:
            candidate = pending[verdict.key]
            outcome.reasons[verdict.reason] += 1
            if verdict.action == "send":
                assert candidate.calendar.blocked(now, candidate.timezone) is None
                assert verdict.until is None
                seen_in_call.append(PastSend(now, candidate.playbook_id, candidate.account_id, candidate.contact_id))
                won_at.append(candidate.priority)
                outcome.sends.append((now, pending.pop(verdict.key)))
                continue
            assert verdict.action == "defer", "no cap of 0 in these scenarios"
            assert verdict.until is not None and verdict.until > now
            assert candidate.calendar.blocked(verdict.until, candidate.timezone) is None
            if not verdict.reason.startswith("deferred_"):
                # Held back by caps. With nothing else sent it goes out at `until` and not a moment
                # earlier (the calendar or the caps still say no just before).
                assert only(decide([candidate], seen_in_call, verdict.until)).action == "send"
                just_before = verdict.until - timedelta(microseconds=1)
                assert only(decide([candidate], seen_in_call, just_before)).action != "send"
                # "lower_priority" exactly when it would have gone out but for this call's winners.
                this_call = seen_in_call[len(history) :]
                losers = [s for s, p in zip(this_call, won_at, strict=True) if p <= candidate.priority]
                without_winners = only(decide([candidate], history + losers, now)).action == "send"
                assert without_winners == (verdict.reason == "lower_priority"), verdict
            retry_at[verdict.key] = verdict.until
        history = seen_in_call
        now += timedelta(minutes=ticks.randint(60, 6 * 60))
    return outcome


def assert_caps_held(scenario: Scenario, outcome: Outcome) -> None:
    """No contact or account got more than a cap allows in any window (one starting at each send)."""
    for cap in scenario.caps:
        groups: dict[int, list[datetime]] = {}
        for at, c in outcome.sends:
            subject = c.contact_id if cap.scope == "contact" else c.account_id
            if subject is not None and cap.playbook_id in (None, c.playbook_id):
                groups.setdefault(subject, []).append(at)
        for subject, times in groups.items():
            for start in times:
                in_window = [t for t in times if start <= t < start + cap.window]
                assert len(in_window) <= cap.limit, (cap, subject, in_window)


@settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
def test_three_weeks_of_sending_never_break_the_policy(scenario: Scenario) -> None:
    outcome = simulate(scenario)
    assert_caps_held(scenario, outcome)
    keys = [c.key for _, c in outcome.sends]
    assert len(keys) == len(set(keys)), "a message went out twice"
    for at, c in outcome.sends:
        assert c.calendar.blocked(at, c.timezone) is None
        assert at >= c.due


def test_the_simulation_exercises_every_kind_of_verdict() -> None:
    """A busy fixed scenario, so the property above is known not to pass vacuously."""
    strict = Calendar(time(20), time(8), frozenset(range(5)), frozenset({date(2026, 3, 11)}))
    scenario = Scenario(
        start=datetime(2026, 3, 1, 9, 30),
        caps=(Cap("contact", "day", 1), Cap("account", "week", 4), Cap("contact", "week", 1, "nps")),
        calendars={"onboarding": strict, "renewal": EVENINGS, "nps": Calendar(time(18), time(9))},
        recipients=[(1, 11, "America/New_York"), (1, 12, "Europe/London"), (2, None, "Asia/Seoul"), (2, 21, "UTC")],
        arrivals=[(timedelta(hours=7 * n), PLAYBOOKS[n % 3], n % 4, n % 4) for n in range(60)],
        tick_seed=7,
        eager=False,
    )
    outcome = simulate(scenario)
    assert_caps_held(scenario, outcome)
    assert set(outcome.reasons) >= {
        "sent",
        "lower_priority",
        "deferred_quiet_hours",
        "deferred_business_day",
        "deferred_holiday",
        "capped_contact_daily",
        "capped_account_weekly",
    }, outcome.reasons
    assert len(outcome.sends) > 20
