"""Conditions: who is in a segment, and the state a trigger waits for.

A condition is a one-key mapping — `all`, `any`, `not`, `events`, `no_events`, `first_event`,
`last_event`, `trend`, `active_share`, `active_contacts`, `health` — or field names with their
operators (several field keys in one mapping must all hold).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, RootModel, Tag, model_validator

from engine.spec.base import Duration, Scalar, SpecModel

BOOLEAN_KEYS = ("all", "any", "not")
EVENT_KEYS = (
    "events", "no_events", "first_event", "last_event", "trend", "active_share", "active_contacts", "health"
)  # fmt: skip
TRIGGER_KEYS = ("date", "event", "became_true", "cooldown", "schedule")
JOURNEY_KEYS = ("engaged", "since_entry")
"""Conditions about the enrollment itself: valid in goals, exits and step conditions only."""


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
    contains: str | None = None
    """Text fields: contains this text (case-sensitive)."""
    between: tuple[Scalar, Scalar] | None = None
    """Between two values, both included: `[10, 50]`."""
    within_next: Duration | None = None
    """Date fields: between now and this far ahead (`renewal_date: {within_next: 90d}`)."""
    within_last: Duration | None = None
    """Date fields: between this long ago and now (`contract_start: {within_last: 30d}`)."""
    older_than: Duration | None = None
    """Date fields: earlier than this long ago (`contract_start: {older_than: 365d}`)."""
    further_than: Duration | None = None
    """Date fields: later than this far ahead (`renewal_date: {further_than: 180d}`)."""

    @model_validator(mode="after")
    def _at_least_one(self) -> FieldOps:
        if not self.model_fields_set:
            raise ValueError(
                "give at least one operator: eq, ne, lt, lte, gt, gte, in, not_in, exists, contains, "
                "between, within_next, within_last, older_than, further_than"
            )
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
    which explicitly. `traits.NAME` reads the key NAME of the JSON traits, exactly as written:
    `traits.plan.tier` is the key `plan.tier`, not a path into nested objects.
    """

    root: dict[str, FieldTest] = Field(min_length=1)

    # In the JSON Schema, reserved words are not field names: keeps `oneOf` unambiguous for editors.
    model_config = ConfigDict(
        json_schema_extra={
            "propertyNames": {"not": {"enum": [*BOOLEAN_KEYS, *EVENT_KEYS, *TRIGGER_KEYS, *JOURNEY_KEYS]}}
        }
    )


class PerTier(SpecModel):
    """A threshold that depends on the account's tier: `{high_touch: 10, low_touch: 20}`."""

    high_touch: int | None = Field(default=None, ge=0)
    """Threshold for high-touch accounts."""
    low_touch: int | None = Field(default=None, ge=0)
    """Threshold for low-touch accounts."""
    tech_touch: int | None = Field(default=None, ge=0)
    """Threshold for tech-touch accounts."""
    other: int | None = Field(default=None, ge=0)
    """Threshold for any other tier; unset: those accounts never match."""

    def thresholds(self) -> dict[str | None, int]:
        """Tier → threshold; the key None stands for every other tier."""
        out: dict[str | None, int] = {}
        for tier in ("high_touch", "low_touch", "tech_touch"):
            value = getattr(self, tier)
            if value is not None:
                out[tier] = value
        if self.other is not None:
            out[None] = self.other
        return out


Threshold = Annotated[int | PerTier, Field(union_mode="left_to_right")]
"""A count, or a count per tier."""

PropertyFilter = dict[str, FieldTest]
"""Event properties and their operators: `{score: {lte: 6}}`."""


class EventWindow(SpecModel):
    """Events named `name` in the last `within`, counted per subject: at least and/or at most."""

    name: str = Field(min_length=1)
    """The event's name, e.g. `support_ticket_opened`."""
    within: Duration
    """How far back to count, e.g. `7d`."""
    at_least: Threshold | None = None
    """The smallest count that matches (a number, or one per tier). Default 1 when `at_most` is unset."""
    at_most: int | None = Field(default=None, ge=0)
    """The largest count that matches; zero events match too."""
    where: PropertyFilter | None = None
    """Only events whose properties match: `{score: {lte: 6}}`."""
    per: Literal["subject", "account", "contact"] = "subject"
    """What is counted: the subject's events (default), the whole account's, or any one contact's
    (for account subjects: some contact of the account reaches the count)."""


