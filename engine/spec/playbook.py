"""A playbook file: who (segment), when (trigger), how often (entry) and what (steps)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from engine.spec.base import Duration, SignedDuration, SpecModel
from engine.spec.conditions import Condition, PropertyFilter, condition_kind
from engine.spec.policy import PlaybookPolicy
from engine.spec.steps import IDENTIFIER, TEMPLATE_NAME, Step, step_ids

__all__ = ["IDENTIFIER", "TEMPLATE_NAME", "step_ids"]


class DateTrigger(SpecModel):
    """Fires when a date field is `offset` away from today, e.g. 90 days before `renewal_date`.

    Each value of the date is its own occurrence: next year's renewal date enrolls again.
    """

    date: str
    """A date field of the subject or its account, e.g. `renewal_date` or `contract_start`."""
    offset: SignedDuration = Field(default=timedelta(0), json_schema_extra={"default": "0d"})
    """When to fire relative to the date: `-90d` is 90 days before, `30d` 30 days after."""
    window: Duration = Field(default=timedelta(days=7), json_schema_extra={"default": "7d"})
    """How long after the moment a late tick may still fire (catch-up after downtime)."""
    every_year: bool = False
    """Fire on every anniversary of the date (from the first one on), not only on the date itself."""


class EventFilter(SpecModel):
    """Which events start an enrollment: each occurrence is its own trigger."""

    name: str = Field(min_length=1)
    """The event's name, e.g. `nps_response`."""
    where: PropertyFilter | None = None
    """Only events whose properties match: `{score: {lte: 6}}`."""
    within: Duration = Field(default=timedelta(days=2), json_schema_extra={"default": "2d"})
    """How old an event may be and still start an enrollment (catch-up after downtime)."""


class EventTrigger(SpecModel):
    """Fires once for every matching event: the event's id is the occurrence."""

    event: EventFilter
    """The events that start an enrollment."""


class BecameTrueTrigger(SpecModel):
    """Fires when a condition turns true for a subject (edge-triggered).

    The subject enters when the condition holds now and did not at the previous evaluation; it can
    enter again only after the condition has been false again and `cooldown` has passed since its
    last entry.
    """

    became_true: Condition
    """The condition whose change from false to true starts an enrollment."""
    cooldown: Duration = Field(default=timedelta(0), json_schema_extra={"default": "0d"})
    """The shortest time between two entries of the same subject."""


class Schedule(SpecModel):
    """A cron schedule in a time zone."""

    cron: str = Field(min_length=9)
    """A cron expression: minute hour day-of-month month day-of-week, e.g. `0 9 * * MON`."""
    timezone: str = "UTC"
    """The IANA time zone the cron expression is read in, e.g. `Asia/Seoul`."""
    window: Duration = Field(default=timedelta(days=1), json_schema_extra={"default": "1d"})
    """How late a tick may still act on a scheduled time (catch-up after downtime)."""


class ScheduleTrigger(SpecModel):
    """Fires for the whole segment at each scheduled time: a recurring send."""

    schedule: Schedule
    """When to fire."""


def _trigger_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in ("date", "event", "became_true", "schedule"):
            if key in value:
                return key
    by_class: dict[type, str] = {
        DateTrigger: "date",
        EventTrigger: "event",
        BecameTrueTrigger: "became_true",
        ScheduleTrigger: "schedule",
    }
    if type(value) in by_class:
        return by_class[type(value)]
    return "condition" if condition_kind(value) is not None else None


Trigger = Annotated[
    Annotated[DateTrigger, Tag("date")]
    | Annotated[EventTrigger, Tag("event")]
    | Annotated[BecameTrueTrigger, Tag("became_true")]
    | Annotated[ScheduleTrigger, Tag("schedule")]
    | Annotated[Condition, Tag("condition")],
    Discriminator(
        _trigger_kind,
        custom_error_type="invalid_trigger",
        custom_error_message=(
            "a trigger is {date: FIELD, offset: -90d}, {event: {name: ...}}, {became_true: CONDITION}, "
            "{schedule: {cron: ...}} or a condition that holds, such as {events: {...}} or {all: [...]}"
        ),
    ),
]
"""When a subject enters: a date-relative moment, an event, a condition that holds or becomes
true, or a schedule."""


