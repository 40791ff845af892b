"""The email channel, and the dispatch settings that go with it, a project's delivery settings ask for."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from engine.delivery_config import DeliverySettings
from engine.dispatch.channels import EmailChannel, OutboxChannel
from engine.dispatch.sendgrid_channel import SendGridChannel
from engine.dispatch.settings import DispatchSettings
from engine.dispatch.smtp_channel import SmtpChannel


class ChannelConfigError(Exception):
    """The configured channel cannot be built (e.g. the API key is not in the environment)."""


@dataclass(frozen=True)
class ConfiguredChannel:
    """The configured channel, and how one dispatch sends through it."""

    channel: EmailChannel
    settings: DispatchSettings
    """Tries and sending threads (the channel's section of `touchflow.yaml`), the team sender."""


def make_channel(delivery: DeliverySettings, outbox_dir: Path) -> ConfiguredChannel:
    """The channel `delivery` names, and how to send within one dispatch (tries, concurrency,
    the team sender); ChannelConfigError when it cannot be built."""
    team = (delivery.team_sender.name, delivery.team_sender.email)
    if delivery.channel == "sendgrid":
        sg = delivery.sendgrid
        key = os.environ.get(sg.api_key_env, "") or _secret_block(sg.api_key_block)
        if not key:
            where = f" nor the Prefect Secret block '{sg.api_key_block}'" if sg.api_key_block else ""
            raise ChannelConfigError(f"channel is sendgrid but neither {sg.api_key_env}{where} holds an API key")
        channel = SendGridChannel(
            key,
            host=sg.host,
            timeout_s=sg.timeout.total_seconds(),
            sandbox=sg.sandbox,
            unsubscribe_group=sg.unsubscribe_group,
        )
        settings = DispatchSettings(attempts=sg.attempts, concurrency=sg.concurrency, team_sender=team)
        return ConfiguredChannel(channel=channel, settings=settings)
    if delivery.channel == "smtp":
        smtp = delivery.smtp
        user = os.environ.get(smtp.username_env, "") if smtp.username_env else None
        password = os.environ.get(smtp.password_env, "") if smtp.password_env else None
        if smtp.username_env and not user:
            raise ChannelConfigError(f"channel is smtp but the environment variable {smtp.username_env} is not set")
        smtp_channel = SmtpChannel(
            smtp.host,
            smtp.port,
            timeout_s=smtp.timeout.total_seconds(),
            starttls=smtp.starttls,
            username=user,
            password=password,
        )
        settings = DispatchSettings(attempts=smtp.attempts, concurrency=smtp.concurrency, team_sender=team)
        return ConfiguredChannel(channel=smtp_channel, settings=settings)
    return ConfiguredChannel(channel=OutboxChannel(outbox_dir), settings=DispatchSettings(team_sender=team))


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
