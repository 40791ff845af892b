"""Delivery settings: which channel sends email, and how. From `touchflow.yaml`, then the environment.

```yaml
# touchflow.yaml (all keys optional)
channel: outbox            # outbox | sendgrid | smtp
team_sender: {name: Touchflow Customer Success, email: success@touchflow.example}
sendgrid:
  api_key_env: SENDGRID_API_KEY   # the key itself never lives in a file
  api_key_block: sendgrid-api-key # else a Prefect Secret block of this name
  host: https://api.sendgrid.com  # the EU region and tests use other hosts
  sandbox: false
  timeout: 10s
  concurrency: 8
  attempts: 4                     # per dispatch, for 429 and 5xx answers
  unsubscribe_group: null         # asm.group_id
smtp: {host: smtp.example.com, port: 587, starttls: true, username_env: SMTP_USER, password_env: SMTP_PASSWORD}
reconcile_after: 15m              # a message still `sending` this long is reconciled
policy: {caps: {contact: {day: 1}}, quiet_hours: {start: "20:00", end: "08:00"}}  # engine/spec/policy.py
freshness: {login: 48h, accounts: 7d}  # pause playbooks reading a source older than this (engine/guard/)
approvals: required                # email goes out only once its content is approved (engine/approvals/)
archive: {retention: 90d}         # keep each message as sent this long (engine/archive.py)
```

The environment overrides: TOUCHFLOW_CHANNEL, TOUCHFLOW_SENDGRID_HOST, TOUCHFLOW_SENDGRID_SANDBOX.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from engine.load.pydantic_errors import problems_from_validation
from engine.load.yaml_nodes import parse_yaml
from engine.problems import Problem, ProblemsFound
from engine.spec.base import Duration, SpecModel
from engine.spec.policy import Policy
from engine.spec.traits import TraitTypes


class Sender(SpecModel):
    """A From address."""

    name: str = "Touchflow Customer Success"
    """Display name."""
    email: str = "success@touchflow.example"
    """Address."""


class SendGridSettings(SpecModel):
    """The SendGrid channel."""

    api_key_env: str = Field(default="SENDGRID_API_KEY", pattern=r"^[A-Z][A-Z0-9_]*$")
    """The environment variable holding the API key."""
    api_key_block: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]*$")
    """A Prefect Secret block holding the API key, used when the environment variable is unset."""
    host: str = Field(default="https://api.sendgrid.com", pattern=r"^https?://")
    """The API host (the EU region uses https://api.eu.sendgrid.com)."""
    sandbox: bool = False
    """SendGrid's sandbox mode: requests are validated, nothing is delivered."""
    timeout: Duration = Field(default=timedelta(seconds=10), json_schema_extra={"default": "10s"})
    """How long to wait for SendGrid's answer; after that the outcome is unknown, never resent."""
    concurrency: int = Field(default=8, ge=1, le=64)
    """Requests in flight at once within one dispatch batch."""
    attempts: int = Field(default=4, ge=1, le=10)
    """Tries per message within one dispatch, for 429 and 5xx answers."""
    unsubscribe_group: int | None = None
    """A SendGrid unsubscribe group (asm.group_id) for every message."""


class SmtpSettings(SpecModel):
    """The SMTP channel."""

    host: str = "localhost"
    """The SMTP server."""
    port: int = Field(default=587, ge=1, le=65535)
    """Its port (587 for submission with STARTTLS)."""
    starttls: bool = True
    """Upgrade the connection with STARTTLS before authenticating."""
    username_env: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]*$")
    """The environment variable holding the user name (unset: no login)."""
    password_env: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]*$")
    """The environment variable holding the password."""
    timeout: Duration = Field(default=timedelta(seconds=15), json_schema_extra={"default": "15s"})
    """How long to wait for the server."""
    concurrency: int = Field(default=4, ge=1, le=32)
    """Sessions in flight at once within one dispatch batch."""
    attempts: int = Field(default=3, ge=1, le=10)
    """Tries per message within one dispatch, for 4xx answers and refused connections."""


class ArchiveSettings(SpecModel):
    """The messages kept as sent."""

    retention: Duration = Field(default=timedelta(days=90), json_schema_extra={"default": "90d"})
    """How long a message is kept after it was sent; older ones are pruned."""


