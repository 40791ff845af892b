"""Who may do what in the console: permissions per role, and the `Page` every route is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.responses import Response

if TYPE_CHECKING:
    from engine.console.pages import PageContext

GRANTS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "marketer": frozenset({"read", "review", "test_send", "approve"}),
    "manager": frozenset({"read", "audit", "reports"}),
    "admin": frozenset({"read", "review", "test_send", "approve", "audit", "reports", "admin"}),
}
"""The permissions of each role: an admin everything; a marketer reviews, test-sends and approves
content; a manager reads audit and reports; a viewer reads."""


def allowed(role: str, permission: str) -> bool:
    """True when `role` holds `permission` (an unknown role holds nothing)."""
    return permission in GRANTS.get(role, frozenset())


@dataclass(frozen=True)
class Page:
    """One route of the console: checked by role on the server before `handler` runs."""

    path: str
    handler: Callable[[PageContext], Response]
    permission: str
    methods: tuple[str, ...] = ("GET",)
    name: str = ""
