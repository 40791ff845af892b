"""Conditions → SQLAlchemy boolean expressions over the subject's row, its account and events.

A fixed table of operators; values are always bound parameters, never SQL text. Event
constructs are shaped for the store's indexes and for set-based plans:

- existence (`events` with at_least 1, `no_events`): EXISTS / NOT EXISTS correlated on
  events(account_id|contact_id, name, occurred_at) — an index probe per subject;
- counts, first/last occurrence and trends: `subject IN (SELECT owner FROM events WHERE name = …
  AND occurred_at > … GROUP BY owner HAVING …)` — one uncorrelated pass over the window, using
  the (name, occurred_at) index;
- per-tier thresholds: one such subquery per tier, OR-ed under `tier = …`;
- distinct active contacts: `account IN (… GROUP BY account_id HAVING count(DISTINCT contact_id)
  >= n)`, and for an upper bound `NOT IN (… > n)`, so accounts where nobody did it match too.

Traits the project declares (engine/spec/traits.py) read as their type, whatever they are
compared with; other traits read as the type of the value they are compared with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Date,
    Table,
    and_,
    case,
    distinct,
    exists,
    false,
    func,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.sql import Select

from engine.compile.health import describe_health, health_condition
from engine.compile.json_keys import Kind, json_member, path_safe
from engine.compile.sql_functions import (
    json_boolean,
    json_date,
    json_number,
    json_string,
    json_text,
    shifted,
    text_contains,
)
from engine.spec.base import format_duration
from engine.spec.conditions import (
    ActiveContactsCondition,
    ActiveShareCondition,
    AllOf,
    AnyOf,
    EngagedCondition,
    EventsCondition,
    EventWindow,
    FieldCondition,
    FieldOps,
    FirstEventCondition,
    HealthCondition,
    LastEventCondition,
    NoEventsCondition,
    NotOf,
    Occurrence,
    PerTier,
    PropertyFilter,
    SinceEntryCondition,
    TrendCondition,
)
from engine.spec.traits import NO_TRAITS, TraitTypes
from engine.store.catalogue import FieldInfo, resolve_field
from engine.store.models import contacts, events, ledger, message_events

Subject = Literal["account", "contact"]


@dataclass(frozen=True)
class SqlContext:
    """The tables a condition refers to, and the moment it is evaluated at."""

    subject: Subject
    subject_table: Table
    account_table: Table
    now: datetime
    enrollment_table: Table | None = None
    """Set where a condition is about an enrollment (goals, exits, step conditions)."""
    traits: TraitTypes = NO_TRAITS
    """The project's declared trait types."""

    def column(self, name: str, sample: Any = None) -> ColumnElement[Any]:
        """The column (or JSON trait: of its declared type, else typed like `sample`) a field name refers to."""
        info = resolve_field(name, self.subject, self.traits)
        if info is None:  # validation rejects these first; this is a programming error
            raise KeyError(f"unknown field {name!r} for {self.subject} subjects")
        table = self.account_table if info.table == "account" else self.subject_table
        column = table.c[info.name]
        if info.key and info.declared:
            return declared_trait(column, info)
        return json_value(column, info.key, sample) if info.key else column

    def owner(self, per: str) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
        """(events column, subject-side column) tying events to the subject, per subject or account."""
        if self.subject == "contact" and per != "account":
            return events.c.contact_id, self.subject_table.c.id
        subject_account = self.subject_table.c.account_id if self.subject == "contact" else self.subject_table.c.id
        return events.c.account_id, subject_account


def json_value(document: Any, key: str, sample: Any) -> ColumnElement[Any]:
    """`key` of a JSON object column, read as the type of `sample` (the value it is compared with).

    The key is always one literal key, never a JSON path (engine/compile/json_keys.py)."""
    kind: Kind = "boolean" if isinstance(sample, bool) else "number" if isinstance(sample, int | float) else "text"
    if not path_safe(key):
        return json_member(document, key, kind)
    element = document[key]
    if kind == "boolean":
        return json_boolean(element)
    if kind == "number":
        return json_number(element)
    return json_text(element)