class DeliverySettings(SpecModel):
    """How email leaves."""

    channel: Literal["outbox", "sendgrid", "smtp"] = "outbox"
    """`outbox` writes .eml files; `sendgrid` sends through SendGrid; `smtp` through an SMTP server."""
    team_sender: Sender = Sender()
    """The sender when a step says `from: team`, or the account has no CSM."""
    sendgrid: SendGridSettings = SendGridSettings()
    """SendGrid settings."""
    smtp: SmtpSettings = SmtpSettings()
    """SMTP settings."""
    reconcile_after: Duration = Field(default=timedelta(minutes=15), json_schema_extra={"default": "15m"})
    """A message left `sending` (a crash, a timeout) this long is reconciled from provider events."""
    policy: Policy = Policy()
    """Caps, quiet hours, business days, the global send rate and CSM workload (engine/spec/policy.py)."""
    traits: TraitTypes = TraitTypes()
    """Declared trait types, `{account: {trial_ends_on: date}}`: playbooks read those traits as that type."""
    freshness: dict[str, Duration] = Field(default_factory=dict)
    """The oldest each source's newest data may be before the playbooks reading it pause: an event
    name (`login: 48h`) or a table (`accounts: 7d`). See engine/guard/."""
    approvals: Literal["required", "off"] = "off"
    """`required`: an email goes out only while a person's approval matches exactly what it sends
    (templates, layout, the arm's overrides; per locale). See engine/approvals/."""
    archive: ArchiveSettings = ArchiveSettings()
    """How long each message is kept exactly as it was sent (engine/archive.py)."""


class SettingsError(ValueError):
    """An environment override that is not a valid setting; the message names the variable."""


def load_delivery(project_dir: Path) -> DeliverySettings:
    """`touchflow.yaml` of the project (if any) with the environment's overrides.

    No file means the defaults. A file that is there but cannot be used (unreadable, a
    directory, not YAML, not a mapping, invalid settings) raises ProblemsFound naming it: the
    sending policy lives in this file, so a tick never runs without the policy it was given.
    An invalid environment override raises SettingsError.
    """
    path = project_dir / "touchflow.yaml"
    # lexists: a dangling or looping symlink is a file the operator meant, not an absent one.
    settings = _from_file(path) if os.path.lexists(path) else DeliverySettings()
    updates: dict[str, object] = {}
    if os.environ.get("TOUCHFLOW_CHANNEL"):
        updates["channel"] = os.environ["TOUCHFLOW_CHANNEL"]
    sendgrid = settings.sendgrid.model_dump()
    if os.environ.get("TOUCHFLOW_SENDGRID_HOST"):
        sendgrid["host"] = os.environ["TOUCHFLOW_SENDGRID_HOST"]
    if os.environ.get("TOUCHFLOW_SENDGRID_SANDBOX"):
        sendgrid["sandbox"] = os.environ["TOUCHFLOW_SENDGRID_SANDBOX"].lower() in ("1", "true", "yes")
    try:
        updates["sendgrid"] = SendGridSettings.model_validate(sendgrid)
        return DeliverySettings.model_validate({**settings.model_dump(), **updates})
    except ValidationError as exc:
        raise SettingsError(_override_error(exc)) from None


_TYPE_NAMES = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false"}


def _from_file(path: Path) -> DeliverySettings:
    shown = str(path)
    if path.is_dir():
        raise ProblemsFound([Problem(shown, 1, 1, "touchflow.yaml is a directory, not a settings file")])
    if path.exists() and not path.is_file():  # a FIFO or a device: reading could block or never end
        raise ProblemsFound([Problem(shown, 1, 1, "touchflow.yaml is not a regular file")])
    try:
        raw = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ProblemsFound([Problem(shown, 1, 1, f"cannot read touchflow.yaml: {reason}")]) from None
    located = parse_yaml(raw, shown)
    if located.data is None:  # an empty file (or only comments): the defaults
        return DeliverySettings()
    if not isinstance(located.data, dict):
        what = _TYPE_NAMES.get(type(located.data), f"a {type(located.data).__name__}")
        line, col = located.where(())
        message = f"touchflow.yaml holds {what}; it must be a mapping of settings (channel:, policy:, …)"
        raise ProblemsFound([Problem(shown, line, col, message)])
    try:
        return DeliverySettings.model_validate(dict(located.data))
    except ValidationError as exc:
        raise ProblemsFound(problems_from_validation(exc, located, DeliverySettings)) from None


_OVERRIDES = {"channel": "TOUCHFLOW_CHANNEL", "host": "TOUCHFLOW_SENDGRID_HOST"}


def _override_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    name = _OVERRIDES.get(str(first["loc"][-1]) if first["loc"] else "", "an environment override")
    return f"{name}={first.get('input')!r}: {first['msg']}"
