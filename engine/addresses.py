"""Email address checks shared by planning (skip a contact) and dispatch (never build a bad header)."""

from __future__ import annotations

import re
from email.errors import HeaderParseError
from email.headerregistry import Address

_EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def email_problem(address: str) -> str | None:
    """Why `address` cannot receive email, or None."""
    if not _EMAIL_SHAPE.match(address or ""):
        return f"'{address}' is not an email address"
    try:
        Address(addr_spec=address)
    except (ValueError, IndexError, HeaderParseError) as exc:
        return f"'{address}' is not a valid address: {exc}"
    return None
