"""How long to wait before trying again: exponential backoff, and the server's own word for it.

One place for the arithmetic every retrying caller shares — the sending threads retrying a
channel's retryable answer, the dispatch-to-dispatch retry of a message, the webhook poster — and
for reading `Retry-After` (seconds or an HTTP-date, RFC 9110 §10.2.3) and SendGrid's
`X-RateLimit-Reset`. Reading an HTTP-date needs the wall clock: it is a parameter (`clock`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime

_MAX_DOUBLINGS = 64
"""More doublings than any base and cap need: keeps a huge retry count from overflowing a float."""

_RESET_IS_A_MOMENT = 1e9
"""An X-RateLimit-Reset above this is a unix time (SendGrid's form), below it a number of seconds."""


def backoff(
    retry: int,
    *,
    base: float,
    cap: float,
    jitter: bool = True,
    rand: Callable[[], float] | None = None,
) -> float:
    """Seconds to wait before retry number `retry` (0 for the first): `base` doubled per retry, at
    most `cap`; with `jitter`, scaled by `0.5 + rand()` (default: the `random` module's), so
    clients that failed together do not come back together."""
    delay = min(cap, base * 2.0 ** min(max(retry, 0), _MAX_DOUBLINGS))
    if not jitter:
        return delay
    # Looked up at call time, so the process's random source (and a test's stand-in) is the one used.
    draw = rand if rand is not None else random.random
    return float(delay * (0.5 + draw()))


def retry_after(value: str | None, *, cap: float, clock: Callable[[], float] = time.time) -> float | None:
    """The seconds a `Retry-After` value asks for — delta-seconds, or an HTTP-date measured from
    `clock()` (unix seconds) — clamped to [0, `cap`]; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000" and the obsolete forms: RFC 9110 dates are always GMT
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - clock()
    return _clamped(seconds, cap)


def reset_after(value: str | None, *, cap: float, clock: Callable[[], float] = time.time) -> float | None:
    """The seconds an `X-RateLimit-Reset` value asks for — a unix time (as SendGrid sends it)
    measured from `clock()`, or plain seconds — clamped to [0, `cap`]; None when unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if seconds > _RESET_IS_A_MOMENT:
        seconds -= clock()  # a reset moment, not a delay
    return _clamped(seconds, cap)


def _clamped(seconds: float, cap: float) -> float:
    # max() first: a NaN compares false, so it becomes 0.0 rather than poisoning the wait.
    return min(cap, max(0.0, seconds))