class Entry(SpecModel):
    """How often one subject may enter this playbook."""

    once_ever: bool = False
    """Never enter a second time, whatever the occurrence."""
    once_per: Duration | None = None
    """At most one entry per this period."""
    allow_concurrent: bool = False
    """Let a subject be in this playbook more than once at the same time (one enrollment per
    occurrence). Default: a subject with an active enrollment does not enter again."""


class Goal(SpecModel):
    """What success looks like: an event since entry, or a condition. Reaching it ends the
    enrollment as *converted* (counted per variant in experiments)."""

    event: str | None = None
    """An event of the subject since it entered, e.g. `renewal_signed`."""
    where: PropertyFilter | None = None
    """Only events whose properties match."""
    condition: Condition | None = None
    """Or: a condition on the subject's data."""
    within: Duration | None = None
    """Only a goal reached within this long after entry counts; after it the journey goes on."""

    @model_validator(mode="after")
    def _one(self) -> Goal:
        if (self.event is None) == (self.condition is None):
            raise ValueError("give exactly one of event, condition")
        return self


class Versions(SpecModel):
    """What happens to enrollments in flight when the playbook's content changes."""

    on_change: Literal["continue", "migrate", "exit"] = "continue"
    """`continue` the version they entered with; `migrate` to the new version at the step with
    the same id; or `exit` them."""
    on_missing_step: Literal["exit", "next"] = "exit"
    """When migrating and the current step no longer exists: `exit`, or go on with the step that
    follows the last step both versions share."""


class Limits(SpecModel):
    """The circuit breaker: the most one tick may enroll before the playbook is held for a person
    to look (`touchflow resume PLAYBOOK`). A tick trips it only when it would exceed both limits."""

    max_share: float = Field(default=10, gt=0, le=100)
    """The largest share of the segment one tick may enroll, in percent (`5` is 5 %)."""
    max_enrollments: int = Field(default=500, ge=0)
    """The largest number of subjects one tick may enroll."""


class Playbook(SpecModel):
    """A tech-touch playbook: a segment, a trigger, entry rules and a sequence of steps."""

    id: str = Field(pattern=IDENTIFIER, max_length=100)
    """Unique, stable identifier: lower case letters, digits, `-` and `_`."""
    name: str = Field(min_length=1)
    """Human-readable name."""
    owner: str | None = None
    """Who to ask about this playbook (an email address or a team)."""
    status: Literal["draft", "active", "paused"] = "active"
    """Only `active` playbooks run."""
    priority: int = Field(default=50, ge=0, le=100)
    """0-100; higher wins when caps allow only some messages."""
    hypothesis: str | None = None
    """What this playbook is expected to change, in a sentence."""
    description: str | None = None
    """Longer notes for reviewers."""
    subject: Literal["account", "contact"] = "account"
    """What is enrolled: an account, or a single contact."""
    segment: Condition | None = None
    """Who is eligible; unset means every subject."""
    trigger: Trigger
    """When an eligible subject enters."""
    entry: Entry = Entry()
    """How often one subject may enter (default: once per trigger occurrence, one at a time)."""
    steps: list[Step] = Field(min_length=1)
    """What happens, in order."""
    goal: Goal | None = None
    """Ends the enrollment as converted; checked before every step."""
    exit_: Condition | None = Field(default=None, alias="exit")
    """Ends the enrollment as exited when it holds; checked before every step."""
    versions: Versions = Versions()
    """How enrollments in flight follow changes to this file."""
    policy: PlaybookPolicy = PlaybookPolicy()
    """This playbook's own caps and calendar overrides (the project's are in touchflow.yaml)."""
    # Excluded from the canonical dump that versions hash: tuning a ceiling is not a new journey.
    limits: Limits = Field(default_factory=Limits, exclude=True)
    """The circuit breaker's ceiling on what one tick may enroll (default: 10 % of the segment
    and 500 subjects, both exceeded to trip; a playbook's first enrolling tick is exempt)."""
