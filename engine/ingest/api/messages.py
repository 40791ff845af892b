"""Segment messages (identify, group, track) checked against the import's data contract.

Traits whose names are columns of the contract (`email`, `name`, `role`… for a contact; `name`,
`plan`, `arr`… for an account) are converted by the contract's own rules and stored in those
columns; every other trait goes to the row's `traits` JSON. A message that does not fit raises
`MessageProblem` with a reason naming the call and the field (`track: 'event' is required`)."""

from __future__ import annotations

import hashlib
import json
import math
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Table

from engine.ingest.api.body import MESSAGE_LIMIT, json_problem, kilobytes, type_name
from engine.ingest.contract import CONTRACT, BadValue, Column, Kind, convert
from engine.store import models

#: The calls stored; the other calls of the Tracking API are accepted and not stored.
STORED = ("identify", "group", "track")
IGNORED = ("page", "screen", "alias")
_TEXT = Column("id", "text")
_DATETIME = Column("timestamp", "datetime")
#: Namespace of event ids that come from messageIds (a file import's own ids never start with it).
EVENT_ID_PREFIX = "segment:"
_MESSAGE_ID_LIMIT = 200 - len(EVENT_ID_PREFIX) - len("sha256:")
_INT32 = 2**31
#: Longest event name: the width of events.name.
_EVENT_NAME_LIMIT = 64


class MessageProblem(ValueError):
    """A message that cannot be stored; the message says which call and field, and why."""


@dataclass
class Message:
    """What every stored call carries."""

    index: int
    message_id: str | None


@dataclass
class Identify(Message):
    """A contact, keyed by userId: columns to set, traits to merge, an account to link to."""

    user_id: str
    columns: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    group_id: str | None = None


@dataclass
class Group(Message):
    """An account, keyed by groupId; with a userId, that contact's account."""

    group_id: str
    user_id: str | None
    columns: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)


@dataclass
class Track(Message):
    """An event: who, what, when, with which properties, under which event id."""

    user_id: str | None
    event: str
    occurred_at: datetime
    properties: dict[str, Any]
    event_id: str
    group_id: str | None


def message_size(message: Any) -> int:
    """Bytes of `message` as compact JSON (what the 32 KB limit measures inside a batch)."""
    return len(json.dumps(message, ensure_ascii=False, separators=(",", ":"), default=repr).encode("utf-8"))


def read_message(
    call: str, index: int, message: Any, received_at: datetime, batch_context: dict[str, Any] | None = None
) -> Message | None:
    """The stored form of one message of type `call`, None for a call that is not stored (page,
    screen, alias); MessageProblem when it cannot be stored."""
    if not isinstance(message, dict):
        raise MessageProblem(f"message must be an object, not {type_name(message)}")
    problem = json_problem(message)
    if problem:
        raise MessageProblem(f"{call}: {problem}")
    if batch_context is not None and message_size(message) > MESSAGE_LIMIT:
        raise MessageProblem(f"{call}: message is {message_size(message)} bytes; at most {kilobytes(MESSAGE_LIMIT)}")
    if call in IGNORED:
        return None
    message_id = _optional_text(call, message, "messageId", _MESSAGE_ID_LIMIT)
    context = _object(call, message, "context")
    if batch_context:  # the batch's context, merged under each message's own
        context = batch_context | context
    if call == "identify":
        return _identify(index, message_id, message, context)
    if call == "group":
        return _group(index, message_id, message)
    return _track(index, message_id, message, context, received_at)


def _identify(index: int, message_id: str | None, message: dict[str, Any], context: dict[str, Any]) -> Identify:
    user_id = _optional_text("identify", message, "userId")
    if user_id is None:
        raise MessageProblem("identify: 'userId' is required (contacts are keyed by it; anonymousId alone is not)")
    columns, traits = _traits("identify", CONTRACT["contacts"], models.contacts, _object("identify", message, "traits"))
    if "name" not in columns:
        full = " ".join(str(traits[k]).strip() for k in ("firstName", "lastName") if isinstance(traits.get(k), str))
        if full.strip():
            columns["name"] = _stored("identify", CONTRACT["contacts"], models.contacts, "name", full.strip())
    # The device's time zone and locale, when the traits give none and they are usable.
    for name in ("timezone", "locale"):
        if name not in columns and name in context:
            with suppress(MessageProblem):  # context is collected by the library: unusable is ignored
                columns[name] = _stored("identify", CONTRACT["contacts"], models.contacts, name, context[name])
    group_id = _optional_text("identify", message, "groupId") or _optional_text("identify", context, "groupId")
    return Identify(index, message_id, user_id, columns, traits, group_id)


