"""The health model's language: components, each a metric mapped to 0–100 points by declared
thresholds and weighted (per tier if need be), and named bands.

```yaml
health:
  components:
    adoption:
      metric: {active_share: {name: login, within: 30d, of: seats}}
      points: [{at_least: 60, points: 100}, {at_least: 30, points: 60}]
      otherwise: 20
      weight: {high_touch: 30, other: 40}
  bands:
    - {name: healthy, label: Healthy, at_least: 75}
    - {name: at_risk, label: At risk, at_least: 50}
    - {name: unhealthy, label: Unhealthy, at_least: 0}
```

Metrics reuse the playbook language's words (`name`, `within`, `where`, `of`), so a component
reads like the condition a CSM would write for it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from engine.spec.base import Duration, SpecModel
from engine.spec.conditions import PropertyFilter

IDENT = r"^[a-z][a-z0-9_]*$"
TIERS = ("high_touch", "low_touch", "tech_touch")


class ShareMetric(SpecModel):
    """The percentage of the account's seats (or contacts) with an event in the last `within`."""

    name: str = Field(min_length=1)
    """The event that counts as active, e.g. `login`."""
    within: Duration
    """How far back, e.g. `30d`."""
    of: Literal["seats", "contacts"] = "seats"
    """The denominator: `seats_purchased`, or the account's contacts. None of them: no value."""


class CountMetric(SpecModel):
    """How many events named `name` the account had in the last `within` (zero when none)."""

    name: str = Field(min_length=1)
    """The event's name, e.g. `support_ticket_opened`."""
    within: Duration
    """How far back, e.g. `30d`."""
    where: PropertyFilter | None = None
    """Only events whose properties match: `{priority: P1}`."""


class DistinctMetric(SpecModel):
    """How many different values of an event property the account had in the last `within`
    (key features used: `{name: feature_used, property: feature}`)."""

    name: str = Field(min_length=1)
    """The event's name, e.g. `feature_used`."""
    property: str = Field(min_length=1)
    """The property whose different values are counted, e.g. `feature`."""
    within: Duration
    """How far back, e.g. `30d`."""
    where: PropertyFilter | None = None
    """Only events whose properties match: `{feature: {in: [api, automations]}}`."""


class LatestMetric(SpecModel):
    """A number property of the account's latest event named `name` in the last `within` (the
    latest NPS score, the days an invoice is overdue); no such event: no value."""

    name: str = Field(min_length=1)
    """The event's name, e.g. `nps_response`."""
    property: str = Field(min_length=1)
    """The number property read, e.g. `score`."""
    within: Duration
    """How far back, e.g. `180d`."""


class EmailMetric(SpecModel):
    """The percentage of emails sent to the account in the last `within` that were opened,
    clicked or bounced (from the provider's events); no email sent: no value."""

    within: Duration
    """How far back, e.g. `90d`."""
    measure: Literal["opened", "clicked", "bounced"] = "opened"
    """What is counted: opened (a click counts as opened), clicked, or bounced."""


class RolesMetric(SpecModel):
    """How many of the `roles` have at least one contact with an event named `name` in the last
    `within` (champion and executive sponsor present and active: 0, 1 or 2)."""

    roles: list[Literal["admin", "champion", "user", "exec_sponsor", "billing"]] = Field(min_length=1)
    """The contact roles that should be present and active."""
    name: str = Field(min_length=1)
    """The event that counts as active, e.g. `login`."""
    within: Duration
    """How far back, e.g. `30d`."""


class ShareOf(SpecModel):
    """Metric: share of seats or contacts active."""

    active_share: ShareMetric
    """The activity and the denominator."""


class CountOf(SpecModel):
    """Metric: events in a window."""

    count: CountMetric
    """The events counted."""


class DistinctOf(SpecModel):
    """Metric: different values of an event property in a window."""

    distinct: DistinctMetric
    """The events and the property."""


class LatestOf(SpecModel):
    """Metric: a number property of the latest event."""

    latest: LatestMetric
    """The event and the property."""


class EmailOf(SpecModel):
    """Metric: email engagement."""

    email: EmailMetric
    """The window and the measure."""


class RolesOf(SpecModel):
    """Metric: key roles present and active."""

    roles_active: RolesMetric
    """The roles and the activity."""


METRIC_KEYS = ("active_share", "count", "distinct", "latest", "email", "roles_active")


def _metric_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return next(iter(value)) if len(value) == 1 and next(iter(value)) in METRIC_KEYS else None
    classes: tuple[type, ...] = (ShareOf, CountOf, DistinctOf, LatestOf, EmailOf, RolesOf)
    for key, cls in zip(METRIC_KEYS, classes, strict=True):
        if isinstance(value, cls):
            return key
    return None


