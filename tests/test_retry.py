"""Backoff and Retry-After (`engine/dispatch/retry.py`), and the three places that use them: the
in-dispatch retries of a channel's retryable answers, the webhook poster, and the SendGrid
channel's reading of a 429. Clocks and sleeps are injected, so nothing here waits for real."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.dispatch.channels import STALE_TEMP_S, TEMP_PREFIX, OutboxChannel, OutgoingEmail, SendError
from engine.dispatch.retry import backoff, reset_after, retry_after
from engine.dispatch.sendgrid_channel import SendGridChannel
from engine.dispatch.webhook import post_json
from engine.policy.ratelimit import wait_until
from engine.render import RenderedEmail
from tests.fakes.sendgrid_server import FakeSendGrid

T0 = 1_800_000_000.0  # a frozen wall clock (unix seconds)


def http_date(at: float) -> str:
    """`at` (unix seconds) as an IMF-fixdate, the form RFC 9110 asks servers to send."""
    return format_datetime(datetime.fromtimestamp(at, UTC), usegmt=True)


# --- backoff ------------------------------------------------------------------------------------


def test_backoff_doubles_from_its_base_up_to_the_cap() -> None:
    waits = [backoff(n, base=0.25, cap=30.0, jitter=False) for n in range(10)]
    assert waits == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_jitter_spreads_a_wait_between_half_and_one_and_a_half_times() -> None:
    assert backoff(3, base=0.5, cap=30.0, rand=lambda: 0.0) == 2.0
    assert backoff(3, base=0.5, cap=30.0, rand=lambda: 0.5) == 4.0
    assert backoff(10, base=0.5, cap=30.0, rand=lambda: 0.75) == 37.5  # the cap, then the jitter
    drawn = [backoff(2, base=1.0, cap=30.0) for _ in range(500)]  # the process's random numbers
    assert all(2.0 <= w < 6.0 for w in drawn)
    assert len(set(drawn)) > 400  # clients that failed together do not retry together


def test_a_huge_retry_count_stays_at_the_cap() -> None:
    """A ledger row's attempts keep growing through a long outage; the wait must not overflow."""
    assert backoff(10_000, base=60.0, cap=3600.0, jitter=False) == 3600.0
    assert backoff(0, base=60.0, cap=3600.0, jitter=False) == 60.0


# --- Retry-After and X-RateLimit-Reset ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5", 5.0), ("0", 0.0), ("1.5", 1.5), (" 7 ", 7.0), ("-3", 0.0), ("120", 30.0), ("nan", 0.0)],
)
def test_retry_after_in_seconds_is_clamped_to_zero_and_the_cap(value: str, seconds: float) -> None:
    assert retry_after(value, cap=30.0, clock=lambda: T0) == seconds


@pytest.mark.parametrize("value", [None, "", "soon", "Wed, 32 Foo 2026 25:61:00 GMT"])
def test_an_absent_or_unreadable_retry_after_says_nothing(value: str | None) -> None:
    assert retry_after(value, cap=30.0, clock=lambda: T0) is None


def test_retry_after_as_an_http_date_is_the_time_left_until_it() -> None:
    assert retry_after(http_date(T0 + 12), cap=30.0, clock=lambda: T0) == 12.0
    assert retry_after(http_date(T0 - 100), cap=30.0, clock=lambda: T0) == 0.0  # already past
    assert retry_after(http_date(T0 + 3600), cap=30.0, clock=lambda: T0) == 30.0
    # The obsolete asctime form RFC 9110 still asks recipients to accept.
    asctime = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(T0 + 9))
    assert retry_after(asctime, cap=30.0, clock=lambda: T0) == 9.0


def test_rate_limit_reset_is_a_moment_when_large_and_seconds_otherwise() -> None:
    assert reset_after(str(int(T0) + 42), cap=60.0, clock=lambda: T0) == 42.0
    assert reset_after(str(int(T0) - 5), cap=60.0, clock=lambda: T0) == 0.0
    assert reset_after("4", cap=60.0, clock=lambda: T0) == 4.0
    assert reset_after(str(int(T0) + 900), cap=60.0, clock=lambda: T0) == 60.0
    assert reset_after("later", cap=60.0, clock=lambda: T0) is None


# --- the webhook poster ---------------------------------------------------------------------------


