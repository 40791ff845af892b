"""Sending policy as written: frequency caps, quiet hours, business days, the global send rate
and CSM workload. The project-wide policy lives in `touchflow.yaml` under `policy:`; a playbook
may override parts of it under its own `policy:`.

```yaml
# touchflow.yaml
policy:
  timezone: Asia/Seoul            # when neither the contact nor the account has one
  caps:
    contact: {day: 1, week: 3}    # at most 1 email in any 24 h and 3 in any 7 days, all playbooks
    account: {week: 5}
  quiet_hours: {start: "20:00", end: "08:00"}   # recipient's local time; may wrap midnight
  business_days: [mon, tue, wed, thu, fri]
  holidays: [2026-12-25, 2027-01-01]
  rate_limit: 50                  # messages per second across every dispatcher
  csm:
    assign: least_loaded          # or owner, round_robin
    max_open_tasks: 25            # more wait in the team's queue
```
"""

from __future__ import annotations

from datetime import date
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from engine.spec.base import SpecModel
from engine.spec.steps import CLOCK, WEEKDAYS, Weekday


class CapLimits(SpecModel):
    """Most emails in any rolling window; unset means no cap for that window."""

    day: int | None = Field(default=None, ge=0)
    """At most this many in any 24 hours."""
    week: int | None = Field(default=None, ge=0)
    """At most this many in any 7 days."""
    month: int | None = Field(default=None, ge=0)
    """At most this many in any 30 days."""


class Caps(SpecModel):
    """Frequency caps per contact and per account."""

    contact: CapLimits = CapLimits()
    """Emails one contact receives."""
    account: CapLimits = CapLimits()
    """Emails all contacts of one account receive together."""


class QuietHours(SpecModel):
    """Local hours in which no email goes out; a message due then is deferred, not dropped."""

    start: str = Field(default="20:00", pattern=CLOCK)
    """When the quiet period begins, HH:MM in the recipient's time zone."""
    end: str = Field(default="08:00", pattern=CLOCK)
    """When it ends, HH:MM; earlier than `start` means it runs past midnight."""

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError(f"start and end are both {self.start}: quiet hours must have a length")
        return self


class CsmPolicy(SpecModel):
    """How CSM tasks are assigned and capped."""

    assign: Literal["owner", "round_robin", "least_loaded"] = "owner"
    """`owner`: the account's CSM. `round_robin` / `least_loaded`: within the owner's team."""
    max_open_tasks: int | None = Field(default=None, ge=1)
    """Open tasks one CSM may hold; more go to the team queue (audited as over capacity)."""
    due_in_business_days: bool = True
    """Count a task's `due` in business days (skipping weekends and holidays)."""


class Policy(SpecModel):
    """The project's sending policy (`touchflow.yaml` → `policy`)."""

    timezone: str = "UTC"
    """IANA time zone used when neither the contact nor its account has one."""
    caps: Caps = Caps()
    """Caps across every playbook."""
    quiet_hours: QuietHours | None = None
    """Hours in which no email goes out (unset: none)."""
    business_days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)
    """Days of the week on which email goes out."""
    holidays: list[date] = Field(default_factory=list)
    """Dates (in the recipient's time zone) on which no email goes out."""
    rate_limit: float | None = Field(default=None, gt=0)
    """Messages per second across every dispatcher; unset means as fast as the channel allows."""
    rate_limiter: Literal["auto", "database", "prefect"] = "auto"
    """Who keeps the rate: Prefect's global concurrency limit `touchflow-send` (needs a Prefect
    server), the store, or `auto`: Prefect when PREFECT_API_URL is set, else the store."""
    csm: CsmPolicy = CsmPolicy()
    """CSM task assignment and workload."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"'{value}' is not an IANA time zone, e.g. Asia/Seoul or Europe/London") from None
        return value


class PlaybookPolicy(SpecModel):
    """A playbook's own policy: caps of its own, and overrides of the project's calendar."""

    caps: Caps | None = None
    """Caps counting only this playbook's emails, on top of the project's."""
    project_caps: bool = True
    """Whether the project's caps apply (turn off only for messages a customer asked for)."""
    quiet_hours: QuietHours | Literal[False] | None = None
    """Replace the project's quiet hours; `false` turns them off for this playbook."""
    business_days: list[Weekday] | None = Field(default=None, min_length=1)
    """Replace the project's business days."""
    tasks_when_suppressed: bool = False
    """Still open this playbook's CSM tasks for a do-not-contact account (emails never go out)."""
