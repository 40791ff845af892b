"""The steps of a journey: email, task, wait, branch, update, webhook, exit.

Every step may carry `id` (stable name for send keys, the audit, branches and version moves) and
`if` (a condition: when it does not hold, the step is skipped and the journey goes on).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import Discriminator, Field, Tag, model_validator

from engine.spec.base import Duration, Scalar, SignedDuration, SpecModel, format_duration
from engine.spec.conditions import Condition

Role = Literal["admin", "champion", "user", "exec_sponsor", "billing"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = get_args(Weekday)
"""Monday first: `WEEKDAYS[d.weekday()]` is the name of date `d`'s day."""
IDENTIFIER = r"^[a-z0-9][a-z0-9_-]*$"
TEMPLATE_NAME = r"^[a-z0-9_/-]+$"
CLOCK = r"^([01]\d|2[0-3]):[0-5]\d$"


class Recipients(SpecModel):
    """Which contacts of the account receive an email."""

    role: list[Role] = Field(min_length=1)
    """Contact roles to send to: admin, champion, user, exec_sponsor, billing."""


METRICS = ("delivered", "opened", "clicked", "converted", "unsubscribed", "bounced")
"""What an experiment can compare arms on; `converted` is the playbook's goal within its window."""


class Arm(SpecModel):
    """One arm of an experiment: what its subjects get instead of the step as written."""

    id: str = Field(pattern=IDENTIFIER)
    """The arm's name, e.g. `a`, `short-subject`, `holdout`."""
    weight: float = Field(default=1, ge=0)
    """Share of subjects, relative to the other arms' weights (0 stops assigning to it)."""
    holdout: bool = False
    """Subjects in this arm receive none of the playbook's emails (this step and the later ones),
    but are tracked: the lift of sending at all."""
    subject: str | dict[str, str] | None = None
    """A subject line replacing the template's; a template: `{{ account.name }}, one year!`.
    Per locale: `{en: "One year together", ko: "함께한 1년"}` (the email's locale, else `en`)."""
    template: str | None = Field(default=None, pattern=TEMPLATE_NAME)
    """Another template for this arm."""
    from_: Literal["csm", "team"] | None = Field(default=None, alias="from")
    """Another sender for this arm."""
    delay: Duration | None = None
    """Send this much later than the step comes due (a send-time arm)."""

    @model_validator(mode="after")
    def _holdout_sends_nothing(self) -> Arm:
        if self.holdout and (self.subject or self.template or self.from_ or self.delay):
            raise ValueError(f"arm '{self.id}' is a holdout: it sends nothing, so no subject/template/from/delay")
        return self


class Experiment(SpecModel):
    """Split an email step's recipients into arms, sticky per subject, and compare them."""

    id: str | None = Field(default=None, pattern=IDENTIFIER)
    """Names the experiment (default `<playbook>.<step>`); a new id re-draws every assignment."""
    arms: list[Arm] = Field(min_length=2)
    """The arms, with their weights."""
    control: str | None = Field(default=None, pattern=IDENTIFIER)
    """The arm the others are compared with (default: the first)."""
    metric: Literal["delivered", "opened", "clicked", "converted", "unsubscribed", "bounced"] = "opened"
    """The rate the stopping rule looks at (the report shows all of them)."""
    min_sample: int = Field(default=100, ge=1)
    """Subjects every arm needs before the report names a winner."""

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        ids = [a.id for a in self.arms]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"arm ids must be unique; repeated: {', '.join(twice)}")
        if self.control is not None and self.control not in ids:
            raise ValueError(f"control '{self.control}' is not one of the arms: {', '.join(ids)}")
        if not any(a.weight > 0 for a in self.arms):
            raise ValueError("at least one arm needs a weight above 0")
        return self

    def control_arm(self) -> str:
        """The control's id."""
        return self.control or self.arms[0].id


class EmailAction(SpecModel):
    """Send one email, rendered from a template, to each recipient."""

    template: str = Field(pattern=TEMPLATE_NAME)
    """Template name under templates/email/, without locale and extension: `renewal/plan`."""
    to: Recipients | None = None
    """Recipients by role; required for account subjects, not allowed for contact subjects
    (the contact is the recipient)."""
    from_: Literal["csm", "team"] = Field(default="team", alias="from")
    """Sender: `csm` is the account's CSM (falls back to the team sender), `team` the team."""
    experiment: Experiment | None = None
    """A/B test of this email: arms with weights, optionally a holdout."""


class TaskAction(SpecModel):
    """Open a task for a CSM."""

    title: str = Field(min_length=1, max_length=300)
    """The task's title; a template: `Call {{ account.name }} about the renewal`."""
    body: str = ""
    """Longer instructions for the CSM; a template too."""
    assignee: Literal["csm"] = "csm"
    """Who gets it: the account's CSM, or the team queue when the account has none."""
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    """How urgent the task is."""
    due: Duration = Field(default=timedelta(days=3), json_schema_extra={"default": "3d"})
    """How long after opening the task is due (whole days count business days, see policy.csm)."""
    reason: str | None = Field(default=None, pattern=IDENTIFIER)
    """Tasks with the same reason for one account are one open task (updated, not duplicated);
    default: this playbook and step. Share a reason across playbooks, e.g. `renewal-risk`."""


