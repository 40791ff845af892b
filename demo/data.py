"""A deterministic, realistic synthetic store for demos, tests and benchmarks.

`generate` wipes the customer and engine tables and fills a B2B SaaS customer base: CSMs,
accounts across three touch tiers, their contacts, and six months of product, support, NPS and
billing events. Some accounts are given patterns the example playbooks look for — gone quiet,
a support spike, a recent NPS detractor — and renewals are spread over the coming year.

Everything derives from `seed` and `now` (never the clock or the global random), so the same
arguments give the same rows on every dialect. Accounts are generated and loaded in chunks,
each table's rows streamed from generators through `bulk_insert`, so memory stays flat however
many accounts are asked for. Event generation is the hot loop (~10 rows per contact): it works
on tuples and shared, precomputed property dicts.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import accumulate, repeat
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, text

from demo.vocabulary import (
    COMPANY_ENDINGS,
    COMPANY_KINDS,
    CONTACT_COUNT_CUM,
    EN_COMPANY_WORDS,
    EN_NAMES,
    EXTRA_ROLE_CUM,
    EXTRA_ROLES,
    KO_COMPANY_WORDS,
    KO_NAMES,
    REGIONS,
    TIMEZONE_CUM,
    TIMEZONES,
)
from engine.store import models
from engine.store.bulk import Row, bulk_insert, clear_tables, deferred_indexes

_DAY = 86_400
_HISTORY_SECONDS = 180 * _DAY
# Accounts planned (and loaded) per round; bounds memory, does not affect the rows generated.
_CHUNK = 5_000
# Children before parents, so foreign keys hold at every step. The engine's tables go too:
# enrollments, sends and condition state of a previous store would point at the wrong accounts.
_TABLES_TO_CLEAR = (
    models.suppressions,
    models.message_events,
    models.audit_log,
    models.tasks,
    models.ledger,
    models.enrollments,
    models.condition_state,
    models.events,
    models.health_history,
    models.contacts,
    models.accounts,
    models.csms,
)

_CSM_COLUMNS = ("id", "name", "email", "team")
_ACCOUNT_COLUMNS = (
    "id",
    "name",
    "tier",
    "plan",
    "arr",
    "seats_purchased",
    "lifecycle_stage",
    "contract_start",
    "renewal_date",
    "csm_id",
    "status",
    "timezone",
    "locale",
    "traits",
)
_CONTACT_COLUMNS = ("id", "account_id", "email", "name", "role", "timezone", "locale", "traits")
_EVENT_COLUMNS = ("id", "account_id", "contact_id", "name", "occurred_at", "properties")


@dataclass(frozen=True)
class DemoSummary:
    """How many rows `generate` loaded into each customer table."""

    csms: int
    accounts: int
    contacts: int
    events: int


# --- events -------------------------------------------------------------------------------------

_FEATURES = (
    "dashboards",
    "reports",
    "automations",
    "integrations",
    "api",
    "sso",
    "exports",
    "alerts",
)
_EMPTY: dict[str, Any] = {}
_DO_NOT_CONTACT: dict[str, Any] = {"do_not_contact": True}
_DO_NOT_CONTACT_EVERY = 199
# Addresses already on the suppression list, as an import from the previous tool would leave them.
_SUPPRESSED_EVERY = {"unsubscribe": 97, "bounce": 101, "spamreport": 499}
# Shared, never-mutated property dicts: building a dict per event would dominate the hot loop.
_FEATURE_PROPS = tuple({"feature": feature} for feature in _FEATURES)
_PRIORITY_PROPS = tuple({"priority": f"P{level}"} for level in (1, 2, 3))
_NPS_PROPS = tuple({"score": score} for score in range(11))

# Background activity of one contact: (name, properties) picked by weight in one draw.
_ACTIVITY: tuple[tuple[str, dict[str, Any]], ...] = (
    ("login", _EMPTY),
    ("page_view", _EMPTY),
    *(("feature_used", props) for props in _FEATURE_PROPS),
    *(("support_ticket_opened", props) for props in _PRIORITY_PROPS),
)
_ACTIVITY_CUM = tuple(accumulate((30.0, 38.0, *([25.0 / len(_FEATURES)] * len(_FEATURES)), 0.6, 1.2, 1.2)))

# Account patterns, picked once per account: the rest are "normal". Each one is what an example
# playbook in playbooks/ looks for, so every example fires on the demo store.
_QUIET, _SPIKE, _DETRACTOR, _NORMAL = "gone_quiet", "support_spike", "detractor", "normal"
_USAGE_DROP, _EXPANSION, _OVERDUE = "usage_drop", "expansion", "invoice_overdue"
_CHAMPION_LEFT, _TICKET_HEAVY, _NEW_USER, _ADVOCATE = "champion_left", "ticket_heavy", "new_user", "advocate"
_PATTERN_CUM = (
    (0.08, _QUIET),
    (0.13, _SPIKE),
    (0.23, _DETRACTOR),
    (0.28, _USAGE_DROP),
    (0.32, _EXPANSION),
    (0.35, _OVERDUE),
    (0.37, _CHAMPION_LEFT),
    (0.40, _TICKET_HEAVY),
    (0.45, _NEW_USER),
    (0.51, _ADVOCATE),
)
_OVERDUE_PROPS = tuple({"days_overdue": days, "amount": 0.0} for days in (15, 21, 30, 45))
_LEFT_PROPS = tuple({"role": role} for role in ("champion", "exec_sponsor", "user"))


# --- plans --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _AccountPlan:
    """One account's row plus what its contacts and events are generated from."""

    id: int
    name: str
    slug: str
    tier: str
    plan: str
    arr: float
    seats_purchased: int
    lifecycle_stage: str
    contract_start: date
    renewal_date: date
    csm_id: int | None
    status: str
    timezone: str
    locale: str
    traits: dict[str, Any]
    pattern: str
    # Seconds before `now` of a gone-quiet account's last login (0 for other patterns).
    quiet_for: int
    first_contact_id: int
    contact_count: int

    def row(self) -> Row:
        return (
            self.id,
            self.name,
            self.tier,
            self.plan,
            self.arr,
            self.seats_purchased,
            self.lifecycle_stage,
            self.contract_start,
            self.renewal_date,
            self.csm_id,
            self.status,
            self.timezone,
            self.locale,
            self.traits,
        )


