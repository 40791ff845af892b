"""The suppression list as planning and dispatch read it: who may not be emailed, and which
audit reason says why."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, select

from engine.audit import Reason
from engine.store.models import suppressions

REASONS = {
    "unsubscribe": Reason.SUPPRESSED_UNSUBSCRIBED,
    "group_unsubscribe": Reason.SUPPRESSED_UNSUBSCRIBED,
    "bounce": Reason.SUPPRESSED_BOUNCED,
    "dropped": Reason.SUPPRESSED_BOUNCED,
    "spamreport": Reason.SUPPRESSED_SPAM,
}
"""`suppressions.reason` → the audit reason of a message not sent because of it."""

_CHUNK = 1000


def reason_for(listed_as: str) -> Reason:
    """The audit reason for an address suppressed as `listed_as` (manual entries and the rest:
    `suppressed`)."""
    return REASONS.get(listed_as, Reason.SUPPRESSED_OTHER)


def listed(conn: Connection, addresses: Iterable[str]) -> dict[str, str]:
    """Lower-cased address → why it is on the suppression list, for those of `addresses` that are."""
    wanted = sorted({a.strip().lower() for a in addresses if a})
    found: dict[str, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        query = select(suppressions.c.email, suppressions.c.reason).where(
            suppressions.c.email.in_(wanted[start : start + _CHUNK])
        )
        found.update({r.email: r.reason for r in conn.execute(query)})
    return found