class WaitUntil(SpecModel):
    """Wait until a date field of the subject or its account, plus or minus an offset."""

    until: str
    """A date field, e.g. `renewal_date`."""
    offset: SignedDuration = Field(default=timedelta(0), json_schema_extra={"default": "0d"})
    """Relative to the date: `-30d` is 30 days before it. A moment already past does not wait."""


class LocalWindow(SpecModel):
    """Hours and days in the recipient's own time zone (the contact's, else the account's)."""

    start: str = Field(default="09:00", pattern=CLOCK)
    """Opening time, HH:MM."""
    end: str = Field(default="17:00", pattern=CLOCK)
    """Closing time, HH:MM (after `start`)."""
    days: list[Weekday] = Field(default=["mon", "tue", "wed", "thu", "fri"], min_length=1)
    """Days of the week the window is open."""

    @model_validator(mode="after")
    def _ordered(self) -> LocalWindow:
        if self.end <= self.start:
            raise ValueError(f"end {self.end} must be after start {self.start}")
        return self


class WaitForWindow(SpecModel):
    """Wait until the next moment inside a local time window (now, if already inside)."""

    window: LocalWindow
    """The allowed hours and days."""


def _wait_kind(value: Any) -> str:
    if isinstance(value, dict | WaitUntil | WaitForWindow):
        return (
            "window" if isinstance(value, WaitForWindow) or (isinstance(value, dict) and "window" in value) else "until"
        )
    return "duration"


WaitValue = Annotated[
    Annotated[Duration, Tag("duration")] | Annotated[WaitUntil, Tag("until")] | Annotated[WaitForWindow, Tag("window")],
    Discriminator(_wait_kind),
]
"""A duration (`14d`), a date (`{until: renewal_date, offset: -30d}`) or a local window."""


class BranchAction(SpecModel):
    """Go to one step or another depending on a condition."""

    if_: Condition = Field(alias="if")
    """The condition (on data, or `engaged` with an earlier email)."""
    then: str | None = Field(default=None, pattern=IDENTIFIER)
    """The step to go to when it holds (default: the next step)."""
    else_: str | None = Field(default=None, alias="else", pattern=IDENTIFIER)
    """The step to go to when it does not (default: the next step)."""


class UpdateAction(SpecModel):
    """Change the subject's data: fields or JSON traits of the account (or of the contact)."""

    target: Literal["account", "contact"] = "account"
    """Whose data: the account, or the contact (contact subjects only)."""
    set: dict[str, Scalar] = Field(default_factory=dict)
    """Field → value, e.g. `{lifecycle_stage: adoption, traits.onboarding_call: done}`."""
    clear: list[str] = Field(default_factory=list)
    """Fields or traits to empty."""
    tag: list[str] = Field(default_factory=list)
    """Tags to add to `traits.tags`."""
    untag: list[str] = Field(default_factory=list)
    """Tags to remove from `traits.tags`."""

    @model_validator(mode="after")
    def _something(self) -> UpdateAction:
        if not (self.set or self.clear or self.tag or self.untag):
            raise ValueError("give at least one of set, clear, tag, untag")
        return self


class WebhookAction(SpecModel):
    """POST a JSON body to a URL (e.g. a Slack incoming webhook), with a timeout and retries."""

    url: str | None = Field(default=None, pattern=r"^https?://")
    """The URL, written out. Prefer `url_env` for URLs that carry a secret."""
    url_env: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]*$")
    """The environment variable that holds the URL, e.g. `SLACK_WEBHOOK_URL`."""
    body: dict[str, Any] = Field(default_factory=dict)
    """The JSON body; every string in it is a template (`{{ account.name }}`)."""
    timeout: Duration = Field(default=timedelta(seconds=10), json_schema_extra={"default": "10s"})
    """How long to wait for an answer."""
    retries: int = Field(default=3, ge=0, le=10)
    """How many times to retry a timeout, a connection error or a 429/5xx answer."""

    @model_validator(mode="after")
    def _one_url(self) -> WebhookAction:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url, url_env")
        return self


class _StepBase(SpecModel):
    id: str | None = Field(default=None, pattern=IDENTIFIER, max_length=100)
    """The step's stable name, used in send keys, the audit, branches and version moves.
    Default: named after what the step does, not where it is, so inserting or moving other steps
    keeps it: the email's template (`email-welcome-hello`), the wait (`wait-3d`), the task's title
    (`task-call-account-name`), the exit's reason (`exit-not-a-fit`), else `<kind>-<8 hex digits
    of its content>`; `-2`, `-3`… for a second and third such step."""
    if_: Condition | None = Field(default=None, alias="if")
    """Run the step only when this holds; otherwise skip it (it is audited as skipped)."""


class EmailStep(_StepBase):
    """A step that sends an email."""

    email: EmailAction
    """The email to send."""


class TaskStep(_StepBase):
    """A step that opens a CSM task."""

    task: TaskAction
    """The task to open."""


