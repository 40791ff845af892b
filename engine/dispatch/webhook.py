"""POST JSON to a webhook with a timeout and retries (429 and 5xx, timeouts, refused connections)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from engine.dispatch.retry import backoff, retry_after

MAX_BACKOFF_S = 30.0
BACKOFF_BASE_S = 0.5


class WebhookError(Exception):
    """The webhook failed for good; the message is safe for the audit (no URL: it may hold a secret)."""


def post_json(
    url: str,
    body: dict[str, Any],
    timeout_s: float,
    retries: int,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> int:
    """POST `body` to `url`; return the HTTP status. Retries with exponential backoff and jitter,
    honouring Retry-After (seconds, or an HTTP-date read against `clock`); other 4xx answers fail
    at once."""
    data = json.dumps(body).encode()
    if not url.startswith(("http://", "https://")):
        raise WebhookError("the URL is not an http(s) URL")  # never echo it: it may hold a secret
    last = ""
    for attempt in range(retries + 1):
        request = urllib.request.Request(
            url, data=data, method="POST", headers={"Content-Type": "application/json", "User-Agent": "touchflow"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read(300).decode('utf-8', 'replace').strip()}"
            if exc.code != 429 and exc.code < 500:
                raise WebhookError(last) from None
            wait = retry_after(exc.headers.get("Retry-After"), cap=MAX_BACKOFF_S, clock=clock)
        except ValueError:
            raise WebhookError("the URL is malformed") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            last = f"{type(reason).__name__}: {reason}"
            wait = None
        if attempt < retries:
            sleep(wait if wait is not None else backoff(attempt, base=BACKOFF_BASE_S, cap=MAX_BACKOFF_S))
    raise WebhookError(f"gave up after {retries + 1} attempts; last: {last}")


def no_post(url: str, body: dict[str, Any], timeout_s: float, retries: int) -> int:
    """Stands in for `post_json` in dry runs and simulations: reaches no one, answers 200."""
    return 200
