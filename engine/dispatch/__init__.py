"""Dispatch: claim planned ledger rows, render, deliver through a channel, record the outcome."""

from engine.dispatch.channels import EmailChannel, NullChannel, OutboxChannel, OutgoingEmail, SendError
from engine.dispatch.deliver import DispatchResult, claim, deliver

__all__ = [
    "DispatchResult",
    "EmailChannel",
    "NullChannel",
    "OutboxChannel",
    "OutgoingEmail",
    "SendError",
    "claim",
    "deliver",
]
