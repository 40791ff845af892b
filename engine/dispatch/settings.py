"""What one dispatch works with: `Dispatch` (the playbooks, the channel, the renderer, the webhook
poster) and its `DispatchSettings` (how it sends: tries, threads, pacing, the team sender, the
unsubscribe links, and the sending `policy` of `touchflow.yaml`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.compile import CompiledPlaybook
from engine.delivery_config import Sender
from engine.dispatch.channels import EmailChannel
from engine.dispatch.webhook import post_json
from engine.policy.ratelimit import RateLimiter
from engine.render import EmailRenderer
from engine.spec.policy import Policy
from engine.unsubscribe import UnsubscribeLinks

TEAM_SENDER = (Sender().name, Sender().email)
"""The team sender when no `touchflow.yaml` says otherwise (its defaults)."""


@dataclass(frozen=True)
class DispatchSettings:
    """How one dispatch sends: attempts per message for retryable answers, sending threads,
    pacing, who signs as the team, and the sending policy applied before anything renders."""

    attempts: int = 1
    concurrency: int = 1
    sleep: Callable[[float], None] = time.sleep
    """How the sending threads wait: between retries of a message, and for its send time."""
    clock: Callable[[], float] = time.time
    """The wall clock (unix seconds) the send times of the global rate are measured against."""
    team_sender: tuple[str, str] = TEAM_SENDER
    """(name, address) of `from: team`, and of accounts without a CSM (`touchflow.yaml`)."""
    links: UnsubscribeLinks | None = None
    """Signs unsubscribe links (the project's secret); None: a secret for this process only."""
    policy: Policy | None = None
    """Caps, quiet hours, business days (`touchflow.yaml` → `policy`), applied before rendering;
    None: no caps and no calendar (suppression still holds)."""
    limiter: RateLimiter | None = None
    """The global send rate, shared by every dispatcher; None: as fast as the channel allows."""
    approvals: bool = False
    """`approvals: required`: email content goes out only once approved (engine/approvals/)."""
    archive: bool = True
    """Keep each email as it went out (engine/archive.py), in the commit that marks it `sending`."""


@dataclass(frozen=True)
class Dispatch:
    """Everything `deliver` delivers with, besides the rows and the moment."""

    playbooks: dict[str, CompiledPlaybook]
    """The loaded playbooks by id: a row of a playbook not among them fails (`render_failed`)."""
    channel: EmailChannel
    renderer: EmailRenderer
    post: Callable[..., int] = post_json
    """Calls webhooks (`engine.dispatch.webhook.post_json`; `no_post` in dry runs)."""
    settings: DispatchSettings = field(default_factory=DispatchSettings)
