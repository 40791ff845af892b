"""Email address checks shared by planning (skip a contact) and dispatch (never build a bad header)."""

from __future__ import annotations

import re
from email._header_value_parser import SPECIALS, quote_string
from email.errors import HeaderParseError
from email.headerregistry import Address

from engine.header_text import shown

_EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# RFC 5322 dot-atoms on both sides: always valid, so the (slow) header parser can be skipped for
# the addresses nearly everyone has. Anything else goes through the parser.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_ENCODED = re.compile(r"=\?[^?]*\?[bBqQ]\?[^?]*\?=")
_PLAIN = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+$")


def email_problem(address: str) -> str | None:
    """Why `address` cannot receive email, or None."""
    if _ENCODED.search(address or ""):  # valid atext, but mail clients decode it (RFC 2047 forbids it here)
        return f"{shown(address)} holds an RFC 2047 encoded word"
    if _PLAIN.match(address or ""):
        return None
    if not _EMAIL_SHAPE.match(address or ""):
        return f"{shown(address or '')} is not an email address"
    try:
        Address(addr_spec=address)
    except (ValueError, IndexError, HeaderParseError) as exc:
        # Both go to the audit: shown escaped, never with the control characters themselves.
        return f"{shown(address)} is not a valid address: {shown(str(exc), 200)[1:-1]}"
    return None


def display_address(name: str, address: str) -> str:
    """`name <address>` as a mail client shows it: exactly `str(Address(name, addr_spec=address))`
    (the name quoted where it must be), without the header parser for the plain dot-atom
    addresses nearly everyone has — the parser costs more than the rest of archiving a message."""
    if not _PLAIN.match(address):
        return str(Address(display_name=name, addr_spec=address))
    if not name:
        return address
    if not SPECIALS.isdisjoint(name):
        name = quote_string(name)
    return f"{name} <{address}>"