_DECLARED_READS = {"date": json_date, "number": json_number, "boolean": json_boolean, "string": json_string}


def declared_trait(document: Any, info: FieldInfo) -> ColumnElement[Any]:
    """A declared trait (its key a plain path label, see engine/spec/traits.py) read as its type."""
    read: ColumnElement[Any] = _DECLARED_READS[info.kind](document[info.key])
    return read


def _sample(test: Any) -> Any:
    """A value of the test, to type a JSON extraction by."""
    if not isinstance(test, FieldOps):
        return test
    for op in ("eq", "ne", "lt", "lte", "gt", "gte", "contains"):
        if getattr(test, op) is not None:
            return getattr(test, op)
    for op in ("in_", "not_in", "between"):
        values = getattr(test, op)
        if values:
            return values[0]
    return ""


def _today_or_now(column: ColumnElement[Any], now: datetime, delta: timedelta) -> date | datetime:
    return (now + delta).date() if isinstance(column.type, Date) else now + delta


_OPS: dict[str, Callable[[ColumnElement[Any], Any, datetime], ColumnElement[bool]]] = {
    "eq": lambda c, v, _: c == v,
    "ne": lambda c, v, _: c != v,
    "lt": lambda c, v, _: c < v,
    "lte": lambda c, v, _: c <= v,
    "gt": lambda c, v, _: c > v,
    "gte": lambda c, v, _: c >= v,
    "in_": lambda c, v, _: c.in_(v),
    "not_in": lambda c, v, _: c.not_in(v),
    "exists": lambda c, v, _: c.is_not(None) if v else c.is_(None),
    "contains": lambda c, v, _: text_contains(c, v),
    "between": lambda c, v, _: c.between(v[0], v[1]),
    "within_next": lambda c, d, now: c.between(_today_or_now(c, now, timedelta(0)), _today_or_now(c, now, d)),
    "within_last": lambda c, d, now: c.between(_today_or_now(c, now, -d), _today_or_now(c, now, timedelta(0))),
    "older_than": lambda c, d, now: c < _today_or_now(c, now, -d),
    "further_than": lambda c, d, now: c > _today_or_now(c, now, d),
}


def field_test(column: ColumnElement[Any], test: Any, now: datetime) -> ColumnElement[bool]:
    """The predicate of one field test (operators, or a bare value meaning eq)."""
    if not isinstance(test, FieldOps):
        equal: ColumnElement[bool] = column == test
        return equal
    return and_(*(_OPS[op](column, getattr(test, op), now) for op in sorted(test.model_fields_set)))


def compile_condition(cond: Any, ctx: SqlContext) -> ColumnElement[bool]:
    """The SQL predicate of a spec condition."""
    if isinstance(cond, AllOf):
        return and_(true(), *(compile_condition(c, ctx) for c in cond.all))
    if isinstance(cond, AnyOf):
        return or_(false(), *(compile_condition(c, ctx) for c in cond.any))
    if isinstance(cond, NotOf):
        return not_(compile_condition(cond.not_, ctx))
    if isinstance(cond, EventsCondition):
        return _event_window(cond.events, ctx)
    if isinstance(cond, NoEventsCondition):
        w = cond.no_events
        return not_(_exists_in_window(ctx, w.name, w.within, w.where, w.per))
    if isinstance(cond, FirstEventCondition | LastEventCondition):
        first = isinstance(cond, FirstEventCondition)
        return _occurrence(cond.first_event if first else cond.last_event, first, ctx)  # type: ignore[union-attr]
    if isinstance(cond, TrendCondition):
        return _trend(cond, ctx)
    if isinstance(cond, ActiveShareCondition):
        return _active_share(cond, ctx)
    if isinstance(cond, ActiveContactsCondition):
        return _active_contacts(cond, ctx)
    if isinstance(cond, HealthCondition):
        return health_condition(cond.health, ctx.owner("account")[1], ctx.now.date())
    if isinstance(cond, FieldCondition):
        return and_(*(field_test(ctx.column(name, _sample(test)), test, ctx.now) for name, test in cond.root.items()))
    if isinstance(cond, EngagedCondition | SinceEntryCondition):
        return _journey_condition(cond, ctx)
    raise TypeError(f"not a condition: {cond!r}")


