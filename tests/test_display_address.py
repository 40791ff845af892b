"""`display_address` is exactly what the header parser's `Address` shows, hostile names included."""

from __future__ import annotations

from email.headerregistry import Address

import pytest

from engine.addresses import display_address

NAMES = [
    "",
    "Ada Lovelace",
    "Lovelace, Ada",
    'Ada "The Countess" Lovelace',
    "back\\slash",
    "semi;colon: <angle> (paren) [bracket] @at .dot",
    "김민지",
    "שלום עולם",
    "emoji 🎉 party",
    "\u202eevil",
    " leading and trailing ",
    "a" * 300,
]
ADDRESSES = [
    "ada@example.com",
    "first.last+tag@sub.example.co.uk",
    "o'brien@example.com",
    "x{y}|z~@example.org",
    '"quoted local"@example.com',  # not a dot-atom: the parser's path
    "user@[127.0.0.1]",
]


@pytest.mark.parametrize("address", ADDRESSES)
@pytest.mark.parametrize("name", NAMES)
def test_display_address_is_what_address_shows(name: str, address: str) -> None:
    assert display_address(name, address) == str(Address(display_name=name, addr_spec=address))
