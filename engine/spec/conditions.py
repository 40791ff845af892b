"""Conditions: who is in a segment, and the state a trigger waits for.

A condition is a one-key mapping: `all`, `any`, `not`, `events`, `no_events`, or field names
with their operators (several field keys in one mapping must all hold).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Field, RootModel, Tag, model_validator

from engine.spec.base import Duration, Scalar, SpecModel

BOOLEAN_KEYS = ("all", "any", "not")
EVENT_KEYS = ("events", "no_events")


class FieldOps(SpecModel):
    """Operators applied to one field; every operator given must hold."""

    eq: Scalar | None = None
    """Equal to this value."""
    ne: Scalar | None = None
    """Not equal to this value (missing values do not match)."""
    lt: Scalar | None = None
    """Less than this value."""
    lte: Scalar | None = None
    """Less than or equal to this value."""
    gt: Scalar | None = None
    """Greater than this value."""
    gte: Scalar | None = None
    """Greater than or equal to this value."""
    in_: list[Scalar] | None = Field(default=None, alias="in", min_length=1)
    """One of these values."""
    not_in: list[Scalar] | None = Field(default=None, min_length=1)
    """None of these values (missing values do not match)."""
    exists: bool | None = None
    """true: the field has a value; false: it is empty."""

    @model_validator(mode="after")
    def _at_least_one(self) -> FieldOps:
        if not self.model_fields_set:
            raise ValueError("give at least one operator: eq, ne, lt, lte, gt, gte, in, not_in, exists")
        return self


def _ops_or_value(value: Any) -> str:
    return "ops" if isinstance(value, dict | FieldOps) else "value"


FieldTest = Annotated[
    Annotated[FieldOps, Tag("ops")] | Annotated[Scalar, Tag("value")],
    Discriminator(_ops_or_value),
]
"""Operators for a field, or a bare value meaning `eq`."""


class FieldCondition(RootModel[dict[str, FieldTest]]):
    """Field names mapped to operators, e.g. `{tier: {in: [low_touch, tech_touch]}}`.

    A bare value means `eq`: `{tier: tech_touch}`. For contact subjects, a bare field name is the
    contact's field if it has one, else the account's; `account.` and `contact.` prefixes say
    which explicitly.
    """

    root: dict[str, FieldTest] = Field(min_length=1)


class EventWindow(SpecModel):
    """At least `at_least` events named `name` in the last `within`."""

    name: str = Field(min_length=1)
    """The event's name, e.g. `support_ticket_opened`."""
    within: Duration
    """How far back to count, e.g. `7d`."""
    at_least: int = Field(default=1, ge=1)
    """The smallest count that matches."""


class NoEventWindow(SpecModel):
    """No event named `name` in the last `within`."""

    name: str = Field(min_length=1)
    """The event's name, e.g. `login`."""
    within: Duration
    """How far back to look, e.g. `60d`."""


class AllOf(SpecModel):
    """Every condition holds."""

    all: list[Condition] = Field(min_length=1)
    """The conditions that must all hold."""


class AnyOf(SpecModel):
    """At least one condition holds."""

    any: list[Condition] = Field(min_length=1)
    """The conditions of which at least one must hold."""


class NotOf(SpecModel):
    """The condition does not hold."""

    not_: Condition = Field(alias="not")
    """The condition that must not hold."""


class EventsCondition(SpecModel):
    """Counts events in a window, per subject (per account, or per contact for contact subjects)."""

    events: EventWindow
    """The event window to count in."""


class NoEventsCondition(SpecModel):
    """No events in a window, per subject."""

    no_events: NoEventWindow
    """The event window that must be empty."""


def condition_kind(value: Any) -> str | None:
    """The union tag of a raw condition: its single reserved key, else 'field'."""
    if isinstance(value, dict):
        if len(value) == 1:
            (key,) = value
            if key in BOOLEAN_KEYS or key in EVENT_KEYS:
                return str(key)
        return "field" if value else None
    for tag, cls in _TAGS.items():
        if isinstance(value, cls):
            return tag
    return None


Condition = Annotated[
    Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[NotOf, Tag("not")]
    | Annotated[EventsCondition, Tag("events")]
    | Annotated[NoEventsCondition, Tag("no_events")]
    | Annotated[FieldCondition, Tag("field")],
    Discriminator(
        condition_kind,
        custom_error_type="invalid_condition",
        custom_error_message=(
            "a condition is a non-empty mapping: {field: {op: value}}, {all: [...]}, "
            "{any: [...]}, {not: {...}}, {events: {...}} or {no_events: {...}}"
        ),
    ),
]
"""A condition on the subject, its account, or its events."""

_TAGS: dict[str, type] = {
    "all": AllOf,
    "any": AnyOf,
    "not": NotOf,
    "events": EventsCondition,
    "no_events": NoEventsCondition,
    "field": FieldCondition,
}

for _model in (AllOf, AnyOf, NotOf):
    _model.model_rebuild()
