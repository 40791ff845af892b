"""The email channel and send policy a project's delivery settings ask for."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

from engine.delivery_config import DeliverySettings
from engine.dispatch.channels import EmailChannel, OutboxChannel
from engine.dispatch.deliver import SendPolicy
from engine.dispatch.sendgrid_channel import SendGridChannel
from engine.dispatch.smtp_channel import SmtpChannel


class ChannelConfigError(Exception):
    """The configured channel cannot be built (e.g. the API key is not in the environment)."""


def make_channel(delivery: DeliverySettings, outbox_dir: Path) -> tuple[EmailChannel, SendPolicy]:
    """The channel, and how to send within one dispatch (tries, concurrency, the team sender)."""
    team = (delivery.team_sender.name, delivery.team_sender.email)
    if delivery.channel == "sendgrid":
        sg = delivery.sendgrid
        key = os.environ.get(sg.api_key_env, "") or _secret_block(sg.api_key_block)
        if not key:
            where = f" nor the Prefect Secret block '{sg.api_key_block}'" if sg.api_key_block else ""
            raise ChannelConfigError(f"channel is sendgrid but neither {sg.api_key_env}{where} holds an API key")
        channel = SendGridChannel(key, sg.host, sg.timeout.total_seconds(), sg.sandbox, sg.unsubscribe_group)
        return channel, SendPolicy(attempts=sg.attempts, concurrency=sg.concurrency, team_sender=team)
    if delivery.channel == "smtp":
        smtp = delivery.smtp
        user = os.environ.get(smtp.username_env, "") if smtp.username_env else None
        password = os.environ.get(smtp.password_env, "") if smtp.password_env else None
        if smtp.username_env and not user:
            raise ChannelConfigError(f"channel is smtp but the environment variable {smtp.username_env} is not set")
        smtp_channel = SmtpChannel(smtp.host, smtp.port, smtp.timeout.total_seconds(), smtp.starttls, user, password)
        return smtp_channel, SendPolicy(attempts=smtp.attempts, concurrency=smtp.concurrency, team_sender=team)
    return OutboxChannel(outbox_dir), SendPolicy(team_sender=team)


def _secret_block(name: str | None) -> str:
    """The value of the Prefect Secret block `name` ('' when unset). Needs a Prefect API (the
    flow's server, or PREFECT_API_URL); the value is never logged."""
    if name is None:
        return ""
    from prefect.blocks.system import Secret

    try:
        # `_sync=True` is async_dispatch's switch: the plain call, never a coroutine.
        block: Any = cast(Any, Secret.load)(name, _sync=True)
    except ValueError as exc:  # Prefect's "Unable to find block document named …"
        raise ChannelConfigError(f"Prefect Secret block '{name}': {exc}") from None
    return str(block.get())
