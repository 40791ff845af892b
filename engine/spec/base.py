"""Shared pydantic configuration and value types of the playbook language."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema


class SpecModel(BaseModel):
    """Base of every spec model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        use_attribute_docstrings=True,
        strict=False,
    )


_DURATION = re.compile(r"^\s*(-?)\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: Any, *, signed: bool) -> timedelta:
    """'90d', '12h', '30m', '2w' (and '-90d' where signed) → timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("expected a duration such as '14d', '12h' or '2w'")
    if isinstance(value, int):
        raise ValueError(f"a duration needs a unit: write '{value}d' for {value} days")
    m = _DURATION.match(value)
    if not m:
        raise ValueError(f"'{value}' is not a duration; write a number and a unit: 10s, 30m, 12h, 14d, 2w")
    sign, amount, unit = m.groups()
    if sign and not signed:
        raise ValueError(f"'{value}': this duration cannot be negative")
    seconds = int(amount) * _UNIT_SECONDS[unit]
    return timedelta(seconds=-seconds if sign else seconds)


def format_duration(value: timedelta) -> str:
    """The shortest way to write `value` in the language ('90d', '-2w', '12h')."""
    seconds = int(value.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    for unit in ("w", "d", "h", "m", "s"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{sign}{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{sign}{seconds}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(lambda v: parse_duration(v, signed=False)),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^\d+(s|m|h|d|w)$", "examples": ["14d", "12h"]}),
]
"""A length of time: a whole number and a unit (s, m, h, d, w)."""

SignedDuration = Annotated[
    timedelta,
    BeforeValidator(lambda v: parse_duration(v, signed=True)),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(s|m|h|d|w)$", "examples": ["-90d", "30d"]}),
]
"""A length of time that may be negative ('-90d' is 90 days before)."""

Scalar = Annotated[
    bool | int | float | date | datetime | str,
    WithJsonSchema({"type": ["string", "number", "boolean"]}),
]
"""A value a field is compared with."""
