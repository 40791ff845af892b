"""A health model → one INSERT … SELECT that scores every account at `now`.

Set-based: each component's metric is one subquery grouped by account (over the indexes of
`events`, `contacts`, `ledger`), left-joined to `accounts`; the points, the weighted score, the
band and the components' JSON (value, points, why) are expressions over those columns. Nothing is
computed per account in Python. Only what happened at or before `now` counts, so running it at a
past `now` gives the score that day would have had.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Float,
    Insert,
    Select,
    String,
    and_,
    case,
    cast,
    distinct,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.selectable import Subquery

from engine.compile.conditions import json_value, property_filter
from engine.compile.sql_functions import json_object_of
from engine.health.spec import (
    TIERS,
    Component,
    CountOf,
    DistinctOf,
    EmailOf,
    HealthSpec,
    LatestOf,
    RolesOf,
    ShareOf,
)
from engine.store.models import accounts, contacts, events, health_history, ledger, message_events

_MEASURES = {"opened": ("open", "click"), "clicked": ("click",), "bounced": ("bounce",)}


def scored_accounts(day: date) -> ColumnElement[bool]:
    """The accounts a day's scores cover: customers that day — their contract started by then, and
    not churned by then (an account that churned later was still a customer that day; one churned
    on an unknown date is left out)."""
    # Before its contract an account has no activity and cannot churn: scoring it would count a
    # non-customer as an unhealthy account that stayed.
    return and_(
        accounts.c.contract_start <= day,
        or_(accounts.c.status != "churned", accounts.c.churned_on > day),
    )


def _in_window(name: str, now: datetime, within: Any) -> list[ColumnElement[bool]]:
    return [events.c.name == name, events.c.occurred_at > now - within, events.c.occurred_at <= now]


def metric_subquery(key: str, component: Component, now: datetime) -> tuple[Subquery, ColumnElement[Any]]:
    """The metric of one component: (subquery with `account_id`, the value over it and `accounts`)."""
    m = component.metric
    label = f"m_{key}"
    if isinstance(m, ShareOf):
        s = m.active_share
        active = (
            select(events.c.account_id.label("account_id"), func.count(distinct(events.c.contact_id)).label("n"))
            .where(*_in_window(s.name, now, s.within), events.c.contact_id.is_not(None))
            .group_by(events.c.account_id)
        )
        if s.of == "seats":
            sub = active.subquery(label)
            total: ColumnElement[Any] = accounts.c.seats_purchased
        else:
            people = (
                select(contacts.c.account_id.label("account_id"), func.count().label("total"))
                .group_by(contacts.c.account_id)
                .subquery(f"{label}_c")
            )
            joined = active.subquery(f"{label}_a")
            sub = (
                select(
                    people.c.account_id.label("account_id"),
                    joined.c.n.label("n"),
                    people.c.total.label("total"),
                )
                .select_from(people.outerjoin(joined, joined.c.account_id == people.c.account_id))
                .subquery(label)
            )
            total = sub.c.total
        share = cast(func.coalesce(sub.c.n, 0), Float) * 100.0 / total
        return sub, case((total > 0, share), else_=None)
    if isinstance(m, CountOf | DistinctOf):
        w = m.count if isinstance(m, CountOf) else m.distinct
        counted = (
            func.count()
            if isinstance(m, CountOf)
            else func.count(distinct(json_value(events.c.properties, m.distinct.property, "")))
        )
        sub = (
            select(events.c.account_id.label("account_id"), counted.label("n"))
            .where(*_in_window(w.name, now, w.within), *property_filter(w.where, now))
            .group_by(events.c.account_id)
            .subquery(label)
        )
        return sub, cast(func.coalesce(sub.c.n, 0), Float)
    if isinstance(m, LatestOf):
        lt = m.latest
        last = (
            select(events.c.account_id.label("account_id"), func.max(events.c.occurred_at).label("at"))
            .where(*_in_window(lt.name, now, lt.within))
            .group_by(events.c.account_id)
            .subquery(f"{label}_at")
        )
        # Two events at the same moment: the larger value (a group, so one row per account).
        value = func.max(json_value(events.c.properties, lt.property, 0.0))
        sub = (
            select(events.c.account_id.label("account_id"), value.label("v"))
            .select_from(
                events.join(last, and_(events.c.account_id == last.c.account_id, events.c.occurred_at == last.c.at))
            )
            .where(events.c.name == lt.name)
            .group_by(events.c.account_id)
            .subquery(label)
        )
        return sub, cast(sub.c.v, Float)
    if isinstance(m, EmailOf):
        e = m.email
        hit = (
            select(message_events.c.send_key)
            .where(message_events.c.event.in_(_MEASURES[e.measure]), message_events.c.occurred_at <= now)
            .distinct()
            .subquery(f"{label}_hit")
        )
        sub = (
            select(
                ledger.c.account_id.label("account_id"),
                func.count().label("sent"),
                func.count(hit.c.send_key).label("hits"),
            )
            .select_from(ledger.outerjoin(hit, hit.c.send_key == ledger.c.send_key))
            .where(
                ledger.c.kind == "email",
                ledger.c.status == "sent",
                ledger.c.created_at > now - e.within,
                ledger.c.created_at <= now,
            )
            .group_by(ledger.c.account_id)
            .subquery(label)
        )
        return sub, case((sub.c.sent > 0, cast(sub.c.hits, Float) * 100.0 / sub.c.sent), else_=None)
    assert isinstance(m, RolesOf)
    r = m.roles_active
    sub = (
        select(contacts.c.account_id.label("account_id"), func.count(distinct(contacts.c.role)).label("n"))
        .select_from(contacts.join(events, events.c.contact_id == contacts.c.id))
        .where(contacts.c.role.in_(r.roles), *_in_window(r.name, now, r.within))
        .group_by(contacts.c.account_id)
        .subquery(label)
    )
    return sub, cast(func.coalesce(sub.c.n, 0), Float)


def points_of(component: Component, value: ColumnElement[Any]) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """(points, why) of a component's value: the first rule that holds, `missing` or `otherwise`."""
    missing = component.otherwise if component.missing is None else component.missing
    whens: list[tuple[ColumnElement[bool], Any]] = [(value.is_(None), missing)]
    whys: list[tuple[ColumnElement[bool], Any]] = [(value.is_(None), _text("no value"))]
    for rule in component.points:
        bound = value >= rule.at_least if rule.at_least is not None else value <= rule.at_most
        whens.append((bound, rule.points))
        whys.append((bound, _text(rule.describe())))
    points = case(*whens, else_=component.otherwise)
    return cast(points, Float), case(*whys, else_=_text("no rule met"))


