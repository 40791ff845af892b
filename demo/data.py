"""A deterministic, realistic synthetic store for demos, tests and benchmarks.

`generate` wipes the customer and engine tables and fills a B2B SaaS customer base: CSMs,
accounts across three touch tiers, their contacts, and a year of product, support, NPS and
billing events in which some accounts churn (`status` churned, `churned_on`; their activity fades
before), and the closed CSM tasks of that year. Some accounts are given patterns the example
playbooks look for — gone quiet, a support spike, a recent NPS detractor — and renewals are spread over the coming year;
the go-lives and renewals signed in the year (demo/milestones.py) are loaded with the events.

Everything derives from `seed` and `now` (never the clock or the global random), so the same
arguments give the same rows on every dialect. Accounts are generated and loaded in chunks,
each table's rows streamed from generators through `bulk_insert`, so memory stays flat however
many accounts are asked for. The plans of the accounts are drawn here (demo/plan.py holds their
shape and patterns); their events, the hot loop, in demo/events.py.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, String, cast, delete, insert, literal, select, text, update

from demo import events as history
from demo.milestones import milestones
from demo.plan import ADVOCATE, BASE_CHURN_ODDS, CHURN_ODDS, DAY, EXPANSION, NORMAL, PATTERN_CUM, QUIET, AccountPlan
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
    "churned_on",
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


# --- contacts' flags -----------------------------------------------------------------------------

_EMPTY: dict[str, Any] = {}
_DO_NOT_CONTACT: dict[str, Any] = {"do_not_contact": True}
_DO_NOT_CONTACT_EVERY = 199
# Addresses already on the suppression list, as an import from the previous tool would leave them.
_SUPPRESSED_EVERY = {"unsubscribe": 97, "bounce": 101, "spamreport": 499}


# --- plans --------------------------------------------------------------------------------------


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
        self.tasks = random.Random(f"{seed}/tasks")
        self.churn = random.Random(f"{seed}/churn")
        self.milestones = random.Random(f"{seed}/milestones")


# --- entry point --------------------------------------------------------------------------------


def generate(engine: Engine, accounts: int, seed: int, now: datetime) -> DemoSummary:
    """Replace the store's contents with `accounts` synthetic accounts and their history.

    Deletes every row of the customer tables (events, contacts, accounts, csms, health_history)
    and of the engine tables (enrollments, condition_state, ledger, tasks, audit_log), then
    loads CSMs, accounts, contacts, the year of events before `now` and the year's closed tasks,
    in one transaction (health_history is left empty). `now` is a naive UTC datetime; the same `seed` and `now`
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
                plans = _plan_accounts(rngs.accounts, rngs.churn, ids, teams, now.date(), n_contacts + 1)
                account_rows = (plan.row() for plan in plans)
                contact_rows = _contact_rows(rngs.contacts, plans)
                more = functools.partial(milestones, rngs.milestones, now=now)
                event_rows = history.event_rows(rngs.events, plans, now, n_events + 1, more)
                n_accounts += bulk_insert(conn, models.accounts, _ACCOUNT_COLUMNS, account_rows)
                n_contacts += bulk_insert(conn, models.contacts, _CONTACT_COLUMNS, contact_rows)
                n_events += bulk_insert(conn, models.events, _EVENT_COLUMNS, event_rows)
        _suppress_some(conn, now)
        _name_rows(conn)
        _past_tasks(conn, rngs.tasks, now)
    with engine.begin() as conn:
        # Table by table: a bare ANALYZE on PostgreSQL would visit every schema of the database.
        preparer = conn.dialect.identifier_preparer
        for table in _TABLES_TO_CLEAR:
            conn.execute(text(f"ANALYZE {preparer.format_table(table)}"))
    return DemoSummary(csms=n_csms, accounts=n_accounts, contacts=n_contacts, events=n_events)


def _name_rows(conn: Connection) -> None:
    """The customer's own ids a CRM would hold (`csm-N`, `acct-N`, `contact-N`): what
    `touchflow import` and `demo-data --export` key rows on."""
    for table, prefix in ((models.csms, "csm-"), (models.accounts, "acct-"), (models.contacts, "contact-")):
        conn.execute(update(table).values(external_id=literal(prefix).concat(cast(table.c.id, String))))


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