Metric = Annotated[
    Annotated[ShareOf, Tag("active_share")]
    | Annotated[CountOf, Tag("count")]
    | Annotated[DistinctOf, Tag("distinct")]
    | Annotated[LatestOf, Tag("latest")]
    | Annotated[EmailOf, Tag("email")]
    | Annotated[RolesOf, Tag("roles_active")],
    Discriminator(
        _metric_kind,
        custom_error_type="invalid_metric",
        custom_error_message="a metric is one of {active_share: …}, {count: …}, {distinct: …}, {latest: …}, "
        "{email: …} or {roles_active: …}",
    ),
]
"""What a component measures, per account."""


class Rule(SpecModel):
    """Points for a metric value: the first rule whose bound holds gives its points."""

    at_least: float | None = None
    """The value is at least this."""
    at_most: float | None = None
    """The value is at most this."""
    points: float = Field(ge=0, le=100)
    """The component's points (0–100) when the bound holds."""

    @model_validator(mode="after")
    def _one_bound(self) -> Rule:
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError("give exactly one of at_least, at_most")
        return self

    def describe(self) -> str:
        """The rule in words, for the `why` of a component: '>= 60'."""
        return f">= {self.at_least:g}" if self.at_least is not None else f"<= {self.at_most:g}"


class Weight(SpecModel):
    """A weight per tier: `{high_touch: 30, other: 20}`; a tier not named takes `other`."""

    high_touch: float | None = Field(default=None, ge=0)
    """Weight for high-touch accounts."""
    low_touch: float | None = Field(default=None, ge=0)
    """Weight for low-touch accounts."""
    tech_touch: float | None = Field(default=None, ge=0)
    """Weight for tech-touch accounts."""
    other: float = Field(default=0, ge=0)
    """Weight for every tier not named (0 when unset)."""

    def of(self, tier: str | None) -> float:
        """The weight for `tier` (None: any other tier)."""
        value = getattr(self, tier) if tier in TIERS else None
        return self.other if value is None else float(value)


class Component(SpecModel):
    """One component of the score: a metric, its points by threshold, and its weight."""

    label: str | None = None
    """How people read its name (default: the key, capitalised)."""
    metric: Metric
    """What is measured per account."""
    points: list[Rule] = Field(min_length=1)
    """Thresholds → points, tried in order: the first that holds gives the points."""
    otherwise: float = Field(default=0, ge=0, le=100)
    """Points when the value meets no rule."""
    missing: float | None = Field(default=None, ge=0, le=100)
    """Points when there is no value (no survey answered, no email sent); default `otherwise`."""
    weight: float | Weight = Field(default=1, union_mode="left_to_right")
    """The component's weight in the score: a number, or one per tier."""

    def weight_of(self, tier: str | None) -> float:
        """This component's weight for `tier` (None: tiers not named)."""
        return self.weight.of(tier) if isinstance(self.weight, Weight) else float(self.weight)


class Band(SpecModel):
    """A named band of scores: from `at_least` up to the next band's threshold."""

    name: str = Field(pattern=IDENT)
    """The band's id, as playbooks name it: `at_risk`."""
    label: str | None = None
    """How people read it: `At risk` (default: the name)."""
    at_least: float = Field(ge=0, le=100)
    """The lowest score in the band."""


class HealthSpec(SpecModel):
    """The health model: components and bands (the `health:` key of `health.yaml`)."""

    components: dict[Annotated[str, Field(pattern=IDENT)], Component] = Field(min_length=1)
    """The components by name: `adoption`, `support`, `survey`, …"""
    bands: list[Band] = Field(min_length=1)
    """The bands from the highest threshold down; the last starts at 0."""

    @model_validator(mode="after")
    def _coherent(self) -> HealthSpec:
        lows = [b.at_least for b in self.bands]
        if lows != sorted(lows, reverse=True) or len(set(lows)) != len(lows):
            raise ValueError("list bands from the highest threshold down, each threshold different")
        if lows[-1] != 0:
            raise ValueError("the last band must start at 0, so every score has a band")
        if len({b.name for b in self.bands}) != len(self.bands):
            raise ValueError("band names must be different")
        for tier in (*TIERS, None):
            if sum(c.weight_of(tier) for c in self.components.values()) <= 0:
                raise ValueError(f"the weights of {tier or 'other'} accounts add up to 0: give one a weight")
        return self

    def band_names(self) -> list[str]:
        """The bands' names, highest first."""
        return [b.name for b in self.bands]


class HealthFile(SpecModel):
    """The project's `health.yaml`: the health model, and other sections other features own."""

    health: HealthSpec
    """The health model."""
    funnel: Any = None
    """The lifecycle funnel's stages, read by the funnel's own loader."""
