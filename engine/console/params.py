"""Whole numbers from query strings and forms: one parser for every page, because each way of
writing it by hand failed on a hostile value. `str.isdigit()` passes '²', which `int()` refuses;
`int()` alone takes '٣' and '1_0'; and a few thousand digits make `int()` raise. Each was a 500."""

from __future__ import annotations

BIGINT_MAX = 2**63 - 1
"""The largest id either database can hold (PostgreSQL would refuse the comparison)."""


def whole_number(raw: str | None, low: int = 1, high: int = BIGINT_MAX) -> int | None:
    """`raw`, stripped, as a whole number in [low, high], written in ASCII digits; None for
    anything else (absent, empty, signs, other scripts' digits, too long, out of range)."""
    text = (raw or "").strip()
    if not text or not (text.isascii() and text.isdigit()) or len(text) > len(str(high)):
        return None
    number = int(text)
    return number if low <= number <= high else None
