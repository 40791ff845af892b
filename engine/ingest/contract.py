"""The data contract of `touchflow import`: the columns of each kind, their types, which are
required, and how one raw value becomes a stored one (or a message saying why it cannot).

docs/data.md is the same contract written for people; tests/ingest checks they agree."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from engine.addresses import email_problem
from engine.problems import did_you_mean

KINDS = ("accounts", "contacts", "csms", "events", "suppressions")


class BadValue(ValueError):
    """A value that does not fit its column; the message says what it is and what was expected."""


@dataclass(frozen=True)
class Column:
    """One column of a kind: its name in the file, its type, and whether a row must give it."""

    name: str
    type: str  # text | integer | number | date | datetime | email | timezone | one of: a|b
    required: bool = False
    default: Any = None


@dataclass(frozen=True)
class Kind:
    """A kind of row: its columns, the column that keys it, and its JSON bag (traits/properties)."""

    name: str
    key: str
    columns: tuple[Column, ...]
    bag: str | None  # traits | properties | None

    def column(self, name: str) -> Column | None:
        """The column called `name`, or None."""
        return next((c for c in self.columns if c.name == name), None)

    def unknown_column_message(self, name: str) -> str:
        """Why `name` is not a column of this kind, with the closest one."""
        names = [c.name for c in self.columns] + ([f"{self.bag}.<key>"] if self.bag else [])
        return (
            f"unknown column '{name}'{did_you_mean(name, [c.name for c in self.columns])}; columns: {', '.join(names)}"
        )


TIERS = "high_touch|low_touch|tech_touch"
ROLES = "admin|champion|user|exec_sponsor|billing"
SUPPRESSION_REASONS = "unsubscribe|group_unsubscribe|bounce|dropped|spamreport|manual"

CONTRACT: dict[str, Kind] = {
    "csms": Kind(
        "csms",
        "external_id",
        (
            Column("external_id", "text", True),
            Column("name", "text", True),
            Column("email", "email", True),
            Column("team", "text", default="default"),
        ),
        None,
    ),
    "accounts": Kind(
        "accounts",
        "external_id",
        (
            Column("external_id", "text", True),
            Column("name", "text", True),
            Column("tier", TIERS, True),
            Column("plan", "text", True),
            Column("arr", "number", True),
            Column("seats_purchased", "integer", True),
            Column("lifecycle_stage", "text", True),
            Column("contract_start", "date", True),
            Column("renewal_date", "date", True),
            Column("csm_external_id", "text"),
            Column("status", "active|churned", default="active"),
            Column("timezone", "timezone", True),
            Column("locale", "text", True),
        ),
        "traits",
    ),
    "contacts": Kind(
        "contacts",
        "external_id",
        (
            Column("external_id", "text", True),
            Column("account_external_id", "text", True),
            Column("email", "email", True),
            Column("name", "text", True),
            Column("role", ROLES, True),
            Column("timezone", "timezone"),
            Column("locale", "text"),
        ),
        "traits",
    ),
    "events": Kind(
        "events",
        "event_id",
        (
            Column("event_id", "text"),
            Column("account_external_id", "text", True),
            Column("contact_external_id", "text"),
            Column("name", "text", True),
            Column("occurred_at", "datetime", True),
        ),
        "properties",
    ),
    "suppressions": Kind(
        "suppressions",
        "email",
        (
            Column("email", "email", True),
            Column("reason", SUPPRESSION_REASONS, True),
            Column("detail", "text", default=""),
        ),
        None,
    ),
}

# Longest text a column takes: the store's column widths.
_TEXT_LIMIT = 200
_INTEGER = re.compile(r"^[+-]?\d+$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _text(value: Any) -> str:
    if type(value) is str and len(value) <= _TEXT_LIMIT:  # the usual case, first
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadValue(f"{_shown(value)} is not text")
    text = str(value)
    if len(text) > _TEXT_LIMIT:
        raise BadValue(f"'{text[:40]}…' is {len(text)} characters long (at most {_TEXT_LIMIT})")
    return text


def _integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.match(value.strip()):
        return int(value)
    raise BadValue(f"{_shown(value)} is not a whole number")


def _number(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value)
    raise BadValue(f"{_shown(value)} is not a number")


def _date(value: Any) -> date:
    try:
        return date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else _fail()
    except ValueError:
        raise BadValue(f"{_shown(value)} is not a date (expected YYYY-MM-DD)") from None


def _datetime(value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) and len(value) >= 10 else _fail()
    except ValueError:
        raise BadValue(
            f"{_shown(value)} is not a date and time (expected ISO 8601, e.g. 2026-11-23T09:00:00Z)"
        ) from None
    # The store keeps naive UTC (the engine's convention).
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def _email(value: Any) -> str:
    text = _text(value).strip()
    problem = email_problem(text)
    if problem:
        raise BadValue(problem)
    return text


def _timezone(value: Any) -> str:
    text = _text(value)
    if text not in _zones():
        raise BadValue(
            f"'{text}' is not a time zone{did_you_mean(text, _zones())} (expected an IANA name, e.g. Europe/Paris)"
        )
    return text


def _fail() -> Any:
    raise ValueError


def _shown(value: Any) -> str:
    shown = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else f"'{value}'"
    return shown if len(shown) <= 60 else shown[:57] + "…'"


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "text": _text,
    "integer": _integer,
    "number": _number,
    "date": _date,
    "datetime": _datetime,
    "email": _email,
    "timezone": _timezone,
}


def convert(column: Column, value: Any) -> Any:
    """`value` as `column` stores it, or BadValue saying why not."""
    return converter(column.type)(value)


@cache
def converter(column_type: str) -> Callable[[Any], Any]:
    """The function turning a raw value into a stored one for `column_type` (BadValue if it cannot)."""
    parser = _PARSERS.get(column_type)
    if parser is not None:
        return parser
    choices = column_type.split("|")

    def one_of(value: Any) -> str:
        text = _text(value)
        if text not in choices:
            raise BadValue(f"'{text}' is not one of {', '.join(choices)}{did_you_mean(text, choices)}")
        return text

    return one_of


def bag_value(value: str) -> Any:
    """A CSV `traits.<key>` cell as JSON: true/false, numbers as numbers, anything else as text."""
    if value in ("true", "false"):
        return value == "true"
    if _INTEGER.match(value):
        return int(value)
    if _NUMBER.match(value):
        return float(value)
    return value