class NoEventWindow(SpecModel):
    """No event named `name` in the last `within`."""

    name: str = Field(min_length=1)
    """The event's name, e.g. `login`."""
    within: Duration
    """How far back to look, e.g. `60d`."""
    where: PropertyFilter | None = None
    """Only events whose properties match."""
    per: Literal["subject", "account"] = "subject"
    """Whose events: the subject's (default) or the whole account's."""


class Occurrence(SpecModel):
    """When the first (or last) event named `name` happened, relative to now."""

    name: str = Field(min_length=1)
    """The event's name, e.g. `login`."""
    more_recent_than: Duration | None = None
    """It happened within this long before now."""
    older_than: Duration | None = None
    """It happened earlier than this long before now."""
    where: PropertyFilter | None = None
    """Only events whose properties match."""
    per: Literal["subject", "account"] = "subject"
    """Whose events: the subject's (default) or the whole account's."""

    @model_validator(mode="after")
    def _bounded(self) -> Occurrence:
        if self.more_recent_than is None and self.older_than is None:
            raise ValueError("give more_recent_than, older_than, or both")
        return self


class Trend(SpecModel):
    """The count in the last `window` against the window before it, e.g. logins down 25 %."""

    name: str = Field(min_length=1)
    """The event's name, e.g. `login`."""
    window: Duration
    """Length of each of the two windows compared, e.g. `30d`."""
    drop_at_least: float | None = Field(default=None, gt=0, le=100)
    """Matches when the count fell by at least this many percent."""
    rise_at_least: float | None = Field(default=None, gt=0)
    """Matches when the count rose by at least this many percent."""
    min_base: int = Field(default=10, ge=1)
    """The previous window needs at least this many events, so 1 → 0 is not a 100 % drop."""
    where: PropertyFilter | None = None
    """Only events whose properties match."""

    @model_validator(mode="after")
    def _one_direction(self) -> Trend:
        if (self.drop_at_least is None) == (self.rise_at_least is None):
            raise ValueError("give exactly one of drop_at_least, rise_at_least")
        return self


class ActiveShare(SpecModel):
    """The share of an account's contacts (or purchased seats) with an event in the last `within`."""

    name: str = Field(min_length=1)
    """The event that counts as active, e.g. `login`."""
    within: Duration
    """How far back, e.g. `30d`."""
    of: Literal["contacts", "seats"] = "contacts"
    """The denominator: the account's contacts, or its `seats_purchased`."""
    at_least: float | None = Field(default=None, ge=0)
    """Matches at or above this percentage (`80` is 80 %)."""
    at_most: float | None = Field(default=None, ge=0)
    """Matches at or below this percentage."""

    @model_validator(mode="after")
    def _bound(self) -> ActiveShare:
        if self.at_least is None and self.at_most is None:
            raise ValueError("give at_least, at_most, or both (percentages)")
        return self


class ActiveContacts(SpecModel):
    """How many different contacts of the account had an event named `name` in the last `within`."""

    name: str = Field(min_length=1)
    """The event that counts as active, e.g. `login`."""
    within: Duration
    """How far back, e.g. `14d`."""
    at_least: int | None = Field(default=None, ge=1)
    """Matches when at least this many different contacts had the event."""
    at_most: int | None = Field(default=None, ge=0)
    """Matches when at most this many did (accounts where nobody did match too): fewer than 3 is `at_most: 2`."""
    where: PropertyFilter | None = None
    """Only events whose properties match."""

    @model_validator(mode="after")
    def _bound(self) -> ActiveContacts:
        if self.at_least is None and self.at_most is None:
            raise ValueError("give at_least, at_most, or both (numbers of contacts)")
        return self


class HealthTest(SpecModel):
    """The account's latest health score (or one component's points) at or before now: below or
    above a number, in a band, or dropped from its highest in a window."""

    component: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    """Test this component's points (0–100) instead of the score: `adoption`."""
    below: float | None = None
    """The score (or points) is below this."""
    above: float | None = None
    """The score (or points) is above this."""
    band: str | list[str] | None = None
    """The score's band is this one (or one of these): `at_risk`."""
    dropped_by: float | None = Field(default=None, gt=0)
    """The score (or points) is at least this much below its highest of the last `within`."""
    within: Duration | None = None
    """The window `dropped_by` looks back over, e.g. `30d`."""

    @model_validator(mode="after")
    def _coherent(self) -> HealthTest:
        if self.below is None and self.above is None and self.band is None and self.dropped_by is None:
            raise ValueError("give below, above, band or dropped_by (with within)")
        if (self.dropped_by is None) != (self.within is None):
            raise ValueError("dropped_by and within go together: {dropped_by: 15, within: 30d}")
        if self.band is not None and self.component is not None:
            raise ValueError("a band belongs to the score, not to a component")
        return self