# Tasks CSMs worked over the past year, all closed (so the demo tick's capacity and dedupe see
# none open): what `touchflow portfolio` reports as opened and closed by reason.
_PAST_TASKS = (
    ("support-spike", "alert-csm", "Support spike at {}: 5+ tickets in 7 days"),
    ("usage-drop", "alert-csm", "Usage down 25 %+ at {}"),
    ("nps-detractor", "call", "NPS detractor at {}: call within a day"),
    ("renewal-90d", "call", "Call {} about the renewal"),
    ("champion-left", "replace-champion", "{} lost its champion or sponsor"),
)
_OUTCOMES = ("resolved", "resolved", "resolved", "no_action", "escalated")
_TASK_COLUMNS = (
    "send_key",
    "playbook_id",
    "step_id",
    "account_id",
    "csm_id",
    "title",
    "body",
    "priority",
    "status",
    "due_at",
    "created_at",
    "updated_at",
    "closed_at",
    "outcome",
    "closed_by",
)


def _past_tasks(conn: Connection, rng: random.Random, now: datetime) -> None:
    """About one closed task per three CSM-owned accounts, opened over the past year."""
    owned = select(models.accounts.c.id, models.accounts.c.name, models.accounts.c.csm_id, models.csms.c.email)
    owned = owned.join_from(models.accounts, models.csms, models.csms.c.id == models.accounts.c.csm_id)
    rows: list[Row] = []
    for account_id, name, csm_id, email in conn.execute(owned.order_by(models.accounts.c.id)):
        if rng.random() >= 0.33:
            continue
        playbook, step, title = _PAST_TASKS[int(rng.random() * len(_PAST_TASKS))]
        opened = now - timedelta(seconds=20 * DAY + int(rng.random() * 320 * DAY))
        closed = opened + timedelta(seconds=3600 + int(rng.random() * 14 * DAY))
        outcome = _OUTCOMES[int(rng.random() * len(_OUTCOMES))]
        key = f"demo-task-{account_id}"
        rows.append(
            (key, playbook, step, account_id, csm_id, title.format(name), "", "normal", "done",
             opened + timedelta(days=2), opened, closed, closed, outcome, email)
        )  # fmt: skip
    bulk_insert(conn, models.tasks, _TASK_COLUMNS, iter(rows))


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
    rng: random.Random, churn: random.Random, ids: range, teams: _CsmTeams, today: date, first_contact_id: int
) -> list[AccountPlan]:
    plans = []
    next_contact = first_contact_id
    for account_id in ids:
        plan = _plan_account(rng, churn, account_id, teams, today, next_contact)
        next_contact += plan.contact_count
        plans.append(plan)
    return plans


def _plan_account(
    rng: random.Random, churn: random.Random, account_id: int, teams: _CsmTeams, today: date, first_contact_id: int
) -> AccountPlan:
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
    health = 86 + int(draw() * 14) if pattern == ADVOCATE else 35 + int(draw() * 56)
    seats = max(3, round(arr / price))
    if pattern == EXPANSION:  # every seat in use: all contacts active, one seat each
        seats = contact_count
    stage = _lifecycle_stage(rng, today, start, renewal)
    csm_id = _draw_csm(rng, tier, teams)
    draw()  # once a 2 % churn draw: kept, so the accounts stream (and every seed's store) stays put
    # Churn over the past year, from its own stream: the account left at a renewal it did not
    # sign, so its contract ended that day and its history stops there (demo/events.py fades
    # its activity before it).
    churned_on = None
    if churn.random() < CHURN_ODDS.get(pattern, BASE_CHURN_ODDS):
        churned_on = today - timedelta(days=1 + int(churn.random() * 330))
        renewal = churned_on
        start = renewal - timedelta(days=365 * churn.randint(1, 2))
        stage = "churned"
    return AccountPlan(
        id=account_id,
        name=name,
        slug=re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"),
        tier=tier,
        plan=plan_name,
        arr=arr,
        seats_purchased=seats,
        lifecycle_stage=stage,
        contract_start=start,
        renewal_date=renewal,
        csm_id=csm_id,
        status="churned" if churned_on else "active",
        timezone=timezone,
        locale=locale,
        traits={
            "industry": industry,
            "region": REGIONS[timezone.split("/")[0]],
            "employees": _draw_employees(rng, tier),
            "health_score": health,
        },
        pattern=pattern,
        quiet_for=rng.randint(61 * DAY, 150 * DAY) if pattern == QUIET else 0,
        first_contact_id=first_contact_id,
        contact_count=contact_count,
        churned_on=churned_on,
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
    for threshold, pattern in PATTERN_CUM:
        if draw < threshold:
            return pattern
    return NORMAL


# --- contacts -----------------------------------------------------------------------------------


def _contact_rows(rng: random.Random, plans: Sequence[AccountPlan]) -> Iterator[Row]:
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
