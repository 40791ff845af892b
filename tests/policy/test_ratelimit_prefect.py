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

from engine.policy.ratelimit import POLL_SECONDS, PrefectRateLimiter, grant_slots, wait_until
from tests.policy.test_ratelimit_pacing import (
    RATE,
    create_limit,
    prefect_api,  # noqa: F401  (the pacing tests' fixture: a real Prefect API under the harness)
)

pytestmark = pytest.mark.prefect


def test_a_grant_given_back_is_taken_by_a_waiting_limiter_at_once(prefect_api: None) -> None:  # noqa: F811
    """A takes a grant of 2 s and hands out 10 send times; B waits for the limit. Once A's 10 have
    passed, A gives back the rest (about 90): B is granted within one poll of it, not when A's
    grant would have decayed, and B's first moment comes after A's last. Giving back twice gives
    back nothing more."""
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
    assert 85 <= given <= 90, given
    assert first.release() == 0
    assert len(got) == 1
    assert got[0] > handed[-1]
    # Without giving back, B would wait until A's grant decays: ~1.8 s from here.
    assert got[0] - given_back_at < POLL_SECONDS + 0.2, (got[0] - given_back_at, second.reads)


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
