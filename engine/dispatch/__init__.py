"""Dispatch: claim planned ledger rows, render, deliver through a channel, record the outcome."""

from engine.dispatch.channels import EmailChannel, NullChannel, OutboxChannel, OutgoingEmail, SendError
from engine.dispatch.claims import claim
from engine.dispatch.deliver import deliver
from engine.dispatch.outcomes import DispatchResult
from engine.dispatch.settings import Dispatch, DispatchSettings

__all__ = [
    "Dispatch",
    "DispatchResult",
    "DispatchSettings",
    "EmailChannel",
    "NullChannel",
    "OutboxChannel",
    "OutgoingEmail",
    "SendError",
    "claim",
    "deliver",
]