_ENGAGEMENT = {"delivered": ("delivered", "open", "click"), "opened": ("open", "click"), "clicked": ("click",)}


def _journey_condition(cond: EngagedCondition | SinceEntryCondition, ctx: SqlContext) -> ColumnElement[bool]:
    e = ctx.enrollment_table
    if e is None:  # validation allows these only in goals, exits and step conditions
        raise ValueError("engaged / since_entry need an enrollment")
    if isinstance(cond, SinceEntryCondition):
        owner, subject_side = ctx.owner("subject")
        since = cond.since_entry
        return exists().where(
            owner == subject_side,
            events.c.name == since.name,
            events.c.occurred_at > e.c.enrolled_at,
            events.c.occurred_at <= ctx.now,
            *property_filter(since.where, ctx.now),
        )
    engaged = cond.engaged
    in_time = [message_events.c.occurred_at <= ctx.now]
    if engaged.within is not None:
        in_time.append(
            message_events.c.occurred_at <= shifted(ledger.c.created_at, int(engaged.within.total_seconds()))
        )
    return exists().where(
        ledger.c.enrollment_id == e.c.id,
        ledger.c.step_id == engaged.step,
        message_events.c.send_key == ledger.c.send_key,
        message_events.c.event.in_(_ENGAGEMENT[engaged.with_]),
        *in_time,
    )


def property_filter(where: PropertyFilter | None, now: datetime) -> list[ColumnElement[bool]]:
    """Predicates on events.properties."""
    return [
        field_test(json_value(events.c.properties, key, _sample(test)), test, now)
        for key, test in (where or {}).items()
    ]


def _window(ctx: SqlContext, name: str, since: datetime, where: PropertyFilter | None) -> list[ColumnElement[bool]]:
    return [
        events.c.name == name,
        events.c.occurred_at > since,
        events.c.occurred_at <= ctx.now,
        *property_filter(where, ctx.now),
    ]


def _exists_in_window(
    ctx: SqlContext, name: str, within: timedelta, where: PropertyFilter | None, per: str
) -> ColumnElement[bool]:
    owner, subject_side = ctx.owner(per)
    return exists().where(owner == subject_side, *_window(ctx, name, ctx.now - within, where))


def _event_window(w: EventWindow, ctx: SqlContext) -> ColumnElement[bool]:
    per_contact = w.per == "contact" and ctx.subject == "account"
    owner, subject_side = ctx.owner("account" if per_contact else w.per)
    in_window = _window(ctx, w.name, ctx.now - w.within, w.where)
    if per_contact:  # account-level events (no contact) belong to no one contact
        in_window.append(events.c.contact_id.is_not(None))
    group = [owner, events.c.contact_id] if per_contact else [owner]

    def at_least(n: int) -> ColumnElement[bool]:
        if n <= 0:
            return true()
        if n == 1:
            return exists().where(owner == subject_side, *in_window)
        # Owner-less (account-level) events never form a group: NOT IN over a NULL is never true.
        counted = select(owner).where(owner.is_not(None), *in_window).group_by(*group).having(func.count() >= n)
        return subject_side.in_(counted)

    parts: list[ColumnElement[bool]] = []
    threshold = w.at_least if w.at_least is not None else (1 if w.at_most is None else 0)
    if isinstance(threshold, PerTier):
        parts.append(_per_tier(threshold, ctx, at_least))
    else:
        parts.append(at_least(threshold))
    if w.at_most is not None:
        # NOT IN over a list holding NULL is never true: leave owner-less events out of it.
        too_many = select(owner).where(owner.is_not(None), *in_window).group_by(*group).having(func.count() > w.at_most)
        parts.append(subject_side.not_in(too_many))
    return and_(*parts)