class WaitStep(_StepBase):
    """A step that waits before the next one."""

    wait: WaitValue
    """How long, until when, or until which local hours."""


class BranchStep(_StepBase):
    """A step that jumps."""

    branch: BranchAction
    """The condition and the two destinations."""


class UpdateStep(_StepBase):
    """A step that updates the subject's data (audited; later conditions see the new values)."""

    update: UpdateAction
    """What to change."""


class WebhookStep(_StepBase):
    """A step that calls a webhook."""

    webhook: WebhookAction
    """Where and what to post."""


class ExitStep(_StepBase):
    """A step that ends the journey."""

    exit: str = Field(min_length=1)
    """Why, in a word or two: recorded as the enrollment's outcome reason."""


AnyStep = EmailStep | TaskStep | WaitStep | BranchStep | UpdateStep | WebhookStep | ExitStep
STEP_KINDS = ("email", "task", "wait", "branch", "update", "webhook", "exit")
_BY_CLASS: dict[type, str] = {
    EmailStep: "email",
    TaskStep: "task",
    WaitStep: "wait",
    BranchStep: "branch",
    UpdateStep: "update",
    WebhookStep: "webhook",
    ExitStep: "exit",
}


def step_kind(value: Any) -> str | None:
    """The kind of a raw or parsed step: the one step key it has."""
    if isinstance(value, dict):
        present = [k for k in STEP_KINDS if k in value]
        return present[0] if len(present) == 1 else None
    return _BY_CLASS.get(type(value))


Step = Annotated[
    Annotated[EmailStep, Tag("email")]
    | Annotated[TaskStep, Tag("task")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[BranchStep, Tag("branch")]
    | Annotated[UpdateStep, Tag("update")]
    | Annotated[WebhookStep, Tag("webhook")]
    | Annotated[ExitStep, Tag("exit")],
    Discriminator(
        step_kind,
        custom_error_type="invalid_step",
        custom_error_message="a step has exactly one of: email, task, wait, branch, update, webhook, exit",
    ),
]
"""One step of the journey."""


def step_ids(steps: Sequence[AnyStep]) -> list[str]:
    """Each step's id: its own, or one derived from its content (see `_StepBase.id`).

    A derived id depends on the step's kind and what it does, never on its position: adding,
    removing or moving another step leaves it unchanged, so journeys in flight, send keys and
    experiment ids keep their step. A true duplicate (a second step doing the same thing) gets a
    suffix, `-2`, `-3`…; steps whose readable names clash with an explicit id or with each other
    (two titles that differ only in punctuation) are named by their content's hash instead.
    """
    explicit = {step.id for step in steps if step.id is not None}
    derived = {i: _names(step) for i, step in enumerate(steps) if step.id is None}
    # A readable name two different steps would share names neither: both take their hash, so
    # which one comes first does not matter.
    contents: dict[str, set[str]] = defaultdict(set)
    for readable, _, content in derived.values():
        contents[readable].add(content)
    used = set(explicit)
    out = []
    for i, step in enumerate(steps):
        if step.id is not None:
            out.append(step.id)
            continue
        readable, hashed, _ = derived[i]
        base = readable if readable and readable not in explicit and len(contents[readable]) == 1 else hashed
        name, n = base, 1
        while name in used:  # a true duplicate: the first free suffix
            n += 1
            name = f"{base}-{n}"
        used.add(name)
        out.append(name)
    return out


MAX_READABLE = 60
"""Longest readable part of a derived id; longer content is named by its hash."""


def _names(step: AnyStep) -> tuple[str, str, str]:
    """The readable name ('' when the content has none), the hashed one, and the content."""
    kind = _BY_CLASS[type(step)]
    content = json.dumps([kind, step_content(step)], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    readable = ""
    if isinstance(step, EmailStep | TaskStep | ExitStep):
        readable = str(step_content(step))
    elif isinstance(step, WaitStep) and isinstance(step.wait, timedelta):
        readable = format_duration(step.wait)
    # Only plain ASCII reads well once slugged (a Korean title would lose every letter); a
    # webhook's URL may carry a secret, so webhooks (like the other kinds) are named by a hash.
    slug = re.sub(r"[^a-z0-9_]+", "-", readable.lower()).strip("-") if readable.isascii() else ""
    named = f"{kind}-{slug}" if slug and len(slug) <= MAX_READABLE else ""
    return named, f"{kind}-{hashlib.sha256(content.encode()).hexdigest()[:8]}", content


def step_content(step: AnyStep) -> Any:
    """What identifies a step across versions of its playbook: what it sends or does. An email is
    its template (not its experiment: arms and weights change, `experiments promote` rewrites
    them), a task its title, a webhook its URL, an exit its reason; the other kinds are all their
    settings. A step's `if` is not part of it: guarding a step keeps it the same step."""
    if isinstance(step, EmailStep):
        return step.email.template
    if isinstance(step, TaskStep):
        return step.task.title
    if isinstance(step, WebhookStep):
        return step.webhook.url or step.webhook.url_env
    if isinstance(step, ExitStep):
        return step.exit
    return step.model_dump(mode="json", by_alias=True, exclude={"id", "if_"})