def _text(value: str) -> ColumnElement[Any]:
    # Typed: jsonb_build_object cannot infer the type of an untyped parameter.
    return cast(literal(value, String), String)


def weight_of(spec: HealthSpec, key: str, tier: ColumnElement[Any]) -> ColumnElement[Any] | float:
    """The component's normalised weight for the account's tier (the tier's weights sum to 1)."""
    component = spec.components[key]

    def share(t: str | None) -> float:
        total = sum(c.weight_of(t) for c in spec.components.values())
        return component.weight_of(t) / total

    shares = {t: share(t) for t in TIERS}
    other = share(None)
    if all(v == other for v in shares.values()):
        return other
    return case(*((tier == t, v) for t, v in shares.items()), else_=other)


def band_of(spec: HealthSpec, score: ColumnElement[Any]) -> ColumnElement[Any]:
    """The band's name of a score (the last band starts at 0: every score has one)."""
    *upper, last = spec.bands
    return case(*((score >= b.at_least, b.name) for b in upper), else_=last.name)


def score_select(spec: HealthSpec, now: datetime) -> Select[Any]:
    """account_id, score, band, components (JSON) for every account scored at `now`."""
    values: list[Any] = [accounts.c.id.label("account_id"), accounts.c.tier.label("tier")]
    source: Any = accounts
    for key, component in spec.components.items():
        sub, value = metric_subquery(key, component, now)
        source = source.outerjoin(sub, sub.c.account_id == accounts.c.id)
        values.append(value.label(f"v_{key}"))
    measured = select(*values).select_from(source).where(scored_accounts(now.date())).subquery("measured")

    pointed_cols: list[Any] = [measured.c.account_id, measured.c.tier]
    for key, component in spec.components.items():
        points, why = points_of(component, measured.c[f"v_{key}"])
        pointed_cols += [measured.c[f"v_{key}"], points.label(f"p_{key}"), why.label(f"w_{key}")]
    pointed = select(*pointed_cols).subquery("pointed")

    terms = [pointed.c[f"p_{key}"] * weight_of(spec, key, pointed.c.tier) for key in spec.components]
    score = terms[0]
    for term in terms[1:]:
        score = score + term
    parts: list[Any] = []
    for key in spec.components:
        inner = json_object_of(
            literal_column("'value'"),
            pointed.c[f"v_{key}"],
            literal_column("'points'"),
            pointed.c[f"p_{key}"],
            literal_column("'why'"),
            pointed.c[f"w_{key}"],
        )
        parts += [literal_column(f"'{key}'"), inner]  # keys match ^[a-z][a-z0-9_]*$: safe as literals
    scored = select(
        pointed.c.account_id, cast(score, Float).label("score"), json_object_of(*parts).label("components")
    ).subquery("scored")
    return select(scored.c.account_id, scored.c.score, band_of(spec, scored.c.score).label("band"), scored.c.components)


def insert_scores(spec: HealthSpec, now: datetime) -> Insert:
    """INSERT INTO health_history … SELECT: every account's score on `now`'s day."""
    day: date = now.date()
    chosen = score_select(spec, now).subquery("day_scores")
    rows = select(
        chosen.c.account_id,
        literal(day, health_history.c.computed_on.type).label("computed_on"),
        chosen.c.score,
        chosen.c.band,
        chosen.c.components,
    )
    return insert(health_history).from_select(["account_id", "computed_on", "score", "band", "components"], rows)