def _per_tier(threshold: PerTier, ctx: SqlContext, build: Callable[[int], ColumnElement[bool]]) -> ColumnElement[bool]:
    tier = ctx.account_table.c.tier
    by_tier = threshold.thresholds()
    named = [t for t in by_tier if t is not None]
    branches = [and_(tier == t, build(by_tier[t])) for t in named]
    if None in by_tier:
        branches.append(and_(tier.not_in(named) if named else true(), build(by_tier[None])))
    return or_(false(), *branches)


def _occurrence(o: Occurrence, first: bool, ctx: SqlContext) -> ColumnElement[bool]:
    owner, subject_side = ctx.owner(o.per)
    moment = func.min(events.c.occurred_at) if first else func.max(events.c.occurred_at)
    having: list[ColumnElement[bool]] = []
    if o.more_recent_than is not None:
        having.append(moment > ctx.now - o.more_recent_than)
    if o.older_than is not None:
        having.append(moment < ctx.now - o.older_than)
    filters = [owner.is_not(None), events.c.name == o.name, events.c.occurred_at <= ctx.now]
    filters += property_filter(o.where, ctx.now)
    return subject_side.in_(select(owner).where(*filters).group_by(owner).having(*having))


def _trend(cond: TrendCondition, ctx: SqlContext) -> ColumnElement[bool]:
    t = cond.trend
    owner, subject_side = ctx.owner("subject")
    split = ctx.now - t.window
    current = func.sum(case((events.c.occurred_at > split, 1), else_=0))
    previous = func.sum(case((events.c.occurred_at <= split, 1), else_=0))
    if t.drop_at_least is not None:
        changed = current * 100 <= previous * (100 - t.drop_at_least)
    else:
        changed = current * 100 >= previous * (100 + (t.rise_at_least or 0))
    window = _window(ctx, t.name, ctx.now - 2 * t.window, t.where)
    trended = select(owner).where(owner.is_not(None), *window).group_by(owner).having(previous >= t.min_base, changed)
    return subject_side.in_(trended)


def _active_share(cond: ActiveShareCondition, ctx: SqlContext) -> ColumnElement[bool]:
    s = cond.active_share
    _, subject_account = ctx.owner("account")
    # Aliases keep these subqueries uncorrelated from the outer accounts/contacts.
    acc = ctx.account_table.alias("share_account")
    active = (
        select(events.c.account_id.label("account_id"), func.count(distinct(events.c.contact_id)).label("n"))
        .where(*_window(ctx, s.name, ctx.now - s.within, None), events.c.contact_id.is_not(None))
        .group_by(events.c.account_id)
        .subquery("active_contacts")
    )
    n = func.coalesce(active.c.n, 0)
    source = acc.outerjoin(active, active.c.account_id == acc.c.id)
    if s.of == "seats":
        total: ColumnElement[Any] = acc.c.seats_purchased
        valid = acc.c.seats_purchased > 0
    else:
        people = contacts.alias("share_contact")
        head = (
            select(people.c.account_id.label("account_id"), func.count().label("total"))
            .group_by(people.c.account_id)
            .subquery("contact_count")
        )
        source = source.join(head, head.c.account_id == acc.c.id)
        total, valid = head.c.total, head.c.total > 0
    bounds: list[ColumnElement[bool]] = [valid]
    if s.at_least is not None:
        bounds.append(n * 100 >= total * s.at_least)
    if s.at_most is not None:
        bounds.append(n * 100 <= total * s.at_most)
    return subject_account.in_(select(acc.c.id).select_from(source).where(*bounds))


def _active_contacts(cond: ActiveContactsCondition, ctx: SqlContext) -> ColumnElement[bool]:
    a = cond.active_contacts
    _, subject_account = ctx.owner("account")
    in_window = [
        events.c.account_id.is_not(None),  # NOT IN over a list holding NULL is never true
        events.c.contact_id.is_not(None),  # account-level events belong to no contact
        *_window(ctx, a.name, ctx.now - a.within, a.where),
    ]
    people = func.count(distinct(events.c.contact_id))

    def accounts_where(having: ColumnElement[bool]) -> Select[Any]:
        return select(events.c.account_id).where(*in_window).group_by(events.c.account_id).having(having)

    parts: list[ColumnElement[bool]] = []
    if a.at_least is not None:
        parts.append(subject_account.in_(accounts_where(people >= a.at_least)))
    if a.at_most is not None:
        # NOT IN the accounts over the bound: an account where nobody had the event matches too.
        parts.append(subject_account.not_in(accounts_where(people > a.at_most)))
    return and_(*parts)