class _Scripted(BaseHTTPRequestHandler):
    """Answers each POST with the next (status, headers) of the server's script."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server = self.server
        assert isinstance(server, _ScriptServer)
        status, headers = server.script.pop(0) if server.script else (200, {})
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _ScriptServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Scripted)
        self.script: list[tuple[int, dict[str, str]]] = []


@pytest.fixture
def hook() -> Iterator[_ScriptServer]:
    server = _ScriptServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _url(server: _ScriptServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/hook"


def test_the_webhook_waits_as_long_as_retry_after_says_in_seconds(hook: _ScriptServer) -> None:
    hook.script = [(429, {"Retry-After": "3"}), (503, {"Retry-After": "600"}), (200, {})]
    sleeps: list[float] = []
    assert post_json(_url(hook), {"a": 1}, 2.0, retries=2, sleep=sleeps.append) == 200
    assert sleeps == [3.0, 30.0]  # the webhook's cap


def test_the_webhook_honours_retry_after_as_an_http_date(hook: _ScriptServer) -> None:
    hook.script = [(503, {"Retry-After": http_date(time.time() + 20)}), (200, {})]
    sleeps: list[float] = []
    assert post_json(_url(hook), {"a": 1}, 2.0, retries=1, sleep=sleeps.append) == 200
    (waited,) = sleeps
    assert 18.0 <= waited <= 20.0  # the date has whole seconds; the request took a moment


def test_the_webhook_backs_off_with_jitter_without_retry_after(
    hook: _ScriptServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("engine.dispatch.retry.random.random", lambda: 0.0)
    hook.script = [(500, {}), (500, {}), (500, {}), (200, {})]
    sleeps: list[float] = []
    assert post_json(_url(hook), {"a": 1}, 2.0, retries=3, sleep=sleeps.append) == 200
    assert sleeps == [0.25, 0.5, 1.0]  # 0.5 s doubled per retry, times 0.5 + 0.0


# --- the SendGrid channel -------------------------------------------------------------------------


def _email() -> OutgoingEmail:
    rendered = RenderedEmail(
        subject="Hello", html="<p>Hello</p>", text="Hello", locale="en", template_file="hello.en.html"
    )
    return OutgoingEmail(
        send_key="k" * 32,
        sender_name="Team",
        sender_email="team@example.com",
        to_name="Ada",
        to_email="ada@example.com",
        rendered=rendered,
        playbook_id="hello",
        step_id="hello",
        at=datetime(2026, 11, 2, 9, 0),
    )


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


def test_sendgrid_reads_retry_after_as_an_http_date(fake: FakeSendGrid) -> None:
    fake.inject(("status", 429, {"Retry-After": http_date(time.time() + 20)}))
    with pytest.raises(SendError) as caught:
        SendGridChannel("SG.test-key", fake.url, 5).send(_email())
    assert caught.value.kind == "retry"
    assert caught.value.retry_after is not None and 18.0 <= caught.value.retry_after <= 20.0


def test_sendgrid_reads_the_rate_limit_reset_against_its_clock(fake: FakeSendGrid) -> None:
    fake.inject(("status", 429, {"X-RateLimit-Reset": str(int(T0) + 42)}))
    with pytest.raises(SendError) as caught:
        SendGridChannel("SG.test-key", fake.url, 5, clock=lambda: T0).send(_email())
    assert (caught.value.kind, caught.value.retry_after) == ("retry", 42.0)


def test_sendgrid_prefers_retry_after_to_the_reset(fake: FakeSendGrid) -> None:
    fake.inject(("status", 429, {"Retry-After": "7", "X-RateLimit-Reset": str(int(T0) + 42)}))
    with pytest.raises(SendError) as caught:
        SendGridChannel("SG.test-key", fake.url, 5, clock=lambda: T0).send(_email())
    assert caught.value.retry_after == 7.0


# --- pacing ---------------------------------------------------------------------------------------


def test_wait_until_sleeps_by_the_injected_clock() -> None:
    sleeps: list[float] = []
    wait_until(T0 + 3.0, sleep=sleeps.append, clock=lambda: T0)
    wait_until(T0 - 1.0, sleep=sleeps.append, clock=lambda: T0)  # already due: no sleep
    assert sleeps == [3.0]


def test_the_outbox_ages_temp_files_by_its_injected_clock(tmp_path: Path) -> None:
    """The sweep of a dead writer's temp files compares their age with the channel's clock."""
    outbox = tmp_path / "outbox"
    now = time.time()
    later = OutboxChannel(outbox, clock=lambda: now + STALE_TEMP_S + 60)
    later.send(_email())
    left = outbox / f"{TEMP_PREFIX}killed.eml"
    left.write_bytes(b"From: half a message")
    assert OutboxChannel(outbox, clock=lambda: now).write_index() is not None
    assert left.exists()  # young by this clock
    assert later.write_index() is not None
    assert not left.exists()  # over an hour old by this one