@dataclass(frozen=True)
class _CsmTeams:
    """CSM ids by team: enterprise CSMs own high-touch accounts, growth CSMs the rest."""

    enterprise: range
    growth: range

    @classmethod
    def for_accounts(cls, accounts: int) -> _CsmTeams:
        # Sized from the expected tier mix (10% high, 30% low touch), about 40 accounts each,
        # so CSMs can be loaded before the accounts that reference them are drawn.
        enterprise = max(1, -(-accounts * 10 // (100 * 40)))
        growth = max(2, -(-accounts * 30 // (100 * 40)))
        return cls(range(1, enterprise + 1), range(enterprise + 1, enterprise + growth + 1))


class _Rngs:
    """One independent stream per kind of row, so changing how events are drawn (say) leaves
    the accounts and contacts of a seed unchanged, and chunk size never changes the output."""

    def __init__(self, seed: int) -> None:
        # A str seed is hashed with SHA-512 by `random`, stable across runs and platforms.
        self.csms = random.Random(f"{seed}/csms")
        self.accounts = random.Random(f"{seed}/accounts")
        self.contacts = random.Random(f"{seed}/contacts")
        self.events = random.Random(f"{seed}/events")


# --- entry point --------------------------------------------------------------------------------


def generate(engine: Engine, accounts: int, seed: int, now: datetime) -> DemoSummary:
    """Replace the store's contents with `accounts` synthetic accounts and their history.

    Deletes every row of the customer tables (events, contacts, accounts, csms, health_history)
    and of the engine tables (enrollments, condition_state, ledger, tasks, audit_log), then
    loads CSMs, accounts, contacts and the 180 days of events before `now`, in one transaction
    (health_history is left empty). `now` is a naive UTC datetime; the same `seed` and `now`
    always give the same rows, on any dialect. Statistics are refreshed with ANALYZE afterwards
    so the planner sees the new volumes.
    """
    if accounts < 0:
        raise ValueError(f"accounts must be >= 0, got {accounts}")
    if now.tzinfo is not None:
        raise ValueError("now must be a naive UTC datetime")
    rngs = _Rngs(seed)
    teams = _CsmTeams.for_accounts(accounts)
    n_accounts = n_contacts = n_events = 0
    with engine.begin() as conn:
        clear_tables(conn, _TABLES_TO_CLEAR)
        # The engine's history is gone, so is the mark of its last live tick (engine/tick.py).
        conn.execute(delete(models.locks).where(models.locks.c.name == "tick"))
        n_csms = bulk_insert(conn, models.csms, _CSM_COLUMNS, _csm_rows(rngs.csms, teams))
        with deferred_indexes(conn, models.events):
            for first in range(1, accounts + 1, _CHUNK):
                ids = range(first, min(first + _CHUNK, accounts + 1))
                plans = _plan_accounts(rngs.accounts, ids, teams, now.date(), n_contacts + 1)
                account_rows = (plan.row() for plan in plans)
                contact_rows = _contact_rows(rngs.contacts, plans)
                event_rows = _event_rows(rngs.events, plans, now, n_events + 1)
                n_accounts += bulk_insert(conn, models.accounts, _ACCOUNT_COLUMNS, account_rows)
                n_contacts += bulk_insert(conn, models.contacts, _CONTACT_COLUMNS, contact_rows)
                n_events += bulk_insert(conn, models.events, _EVENT_COLUMNS, event_rows)
        _suppress_some(conn, now)
    with engine.begin() as conn:
        # Table by table: a bare ANALYZE on PostgreSQL would visit every schema of the database.
        preparer = conn.dialect.identifier_preparer
        for table in _TABLES_TO_CLEAR:
            conn.execute(text(f"ANALYZE {preparer.format_table(table)}"))
    return DemoSummary(csms=n_csms, accounts=n_accounts, contacts=n_contacts, events=n_events)


def _suppress_some(conn: Connection, now: datetime) -> None:
    """Every n-th contact's address on the suppression list, for each reason (deterministic)."""
    taken: set[str] = set()
    for reason, every in _SUPPRESSED_EVERY.items():
        query = select(models.contacts.c.email).where(models.contacts.c.id % every == 0)
        emails = sorted({e.strip().lower() for e in conn.execute(query).scalars()} - taken)
        taken.update(emails)
        rows = [
            {"email": e, "reason": reason, "source": "import", "created_at": now, "detail": "demo data"} for e in emails
        ]
        if rows:
            conn.execute(insert(models.suppressions), rows)


# --- csms ---------------------------------------------------------------------------------------


def _csm_rows(rng: random.Random, teams: _CsmTeams) -> Iterator[Row]:
    names = [*EN_NAMES, *KO_NAMES]
    rng.shuffle(names)
    for index, csm_id in enumerate([*teams.enterprise, *teams.growth]):
        display, given, family = names[index % len(names)]
        # Past the name pool, a number keeps the addresses unique.
        lap = index // len(names)
        local = f"{given}.{family}{lap + 1 if lap else ''}"
        team = "enterprise" if csm_id in teams.enterprise else "growth"
        yield (csm_id, display, f"{local}@touchflow-demo.example", team)


# --- accounts -----------------------------------------------------------------------------------


def _plan_accounts(
    rng: random.Random, ids: range, teams: _CsmTeams, today: date, first_contact_id: int
) -> list[_AccountPlan]:
    plans = []
    next_contact = first_contact_id
    for account_id in ids:
        plan = _plan_account(rng, account_id, teams, today, next_contact)
        next_contact += plan.contact_count
        plans.append(plan)
    return plans


def _plan_account(
    rng: random.Random, account_id: int, teams: _CsmTeams, today: date, first_contact_id: int
) -> _AccountPlan:
    draw = rng.random
    tier, plan_name, arr, price = _draw_commercials(rng)
    timezone = rng.choices(TIMEZONES, cum_weights=TIMEZONE_CUM)[0]
    locale = "ko" if timezone == "Asia/Seoul" else "en"
    word = rng.choice(KO_COMPANY_WORDS if locale == "ko" else EN_COMPANY_WORDS)
    kind, industry = rng.choice(COMPANY_KINDS)
    name = f"{word} {kind}{rng.choice(COMPANY_ENDINGS)}"
    pattern = _draw_pattern(draw())
    renewal = today + timedelta(days=1 + int(draw() * 365))
    start = renewal - timedelta(days=365 * rng.randint(1, 3))
    contact_count = 1 + rng.choices(range(5), cum_weights=CONTACT_COUNT_CUM)[0]
    # Health 0-100 (a trait until health scoring lands); advocates are the healthy ones.
    health = 86 + int(draw() * 14) if pattern == _ADVOCATE else 35 + int(draw() * 56)
    seats = max(3, round(arr / price))
    if pattern == _EXPANSION:  # every seat in use: all contacts active, one seat each
        seats = contact_count
    return _AccountPlan(
        id=account_id,
        name=name,
        slug=re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"),
        tier=tier,
        plan=plan_name,
        arr=arr,
        seats_purchased=seats,
        lifecycle_stage=_lifecycle_stage(rng, today, start, renewal),
        contract_start=start,
        renewal_date=renewal,
        csm_id=_draw_csm(rng, tier, teams),
        status="churned" if draw() < 0.02 else "active",
        timezone=timezone,
        locale=locale,
        traits={
            "industry": industry,
            "region": REGIONS[timezone.split("/")[0]],
            "employees": _draw_employees(rng, tier),
            "health_score": health,
        },
        pattern=pattern,
        quiet_for=rng.randint(61 * _DAY, 150 * _DAY) if pattern == _QUIET else 0,
        first_contact_id=first_contact_id,
        contact_count=contact_count,
    )


def _draw_commercials(rng: random.Random) -> tuple[str, str, float, float]:
    """Tier, plan, ARR and price per seat, consistent with each other."""
    tier_draw = rng.random()
    if tier_draw < 0.10:
        tier, plan, arr, price = "high_touch", "enterprise", rng.uniform(80e3, 400e3), 1200.0
    elif tier_draw < 0.40:
        tier, plan, arr, price = "low_touch", "business", rng.uniform(15e3, 80e3), 600.0
    else:
        # Some self-serve customers buy the business plan without growing out of tech touch.
        plan = "business" if rng.random() < 0.15 else "starter"
        tier, arr, price = "tech_touch", rng.uniform(1e3, 15e3), 240.0
    return tier, plan, float(round(arr, -2)), price * rng.uniform(0.7, 1.3)


def _draw_csm(rng: random.Random, tier: str, teams: _CsmTeams) -> int | None:
    if tier == "high_touch":
        return rng.choice(teams.enterprise)
    if tier == "low_touch":
        return rng.choice(teams.growth)
    # A few tech-touch accounts keep a pooled CSM (e.g. left over from a downgrade).
    return rng.choice(teams.growth) if rng.random() < 0.05 else None


def _draw_employees(rng: random.Random, tier: str) -> int:
    low, high = {"high_touch": (1000, 20000), "low_touch": (200, 2000)}.get(tier, (10, 300))
    return rng.randint(low, high)


def _lifecycle_stage(rng: random.Random, today: date, start: date, renewal: date) -> str:
    # Derived from the dates so stage and contract agree: recent starts are onboarding.
    if (today - start).days < 120:
        return "onboarding"
    if (renewal - today).days <= 90:
        return "renewal"
    return "expansion" if rng.random() < 0.25 else "adoption"


def _draw_pattern(draw: float) -> str:
    for threshold, pattern in _PATTERN_CUM:
        if draw < threshold:
            return pattern
    return _NORMAL


# --- contacts -----------------------------------------------------------------------------------


def _contact_rows(rng: random.Random, plans: Sequence[_AccountPlan]) -> Iterator[Row]:
    draw = rng.random
    for plan in plans:
        names = KO_NAMES if plan.locale == "ko" else EN_NAMES
        for offset in range(plan.contact_count):
            contact_id = plan.first_contact_id + offset
            # The first contact is always an admin, so every account has one.
            role = "admin" if offset == 0 else _pick(rng, EXTRA_ROLES, EXTRA_ROLE_CUM)
            display, given, family = names[int(draw() * len(names))]
            email = f"{given}.{family}.{contact_id}@{plan.slug}.example"
            if draw() < 0.01:
                email = _break_address(rng, email)
            timezone: str | None = None
            locale: str | None = None
            if draw() < 0.1:  # most contacts inherit the account's timezone and locale
                timezone = _pick(rng, TIMEZONES, TIMEZONE_CUM)
                locale = "ko" if timezone == "Asia/Seoul" else "en"
            # A few people asked never to be contacted (no draw: the random stream stays as it was).
            traits = _DO_NOT_CONTACT if contact_id % _DO_NOT_CONTACT_EVERY == 0 else _EMPTY
            yield (contact_id, plan.id, email, display, role, timezone, locale, traits)


def _break_address(rng: random.Random, email: str) -> str:
    """A typo a real CRM holds, so the engine's invalid-address handling has work to do."""
    local, domain = email.split("@")
    return rng.choice((f"{local}{domain}", f"{local} @{domain}", f"{local}@@{domain}"))


def _pick(rng: random.Random, values: Sequence[str], cum_weights: Sequence[float]) -> str:
    return rng.choices(values, cum_weights=cum_weights)[0]


# --- events -------------------------------------------------------------------------------------


def _event_rows(rng: random.Random, plans: Sequence[_AccountPlan], now: datetime, first_id: int) -> Iterator[Row]:
    next_id = first_id
    for plan in plans:
        raw = _account_events(rng, plan, now.date())
        # Assembled a column at a time with zip/map: this is the innermost loop of the whole
        # generation (~3M rows per 100k accounts), and C-level iteration halves its cost.
        seconds_ago, contact_ids, names, properties = zip(*raw, strict=True)
        occurred_at = map(now.__sub__, map(timedelta, repeat(0), seconds_ago))
        ids = range(next_id, next_id + len(raw))
        yield from zip(ids, repeat(plan.id), contact_ids, names, occurred_at, properties)
        next_id += len(raw)


# (seconds before now, contact id or None for account-level, name, properties)
_RawEvent = tuple[int, int | None, str, dict[str, Any]]


def _account_events(rng: random.Random, plan: _AccountPlan, today: date) -> list[_RawEvent]:
    draw = rng.random
    first_contact = plan.first_contact_id
    # A gone-quiet account's users did nothing after the cutoff; billing carries on. Nobody
    # did anything before the contract started.
    earliest = plan.quiet_for if plan.pattern == _QUIET else 0
    since_start = max(_DAY, (today - plan.contract_start).days * _DAY)
    span = min(_HISTORY_SECONDS, since_start) - earliest
    out: list[_RawEvent] = []
    new_user = first_contact + plan.contact_count - 1 if plan.pattern == _NEW_USER and plan.contact_count > 1 else None
    for contact_id in range(first_contact, first_contact + plan.contact_count):
        if contact_id != new_user:
            out.extend(_contact_activity(rng, contact_id, earliest, span))
    if plan.pattern == _ADVOCATE:
        out = [e for e in out if not (e[2] == "support_ticket_opened" and e[0] < 30 * _DAY)]
    if since_start < 45 * _DAY and draw() < 0.5:
        # Half of the newest customers have not used a core feature yet (activation-30d).
        out = [e for e in out if e[2] != "feature_used"]
    if plan.lifecycle_stage == "onboarding" and draw() < 0.6:
        went_live = since_start - (20 + int(draw() * 30)) * _DAY
        if went_live > 0:
            out.append((went_live, first_contact, "go_live", _EMPTY))
    out.extend(_pattern_events(rng, plan, new_user))
    if plan.pattern == _QUIET:
        # The admin's last login marks the moment the account went quiet.
        out.append((plan.quiet_for, first_contact, "login", _EMPTY))
    else:
        out.append((int(draw() * 14 * _DAY), first_contact, "login", _EMPTY))
    out.extend(_invoices(rng, plan.arr))
    return out


def _pattern_events(rng: random.Random, plan: _AccountPlan, new_user: int | None) -> list[_RawEvent]:
    """The events that make this account's pattern visible to its playbook."""
    draw = rng.random
    first, count = plan.first_contact_id, plan.contact_count
    out: list[_RawEvent] = []

    def someone() -> int:
        return first + int(draw() * count)

    def tickets(n: int, days: int) -> None:
        for _ in range(n):
            out.append(
                (int(draw() * days * _DAY), someone(), "support_ticket_opened", _PRIORITY_PROPS[int(draw() * 3)])
            )

    if plan.pattern == _SPIKE:
        tickets(rng.randint(5, 9), 7)
    elif plan.pattern == _TICKET_HEAVY:
        tickets(rng.randint(10, 26), 30)
    elif plan.pattern == _DETRACTOR:
        # Most answered within the month; a third in the last two days (the event trigger's window).
        days = 2 if draw() < 0.35 else 30
        out.append((int(draw() * days * _DAY), someone(), "nps_response", _NPS_PROPS[int(draw() * 7)]))
    elif plan.pattern == _USAGE_DROP:
        before, after = 12 + int(draw() * 10), int(draw() * 5)
        out.extend(
            (30 * _DAY + int(draw() * 30 * _DAY), someone(), "feature_used", _FEATURE_PROPS[0]) for _ in range(before)
        )
        out.extend((int(draw() * 30 * _DAY), someone(), "feature_used", _FEATURE_PROPS[1]) for _ in range(after))
    elif plan.pattern == _EXPANSION:
        out.extend((int(draw() * 20 * _DAY), contact, "login", _EMPTY) for contact in range(first, first + count))
    elif plan.pattern == _OVERDUE:
        out.append((int(draw() * 2 * _DAY), None, "invoice_overdue", _OVERDUE_PROPS[int(draw() * 4)]))
    elif plan.pattern == _CHAMPION_LEFT:
        out.append((int(draw() * 2 * _DAY), someone(), "contact_left", _LEFT_PROPS[int(draw() * 3)]))
    elif plan.pattern == _ADVOCATE and draw() < 0.2:
        # Healthy (no recent tickets: see _account_events); a few have already written a review.
        out.append((int(draw() * 180 * _DAY), first, "review_submitted", _EMPTY))
    if new_user is not None:
        first_login = (7 + int(draw() * 7)) * _DAY - 3600
        out.append((first_login, new_user, "login", _EMPTY))
        out.extend((int(draw() * 7 * _DAY), new_user, "page_view", _EMPTY) for _ in range(int(draw() * 3)))
    return out


def _contact_activity(rng: random.Random, contact_id: int, earliest: int, span: int) -> list[_RawEvent]:
    draw = rng.random
    picks = rng.choices(_ACTIVITY, cum_weights=_ACTIVITY_CUM, k=3 + int(draw() * 12))
    out: list[_RawEvent] = [(earliest + int(draw() * span), contact_id, name, props) for name, props in picks]
    if draw() < 0.3:
        seconds_ago = earliest + int(draw() * span)
        # Background scores in the last 30 days stay passive/promoter (7-10): recent
        # detractors are a pattern given to chosen accounts only.
        score = 7 + int(draw() * 4) if seconds_ago < 30 * _DAY else int(draw() * 11)
        out.append((seconds_ago, contact_id, "nps_response", _NPS_PROPS[score]))
    return out


def _invoices(rng: random.Random, arr: float) -> list[_RawEvent]:
    # Quarterly billing: two invoices in the 180-day window, each paid 3-30 days after issue
    # unless that is still in the future.
    amount = {"amount": round(arr / 4, 2)}
    phase = int(rng.random() * 90 * _DAY)
    out: list[_RawEvent] = []
    for issued in (phase, phase + 90 * _DAY):
        out.append((issued, None, "invoice_issued", amount))
        paid = issued - rng.randint(3 * _DAY, 30 * _DAY)
        if paid >= 0:
            out.append((paid, None, "invoice_paid", amount))
    return out