# --- words for the audit ------------------------------------------------------------------------


def describe_condition(cond: Any) -> str:
    """A short English rendering for the audit: why a subject matched."""
    if isinstance(cond, AllOf):
        return " and ".join(_paren(describe_condition(c), c) for c in cond.all)
    if isinstance(cond, AnyOf):
        return " or ".join(_paren(describe_condition(c), c) for c in cond.any)
    if isinstance(cond, NotOf):
        return f"not ({describe_condition(cond.not_)})"
    if isinstance(cond, EventsCondition):
        w = cond.events
        count = f"{w.at_least}+" if isinstance(w.at_least, int) else "per-tier threshold of" if w.at_least else ""
        most = f" (at most {w.at_most})" if w.at_most is not None else ""
        return f"{count or 'some'} {w.name}{_where(w.where)} in {format_duration(w.within)}{most}".replace("  ", " ")
    if isinstance(cond, NoEventsCondition):
        return f"no {cond.no_events.name}{_where(cond.no_events.where)} in {format_duration(cond.no_events.within)}"
    if isinstance(cond, FirstEventCondition | LastEventCondition):
        first = isinstance(cond, FirstEventCondition)
        o = cond.first_event if first else cond.last_event  # type: ignore[union-attr]
        bounds = [
            f"within {format_duration(o.more_recent_than)}" if o.more_recent_than else "",
            f"over {format_duration(o.older_than)} ago" if o.older_than else "",
        ]
        return f"{'first' if first else 'last'} {o.name} " + " and ".join(b for b in bounds if b)
    if isinstance(cond, TrendCondition):
        t = cond.trend
        move = f"down {t.drop_at_least:g}%" if t.drop_at_least else f"up {t.rise_at_least:g}%"
        return f"{t.name} {move}+ over {format_duration(t.window)}"
    if isinstance(cond, ActiveShareCondition):
        s = cond.active_share
        bound = f">= {s.at_least:g}%" if s.at_least is not None else f"<= {s.at_most:g}%"
        return f"{bound} of {s.of} active ({s.name} in {format_duration(s.within)})"
    if isinstance(cond, ActiveContactsCondition):
        a = cond.active_contacts
        bounds = [
            f"at least {a.at_least}" if a.at_least is not None else "",
            f"at most {a.at_most}" if a.at_most is not None else "",
        ]
        who = " and ".join(b for b in bounds if b)
        return f"{who} contacts with {a.name}{_where(a.where)} in {format_duration(a.within)}"
    if isinstance(cond, HealthCondition):
        return describe_health(cond.health)
    if isinstance(cond, EngagedCondition):
        e = cond.engaged
        return f"{e.with_} the email of step {e.step}" + (f" within {format_duration(e.within)}" if e.within else "")
    if isinstance(cond, SinceEntryCondition):
        return f"{cond.since_entry.name} since entry{_where(cond.since_entry.where)}"
    if isinstance(cond, FieldCondition):
        parts: list[str] = []
        for name, test in cond.root.items():
            if isinstance(test, FieldOps):
                parts.extend(
                    f"{name} {op.rstrip('_')} {_show(getattr(test, op))}" for op in sorted(test.model_fields_set)
                )
            else:
                parts.append(f"{name} = {_show(test)}")
        return " and ".join(parts)
    return repr(cond)


def _show(value: Any) -> str:
    return format_duration(value) if isinstance(value, timedelta) else repr(value)


def _where(where: PropertyFilter | None) -> str:
    return f" with {FieldCondition(root=where).model_dump()}" if where else ""


def _paren(text: str, cond: Any) -> str:
    return f"({text})" if isinstance(cond, AllOf | AnyOf) else text