class Engagement(SpecModel):
    """What a recipient did with an email sent by an earlier step of the same enrollment."""

    step: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    """The id of the earlier email step."""
    with_: Literal["delivered", "opened", "clicked"] = Field(alias="with")
    """The engagement: delivered, opened (implies delivered) or clicked (implies opened)."""
    within: Duration | None = None
    """Only engagement within this long after the email was sent counts."""


class SinceEntry(SpecModel):
    """An event of the subject since it entered this journey."""

    name: str = Field(min_length=1)
    """The event's name, e.g. `renewal_signed`."""
    where: PropertyFilter | None = None
    """Only events whose properties match."""


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
    """Counts events in a window."""

    events: EventWindow
    """The event window to count in."""


class NoEventsCondition(SpecModel):
    """No events in a window."""

    no_events: NoEventWindow
    """The event window that must be empty."""


class FirstEventCondition(SpecModel):
    """The first event of a kind happened in a time range."""

    first_event: Occurrence
    """The first occurrence and when it must have happened."""


class LastEventCondition(SpecModel):
    """The most recent event of a kind happened in a time range (it has happened at least once)."""

    last_event: Occurrence
    """The last occurrence and when it must have happened."""


class TrendCondition(SpecModel):
    """Event volume changed between two consecutive windows."""

    trend: Trend
    """The event, windows and change that match."""


class ActiveShareCondition(SpecModel):
    """Enough (or too few) of an account's contacts or seats are active."""

    active_share: ActiveShare
    """The activity, the denominator and the bounds."""


class ActiveContactsCondition(SpecModel):
    """Enough (or too few) different contacts of the account did something recently."""

    active_contacts: ActiveContacts
    """The activity, the window and the bounds."""


class HealthCondition(SpecModel):
    """The account's health: the latest score of `health_history` at or before now."""

    health: HealthTest
    """The score, band, component or drop that matches."""


class EngagedCondition(SpecModel):
    """A recipient engaged with an earlier email of this enrollment (goals, exits, step conditions)."""

    engaged: Engagement
    """The email step and the engagement that matches."""


class SinceEntryCondition(SpecModel):
    """An event happened since the subject entered (goals, exits, step conditions)."""

    since_entry: SinceEntry
    """The event that matches."""


def condition_kind(value: Any) -> str | None:
    """The union tag of a raw condition: its single reserved key, else 'field'."""
    if isinstance(value, dict):
        if len(value) == 1:
            (key,) = value
            if key in BOOLEAN_KEYS or key in EVENT_KEYS or key in JOURNEY_KEYS:
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
    | Annotated[FirstEventCondition, Tag("first_event")]
    | Annotated[LastEventCondition, Tag("last_event")]
    | Annotated[TrendCondition, Tag("trend")]
    | Annotated[ActiveShareCondition, Tag("active_share")]
    | Annotated[ActiveContactsCondition, Tag("active_contacts")]
    | Annotated[HealthCondition, Tag("health")]
    | Annotated[EngagedCondition, Tag("engaged")]
    | Annotated[SinceEntryCondition, Tag("since_entry")]
    | Annotated[FieldCondition, Tag("field")],
    Discriminator(
        condition_kind,
        custom_error_type="invalid_condition",
        custom_error_message=(
            "a condition is a non-empty mapping: {field: {op: value}}, {all: [...]}, {any: [...]}, "
            "{not: {...}}, {events: {...}}, {no_events: {...}}, {first_event: {...}}, "
            "{last_event: {...}}, {trend: {...}}, {active_share: {...}}, {active_contacts: {...}}, {health: {...}}, "
            "{engaged: {...}} or {since_entry: {...}}"
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
    "first_event": FirstEventCondition,
    "last_event": LastEventCondition,
    "trend": TrendCondition,
    "active_share": ActiveShareCondition,
    "active_contacts": ActiveContactsCondition,
    "health": HealthCondition,
    "engaged": EngagedCondition,
    "since_entry": SinceEntryCondition,
    "field": FieldCondition,
}

for _model in (AllOf, AnyOf, NotOf):
    _model.model_rebuild()