def _group(index: int, message_id: str | None, message: dict[str, Any]) -> Group:
    group_id = _optional_text("group", message, "groupId")
    if group_id is None:
        raise MessageProblem("group: 'groupId' is required")
    user_id = _optional_text("group", message, "userId")
    columns, traits = _traits("group", CONTRACT["accounts"], models.accounts, _object("group", message, "traits"))
    return Group(index, message_id, group_id, user_id, columns, traits)


def _track(
    index: int, message_id: str | None, message: dict[str, Any], context: dict[str, Any], received_at: datetime
) -> Track:
    user_id = _optional_text("track", message, "userId")
    anonymous_id = _optional_text("track", message, "anonymousId")
    event = _optional_text("track", message, "event", _EVENT_NAME_LIMIT)
    if event is not None and not isinstance(message["event"], str):  # a name, never a number
        raise MessageProblem(f"track: 'event' must be a string, not {type_name(message['event'])}")
    if event is None:
        raise MessageProblem("track: 'event' is required")
    if user_id is None and anonymous_id is None:
        raise MessageProblem("track: 'userId' or 'anonymousId' is required")
    properties = _object("track", message, "properties")
    occurred_at = _timestamp(message, received_at)
    group_id = _optional_text("track", context, "groupId", where="context.groupId")
    if message_id is None:
        # No messageId: a key from the content, so a client retry is still one event.
        content = [user_id, anonymous_id, event, occurred_at.isoformat(), properties, group_id]
        digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=repr).encode()).hexdigest()[:40]
        event_id = f"{EVENT_ID_PREFIX}sha256:{digest}"
    else:
        event_id = EVENT_ID_PREFIX + message_id
    return Track(index, message_id, user_id, event, occurred_at, properties, event_id, group_id)


def _timestamp(message: dict[str, Any], received_at: datetime) -> datetime:
    """When it happened: `timestamp`, else `originalTimestamp`, else when it was received."""
    for name in ("timestamp", "originalTimestamp"):
        value = message.get(name)
        if value is None:
            continue
        try:
            return convert(_DATETIME, value) if isinstance(value, str) else _not_text(value)  # type: ignore[no-any-return]
        except (BadValue, OverflowError) as exc:
            reason = str(exc) if isinstance(exc, BadValue) else "is outside the years a date can hold"
            raise MessageProblem(f"track: '{name}': {reason}") from None
    return received_at


def _not_text(value: Any) -> Any:
    raise BadValue(f"{type_name(value)} is not a date and time (expected ISO 8601, e.g. 2026-11-23T09:00:00Z)")


def _traits(call: str, kind: Kind, table: Table, traits: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split `traits` into the contract's columns (converted) and the rest (the JSON bag)."""
    columns: dict[str, Any] = {}
    bag: dict[str, Any] = {}
    for name, value in traits.items():
        column = kind.column(name)
        if column is None or name in (kind.key, "account_external_id"):
            bag[name] = value
        elif value is not None and value != "":  # null or empty: not given, as in a file
            columns[name] = _stored(call, kind, table, name, value)
    return columns, bag


def _stored(call: str, kind: Kind, table: Table, name: str, value: Any) -> Any:
    """`value` converted by the contract's rule for column `name`, checked against the store's
    column (its width, a 32-bit integer, a finite number)."""
    column = kind.column(name)
    assert column is not None
    try:
        converted = convert(column, value.strip() if isinstance(value, str) else value)
    except (BadValue, OverflowError) as exc:
        raise MessageProblem(
            f"{call}: traits.{name}: {exc if isinstance(exc, BadValue) else 'is out of range'}"
        ) from None
    stored = table.c.get(name)
    length = getattr(stored.type, "length", None) if stored is not None else None
    if isinstance(converted, str) and length and len(converted) > length:
        raise MessageProblem(f"{call}: traits.{name}: is {len(converted)} characters long (at most {length})")
    if stored is not None and isinstance(stored.type, Integer) and not -_INT32 <= converted < _INT32:
        raise MessageProblem(f"{call}: traits.{name}: {converted} is out of range (a 32-bit whole number)")
    if isinstance(converted, float) and not math.isfinite(converted):
        raise MessageProblem(f"{call}: traits.{name}: is not a finite number")
    return converted


def _object(call: str, message: dict[str, Any], name: str) -> dict[str, Any]:
    value = message.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MessageProblem(f"{call}: '{name}' must be an object, not {type_name(value)}")
    return value


def _optional_text(
    call: str, message: dict[str, Any], name: str, limit: int | None = None, where: str | None = None
) -> str | None:
    """An id or name: text (or a whole number, as some libraries send ids), or absent."""
    value = message.get(name)
    if value is None or value == "":
        return None
    try:
        text: str = convert(_TEXT, value)
    except BadValue as exc:
        raise MessageProblem(f"{call}: '{where or name}': {exc}") from None
    if limit is not None and len(text) > limit:
        raise MessageProblem(f"{call}: '{where or name}' is {len(text)} characters long (at most {limit})")
    return text
