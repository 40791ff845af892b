"""The email channel and send policy a project's delivery settings ask for."""

from __future__ import annotations

import os
from pathlib import Path

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
        key = os.environ.get(sg.api_key_env, "")
        if not key:
            raise ChannelConfigError(f"channel is sendgrid but the environment variable {sg.api_key_env} is not set")
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
