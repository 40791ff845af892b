"""Segments, triggers and conditions of the playbook language in plain English, for reviewers.

One sentence per construct, nested conditions joined with "and" / "or"; anything the describer
does not know is shown as its kind rather than guessed at.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine.spec import conditions as c
from engine.spec import playbook as p

_OPS = {
    "eq": "is",
    "ne": "is not",
    "lt": "is less than",
    "lte": "is at most",
    "gt": "is more than",
    "gte": "is at least",
    "in_": "is one of",
    "not_in": "is none of",
    "contains": "contains",
    "between": "is between",
    "within_next": "falls within the next",
    "within_last": "fell within the last",
    "older_than": "is older than",
    "further_than": "is further away than",
}


def duration(value: timedelta) -> str:
    """`7 days`, `12 hours`, `1 day`."""
    seconds = int(value.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds and seconds % size == 0:
            n = seconds // size
            return f"{sign}{n} {unit}{'s' if n != 1 else ''}"
    return f"{sign}{seconds} seconds"


def _value(value: Any) -> str:
    if isinstance(value, timedelta):
        return duration(value)
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value)
    return repr(value) if isinstance(value, str) else str(value)


def _field_test(name: str, test: Any) -> str:
    if not isinstance(test, c.FieldOps):
        return f"{name} is {_value(test)}"
    parts = []
    for op in test.model_fields_set:
        value = getattr(test, op)
        if op == "exists":
            parts.append(f"{name} {'is set' if value else 'is not set'}")
        elif op == "between":
            parts.append(f"{name} is between {_value(value[0])} and {_value(value[1])}")
        else:
            parts.append(f"{name} {_OPS.get(op, op)} {_value(value)}")
    return " and ".join(sorted(parts))


def _where(where: dict[str, Any] | None) -> str:
    if not where:
        return ""
    return " where " + " and ".join(_field_test(k, v) for k, v in where.items())


def _threshold(value: int | c.PerTier | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return ", ".join(f"{tier or 'other tiers'}: {n}" for tier, n in value.thresholds().items()) + " by tier"


def describe_condition(cond: Any) -> str:
    """One sentence for a condition of the playbook language."""
    if isinstance(cond, c.FieldCondition):
        return " and ".join(_field_test(k, v) for k, v in cond.root.items())
    if isinstance(cond, c.AllOf):
        return "(" + " and ".join(describe_condition(x) for x in cond.all) + ")"
    if isinstance(cond, c.AnyOf):
        return "(" + " or ".join(describe_condition(x) for x in cond.any) + ")"
    if isinstance(cond, c.NotOf):
        return f"not {describe_condition(cond.not_)}"
    if isinstance(cond, c.EventsCondition):
        w = cond.events
        bounds = []
        if w.at_least is not None:
            bounds.append(f"at least {_threshold(w.at_least)}")
        if w.at_most is not None:
            bounds.append(f"at most {w.at_most}")
        many = " and ".join(bounds) or "at least 1"
        return f"{many} '{w.name}' events{_where(w.where)} in the last {duration(w.within)}"
    if isinstance(cond, c.NoEventsCondition):
        w2 = cond.no_events
        return f"no '{w2.name}' event{_where(w2.where)} in the last {duration(w2.within)}"
    if isinstance(cond, c.FirstEventCondition | c.LastEventCondition):
        o = cond.first_event if isinstance(cond, c.FirstEventCondition) else cond.last_event
        which = "first" if isinstance(cond, c.FirstEventCondition) else "last"
        when = []
        if o.more_recent_than is not None:
            when.append(f"less than {duration(o.more_recent_than)} ago")
        if o.older_than is not None:
            when.append(f"more than {duration(o.older_than)} ago")
        return f"the {which} '{o.name}' event{_where(o.where)} was {' and '.join(when)}"
    if isinstance(cond, c.TrendCondition):
        t = cond.trend
        change = (
            f"dropped by at least {t.drop_at_least} %" if t.drop_at_least else f"rose by at least {t.rise_at_least} %"
        )
        return f"'{t.name}' events {change} over {duration(t.window)} against the {duration(t.window)} before"
    if isinstance(cond, c.ActiveShareCondition):
        a = cond.active_share
        bounds = [
            f"at least {a.at_least} %" if a.at_least is not None else "",
            f"at most {a.at_most} %" if a.at_most is not None else "",
        ]
        return f"{' and '.join(b for b in bounds if b)} of {a.of} did '{a.name}' in the last {duration(a.within)}"
    if isinstance(cond, c.ActiveContactsCondition):
        ac = cond.active_contacts
        bounds = [
            f"at least {ac.at_least}" if ac.at_least is not None else "",
            f"at most {ac.at_most}" if ac.at_most is not None else "",
        ]
        many = " and ".join(b for b in bounds if b)
        return f"{many} contacts did '{ac.name}'{_where(ac.where)} in the last {duration(ac.within)}"
    if isinstance(cond, c.EngagedCondition):
        e = cond.engaged
        within = f" within {duration(e.within)}" if e.within else ""
        return f"the email of step '{e.step}' was {e.with_}{within}"
    if isinstance(cond, c.SinceEntryCondition):
        return f"a '{cond.since_entry.name}' event{_where(cond.since_entry.where)} happened since entering"
    return type(cond).__name__


def describe_trigger(trigger: Any) -> str:
    """When a subject enters, in one sentence."""
    if isinstance(trigger, p.DateTrigger):
        offset = trigger.offset
        when = (
            "on"
            if not offset
            else (f"{duration(-offset)} before" if offset < timedelta(0) else f"{duration(offset)} after")
        )
        yearly = " (every year)" if trigger.every_year else ""
        return f"{when} the date in {trigger.date}{yearly}, within a window of {duration(trigger.window)}"
    if isinstance(trigger, p.EventTrigger):
        e = trigger.event
        return f"when a '{e.name}' event{_where(e.where)} happened in the last {duration(e.within)}"
    if isinstance(trigger, p.BecameTrueTrigger):
        cooldown = f" (cooldown {duration(trigger.cooldown)})" if trigger.cooldown else ""
        return f"when this becomes true: {describe_condition(trigger.became_true)}{cooldown}"
    if isinstance(trigger, p.ScheduleTrigger):
        s = trigger.schedule
        return f"on the schedule '{s.cron}' ({s.timezone})"
    return f"while this holds: {describe_condition(trigger)}"


def describe_segment(segment: Any, subject: str) -> str:
    """Who is eligible, in one sentence."""
    if segment is None:
        return f"every {subject}"
    return f"every {subject} where {describe_condition(segment)}"
