"""Prefect's limiter between grants: a grant given back early, and an API that fails for a moment.

Against a real Prefect API (the harness of the pacing tests), the limit made as `touchflow setup
prefect` makes it: `grant_slots(50)` = 100 slots decaying 50/s, grants of 2 s.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx
import pytest

from engine.policy.ratelimit import (
    POLL_SECONDS,
    RELEASE_MARGIN,
    PrefectRateLimiter,
    RateLimitMissing,
    grant_slots,
    wait_until,
)
from tests.policy.test_ratelimit_pacing import (
    RATE,
    create_limit,
    prefect_api,  # noqa: F401  (the pacing tests' fixture: a real Prefect API under the harness)
)

pytestmark = pytest.mark.prefect


def test_a_grant_given_back_is_taken_by_a_waiting_limiter_early(prefect_api: None) -> None:  # noqa: F811
    """A takes a grant of 2 s and hands out 10 send times; B waits for the limit. Once A's 10 have
    passed, A gives back the moments at least `RELEASE_MARGIN` ahead (about 65 of the 90 left): B
    is granted within that margin and a poll, not when A's grant would have decayed (~1.8 s), and
    B's first moment comes after A's last. Giving back twice gives back nothing more."""
    name = create_limit(grant_slots(RATE), RATE)
    first, second = PrefectRateLimiter(RATE, name=name), PrefectRateLimiter(RATE, name=name)
    handed = first.reserve(10)
    got: list[float] = []
    waiting = threading.Thread(target=lambda: got.extend(second.reserve(1)))
    waiting.start()
    wait_until(handed[-1] + 1 / RATE)
    given_back_at = time.time()
    given = first.release()
    waiting.join(timeout=10)
    assert 50 <= given <= 90 - RELEASE_MARGIN * RATE, given
    assert first.release() == 0
    assert len(got) == 1 and got[0] > handed[-1]
    assert got[0] - given_back_at < RELEASE_MARGIN + POLL_SECONDS + 0.25, (got[0] - given_back_at, second.reads)


def test_giving_back_never_lets_another_grant_start_before_what_was_handed_out(
    prefect_api: None,  # noqa: F811
) -> None:
    """A hands out 30 send times (0.6 s of them still ahead) and gives back the rest at once: the
    server still counts what was handed out, so B's first moment comes after A's last, never
    among them."""
    name = create_limit(grant_slots(RATE), RATE)
    first, second = PrefectRateLimiter(RATE, name=name), PrefectRateLimiter(RATE, name=name)
    handed = first.reserve(30)
    assert first.release() > 0
    got = second.reserve(1)
    assert got[0] >= handed[-1] + 1 / RATE - 0.005, got[0] - handed[-1]


def test_a_failing_request_for_slots_is_not_sent_again_blind(
    prefect_api: None,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first request for slots is answered 503 (as a SQLite-backed server under concurrent
    writes answers). The Prefect client's own retry would send it again 1–2 s later, blind: its
    refusal then resets the decay clock of whoever holds the limit by then. So the client's
    retries are off: the limiter says so in the log, reads the limit, and only then asks again."""
    name = create_limit(grant_slots(RATE), RATE)
    requests: list[tuple[str, int]] = []
    real_send = httpx.Client.send

    def send(self: httpx.Client, request: httpx.Request, *args: Any, **kwargs: Any) -> httpx.Response:
        asking = request.url.path.endswith("/concurrency_limits/increment")
        if asking and not any(kind == "ask" for kind, _ in requests):
            requests.append(("ask", 503))
            return httpx.Response(503, request=request, text="database is locked")
        response = real_send(self, request, *args, **kwargs)
        if asking or request.url.path.endswith(f"/concurrency_limits/{name}"):
            requests.append(("ask" if asking else "read", response.status_code))
        return response

    monkeypatch.setattr(httpx.Client, "send", send)
    limiter = PrefectRateLimiter(RATE, name=name)
    with caplog.at_level(logging.WARNING, logger="touchflow.ratelimit"):
        moments = limiter.reserve(5)
    assert len(moments) == 5 and limiter.calls == 2
    # read (size) · read · ask 503 · read · ask granted: never two asks in a row.
    assert requests == [("read", 200), ("read", 200), ("ask", 503), ("read", 200), ("ask", 200)], requests
    assert "asking again" in caplog.text and "503" in caplog.text


def test_a_limit_changed_while_sending_is_taken_as_it_is_now(prefect_api: None) -> None:  # noqa: F811
    """Resized while a dispatcher runs, the limit is asked for by its new size (by the old one,
    half a grant of the new size could be granted while the other half still decays); made
    inactive, it is no limit any more: without a fallback the limiter stops, saying so."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    name = create_limit(20, RATE)
    limiter = PrefectRateLimiter(RATE, name=name)
    assert 15 <= len(limiter.reserve(20)) <= 20  # the first moments pass while the answer comes
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=30))
    assert 25 <= len(limiter.reserve(50)) <= 30  # one grant of the new size (the old: 20 at most)
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active=False))
    with pytest.raises(RateLimitMissing, match="is not active"):
        limiter.reserve(50)
