"""The global send rate, shared by every dispatcher.

A limiter hands out *send times*: `reserve(n)` returns up to n wall-clock moments (unix seconds),
one per message, spaced `1 / rate` apart after every moment handed out before, to any dispatcher
(the store's schedule always n; Prefect's what is left of its current grant, the caller asking
again for the rest).
The sending threads wait for their moment, so the messages leave evenly paced rather than in
bursts, and the rate holds in any window, not just on average.

* `DatabaseRateLimiter`: the schedule lives in the `rate_limits` row of the store; the row is
  locked for the few microseconds of a reservation (an UPDATE first, which locks on SQLite and
  PostgreSQL alike). Used when no Prefect server is configured.
* `PrefectRateLimiter`: Prefect's global concurrency limit with slot decay, for deployments that
  run on a Prefect server: `prefect gcl create touchflow-send --limit N --slot-decay-per-second R`
  (`touchflow setup prefect` makes N = R × `GRANT_SECONDS`: a grant covers N / R seconds of
  sending). Slots are taken N at a time, one API call per grant, and spread 1 / R apart over
  the grant (see the class).

A send time is a promise to send *at* that moment, not "from then on": a message that finds its
moment passed by more than `late_slack(rate)` (its process stalled; `on_time` says so) is not
sent at once but given a new time (dispatch reserves again), so a stall never turns into a burst
of catching up. A dispatcher with nothing left to send gives back what it holds ahead (`release`);
one that dies, or stalls, leaves a gap of at most its window (the store's schedule) or its grant
(Prefect's limit).

Pacing needs the real wall clock (send times are shared between processes, so unix seconds, not
a monotonic clock): it is injected as `clock` (default `time.time`) and waiting as `sleep`
(default `time.sleep`), so tests drive both.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import Engine, select, update

from engine.store.bulk import conflict_insert
from engine.store.models import rate_limits

DEFAULT_NAME = "touchflow-send"
GRANT_SECONDS = 2
"""Seconds of sending one grant of Prefect's limit covers, as `touchflow setup prefect` sizes it
(rate × this). Each new grant costs a read and a request, ~0.1 s without a send on a busy server:
a grant of 2 s loses half what a grant of 1 s does, and a dispatcher that runs out of work gives
back what is left of its grant (`release`), so a longer one costs the others nothing at the end."""
POLL_SECONDS = 0.25
"""While another dispatcher's grant decays, how often the limit is read again: a grant given back
early (`release`) is taken within this."""
RELEASE_MARGIN = 0.25
"""Seconds ahead a send time must lie to be given back (`release`): the decrement must land while
the grant still holds it."""
GIVE_UP_SECONDS = 60.0
"""How long Prefect's API may keep failing (5xx, 429, no connection) before a reservation fails."""
_TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})

log = logging.getLogger("touchflow.ratelimit")


class RateLimitMissing(RuntimeError):
    """The configured Prefect limit does not exist (or cannot pace): says what to create."""


class RateLimiter(Protocol):
    """Hands out send times (unix seconds) at a fixed rate across processes."""

    rate: float

    def reserve(self, n: int) -> list[float]:
        """Between 1 and `n` consecutive send times (none for n <= 0); ask again for the rest."""
        ...

    def release(self) -> int:
        """Give back the send times taken but not handed out (nothing left to send); how many."""
        ...


class DatabaseRateLimiter:
    """A send-time schedule kept in the store's `rate_limits` table."""

    def __init__(
        self, engine: Engine, rate: float, name: str = DEFAULT_NAME, clock: Callable[[], float] = time.time
    ) -> None:
        if rate <= 0:
            raise ValueError("the rate must be positive")
        self.engine, self.rate, self.name, self.clock = engine, rate, name, clock

    def reserve(self, n: int) -> list[float]:
        """Reserve `n` consecutive send times; returns them (the first may be now)."""
        if n <= 0:
            return []
        gap = 1.0 / self.rate
        with self.engine.begin() as conn:
            conn.execute(
                conflict_insert(conn, rate_limits)
                .values(name=self.name, next_free_at=0.0)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            # Lock the row before reading it: the read and the write are one step for everyone.
            conn.execute(update(rate_limits).where(rate_limits.c.name == self.name).values(name=self.name))
            next_free = conn.execute(
                select(rate_limits.c.next_free_at).where(rate_limits.c.name == self.name)
            ).scalar_one()
            # Idle time is not banked: after a pause the schedule restarts at now, never in a burst.
            start = max(float(next_free), self.clock())
            conn.execute(
                update(rate_limits).where(rate_limits.c.name == self.name).values(next_free_at=start + n * gap)
            )
        return [start + i * gap for i in range(n)]

    def release(self) -> int:
        """Nothing to give back: every reservation is exactly what a window sends."""
        return 0


class PrefectRateLimiter:
    """Prefect's global concurrency limit `name` (with slot decay) as the global schedule.

    Slots are taken in bulk: one `POST /v2/concurrency_limits/increment` (mode `rate_limit`) for
    the limit's whole size L at a time. The server grants L slots only when the limit is empty, and
    they take L / decay seconds to decay, so no other dispatcher is granted anything before then:
    the grant *is* the interval [granted, granted + L / decay), and its L send times are spread
    evenly over it (1 / decay apart). Send times not handed out yet are kept for the next window
    while they lie ahead; one that has passed is dropped, never sent late in a burst. A window of
    up to L messages costs at most one API call (none while a grant lasts); asking for fewer slots
    than the limit's size could be granted while another dispatcher's slots are still decaying,
    and the two windows would overlap.

    Prefect's own `rate_limit()` helper retries a refused grant only after the server's
    `Retry-After` (at least L / decay, plus a random 0–30 %), and every refusal resets the limit's
    decay clock on the server (Prefect 3.8: it rewrites `updated` without applying the decay),
    losing the decay since the last grant: a few dispatchers asking on spec slowed 50/s down to
    ~20/s. So a dispatcher reads the limit (a GET, which changes nothing) until its slots have
    decayed — again every `POLL_SECONDS`, so a grant given back early (`release`) is seen — and
    asks only when a read says they are gone by then. Two that ask at once cost the loser's
    refusal: the winner's decay starts a few milliseconds late.

    The Prefect client's own retries are off for these calls: a request the server answers 503
    (a SQLite-backed server under concurrent writes does, after ~2 s) would be sent again 1–2 s
    later, blind, and its refusal would reset the decay clock of whoever holds the grant then.
    A failing call is followed by a read, then asked again, for up to `GIVE_UP_SECONDS`. (Prefect
    3.8's client still waits out its backoff once, 1.6–2.4 s, before it hands the 503 back: a
    failing call costs this dispatcher that long, the others nothing.)

    A limit that does not exist (or has no slot decay) is a configuration error. With a
    `fallback` (the store's schedule, `DatabaseRateLimiter`), the limiter warns once and uses it
    for the rest of its life — one tick —, so sending goes on at the same global rate and no
    claimed row is left behind by a failing reservation; without one it raises `RateLimitMissing`
    with what to run.
    """

    def __init__(
        self,
        rate: float,
        name: str = DEFAULT_NAME,
        clock: Callable[[], float] = time.time,
        *,
        fallback: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate, self.name, self.clock, self.sleep, self.fallback = rate, name, clock, sleep, fallback
        self.calls = 0
        """Requests for slots (granted or refused): one per grant unless dispatchers collide."""
        self.reads = 0
        """Reads of the limit's state (free for the rate: they change nothing on the server)."""
        self._lock = threading.Lock()
        self._ahead: deque[float] = deque()  # granted send times not handed out yet
        self._checked = False  # the limit read once, before the first grant
        self._use_fallback = False
        self._failing_since: float | None = None  # Prefect's API failing since (unix seconds)

    def reserve(self, n: int) -> list[float]:
        """Up to `n` send times (at least one) from this limiter's grant, asking the server for a
        new grant (L at a time) when none are left; blocks until the server grants it. Fewer than
        `n` when the grant runs out: the caller sends those and asks again for the rest."""
        if n <= 0:
            return []
        with self._lock:
            if not self._checked:
                self._checked = True
                self._read_limit()
            while True:
                if self._use_fallback:
                    assert self.fallback is not None
                    return self.fallback.reserve(n)
                # Passed unused (the answer to a grant takes a few ms, a window may come late):
                # gone, never a burst — and never handed out to be replaced at once (`on_time`).
                now = self.clock()
                while self._ahead and self._ahead[0] < now:
                    self._ahead.popleft()
                if self._ahead:
                    # Only what this grant still has: waiting for the next grant now would let
                    # these moments pass before the caller could use them (it asks again).
                    return [self._ahead.popleft() for _ in range(min(n, len(self._ahead)))]
                self._grant()

    def _read_limit(self) -> None:
        """Check that the limit exists, is active and decays; switch to the fallback if not."""
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        try:
            with get_client(sync_client=True) as client:
                self._usable(client.read_global_concurrency_limit_by_name(self.name))
        except ObjectNotFound:
            self._unusable(f"Prefect has no global concurrency limit '{self.name}'")

    def _usable(self, found: Any) -> bool:
        """Whether the limit as just read can pace (active, with slot decay); takes its decay as
        the rate. When it cannot, says so and switches to the fallback (or raises)."""
        if not found.active:
            self._unusable(f"Prefect's global concurrency limit '{self.name}' is not active")
            return False
        if not found.slot_decay_per_second:
            self._unusable(f"Prefect's global concurrency limit '{self.name}' has no slot decay")
            return False
        # The server's decay is the pace whatever touchflow.yaml says: it is what every
        # dispatcher, of any version, is granted slots by.
        if abs(found.slot_decay_per_second - self.rate) > 1e-9:
            log.warning(
                "Prefect's limit '%s' decays %g slots/s, touchflow.yaml's rate_limit is %g: %g/s holds",
                self.name,
                found.slot_decay_per_second,
                self.rate,
                found.slot_decay_per_second,
            )
            self.rate = float(found.slot_decay_per_second)
        return True

    def _unusable(self, problem: str) -> None:
        """The limit cannot pace: the store's schedule from now on (with a warning), or
        `RateLimitMissing` saying what to create when there is no fallback."""
        fix = (
            f"create it with `prefect gcl create {self.name} --limit {grant_slots(self.rate)}"
            f" --slot-decay-per-second {self.rate:g}` (or `touchflow setup prefect`)"
        )
        if self.fallback is None:
            raise RateLimitMissing(f"{problem}: {fix}")
        log.warning("%s: sending at %g/s by the store's schedule instead; %s", problem, self.fallback.rate, fix)
        self._ahead.clear()
        self._use_fallback = True

    def release(self) -> int:
        """Give back the send times of the current grant not handed out, once nothing is left to
        send: the others are granted the limit as soon as what was handed out has decayed,
        instead of waiting out the rest of the grant. Returns how many were given back.

        Safe for the rate: the server still counts every moment of this grant that has not
        passed (its count rounds up, and the grant started after this limiter asked for it), so
        what was handed out keeps the others waiting. Only moments `RELEASE_MARGIN` ahead or
        more are given back, in one request without retries and with a timeout of half that: a
        decrement applied once this grant has decayed would come off the next holder's grant.
        A failure to give back costs only the wait."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_REQUEST_TIMEOUT, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

        with self._lock:
            if self._use_fallback:
                assert self.fallback is not None
                return self.fallback.release()
            if not self._ahead:
                return 0
            quick = {PREFECT_CLIENT_MAX_RETRIES: 0, PREFECT_API_REQUEST_TIMEOUT: RELEASE_MARGIN / 2}
            unused = 0
            try:
                with temporary_settings(updates=quick), get_client(sync_client=True) as client:
                    cutoff = self.clock() + RELEASE_MARGIN  # read once the client is ready
                    unused = sum(1 for moment in self._ahead if moment > cutoff)
                    self._ahead.clear()
                    if unused:
                        client.release_concurrency_slots(
                            names=[self.name], slots=unused, occupancy_seconds=unused / self.rate
                        )
            except Exception as exc:  # they decay anyway: the others only wait longer
                self._ahead.clear()
                log.warning("could not give back %d send times of '%s': %s", unused, self.name, exc)
                return 0
            return unused

    def _grant(self) -> None:
        """One grant of the limit's whole size: its send times, evenly spread, join those ahead
        (or, the limit found deactivated or deleted, the switch to the fallback).

        Asked only when a read (which changes nothing on the server) says the limit is empty by
        then: a refused ask resets the limit's decay clock, losing the decay since its last
        change, so asking on spec would slow everyone down. The size asked for is the one just
        read: a limit resized while dispatchers run is never asked for by its old size (half a
        grant of the new one could be granted while the other half still decays)."""
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound
        from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

        with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 0}), get_client(sync_client=True) as client:
            while True:
                try:
                    self.reads += 1
                    found = client.read_global_concurrency_limit_by_name(self.name)
                    if not self._usable(found):
                        return
                    size, gap, busy = int(found.limit), 1.0 / self.rate, found.active_slots
                    if busy * gap > POLL_SECONDS:  # another's grant: read again, it may be given back
                        self.sleep(POLL_SECONDS)
                        continue
                    if busy > 0:  # decayed by the time this wakes: a refusal now costs the
                        self.sleep(busy * gap)  # winner only the few ms since its grant
                    self.calls += 1
                    # The moment of asking, not of the answer: the server granted after it, so
                    # the next grant anyone gets comes after this one's last send time.
                    start = self.clock()
                    granted = _increment(client, self.name, size)
                except ObjectNotFound:
                    self._unusable(f"Prefect's global concurrency limit '{self.name}' disappeared while sending")
                    return
                except Exception as exc:
                    if not _transient(exc):
                        raise
                    # Not granted as far as this limiter knows (at worst its grant goes unused).
                    # The deadline is the limiter's: with the API down, each late message's
                    # retiming does not wait it out again.
                    now = self.clock()
                    self._failing_since = self._failing_since if self._failing_since is not None else now
                    if now - self._failing_since > GIVE_UP_SECONDS:
                        raise
                    log.warning("Prefect's API failed while asking for send times (%s): asking again", exc)
                    self.sleep(0.05)  # the client has waited its backoff already (see the class)
                    continue
                self._failing_since = None
                if granted is not None:
                    break
        if not granted:  # an empty answer: the limit was deleted since it was read
            self._unusable(f"Prefect's global concurrency limit '{self.name}' disappeared while sending")
            return
        self._ahead.extend(start + i * gap for i in range(size))


def _transient(exc: Exception) -> bool:
    """Whether a failed call to Prefect's API is worth making again: no connection, a timeout, or
    a status that says "later" (429, 5xx)."""
    from httpx import HTTPStatusError, TransportError

    if isinstance(exc, HTTPStatusError):
        return exc.response.status_code in _TRANSIENT
    return isinstance(exc, TransportError)


def _increment(client: Any, name: str, slots: int) -> list[Any] | None:
    """Ask for `slots` slots of `name` in rate-limit mode: the limits that granted them (empty when
    the limit does not exist), or None when refused (423: the limit is not empty yet)."""
    from httpx import HTTPStatusError

    try:
        response = client.increment_concurrency_slots(names=[name], slots=slots, mode="rate_limit")
    except HTTPStatusError as exc:
        if exc.response.status_code == 423:
            return None
        raise
    return list(response.json())


def grant_slots(rate: float) -> int:
    """The size of Prefect's limit for `rate`: `GRANT_SECONDS` of sending (at least one slot)."""
    return max(1, round(rate * GRANT_SECONDS))


class Unlimited:
    """No rate at all: simulations and dry runs send nothing, so they wait for nothing."""

    rate = float("inf")

    def reserve(self, n: int) -> list[float]:
        """Send times that have all passed already."""
        return [0.0] * max(0, n)

    def release(self) -> int:
        """Nothing is ever held."""
        return 0


UNLIMITED = Unlimited()


def late_slack(rate: float) -> float:
    """How late (seconds) a message may still go at its send time: half a gap, at least 5 ms of
    thread wake-up. Any 1-second window then holds at most ⌊rate × (1 + slack)⌋ + 1 messages
    (51 at 50/s), and the provider, whose clock sees them after the network and its own
    scheduling, at most one more; later, it takes a new moment, and its old one is lost to the
    rate. (With a whole gap, 52 at 50/s, two busy dispatcher processes were seen at 53.)"""
    return max(0.5 / rate, 0.005) if rate != float("inf") else float("inf")


def on_time(
    limiter: RateLimiter,
    send_at: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> bool:
    """Wait for `send_at`; whether it is still the moment to send (late by at most `late_slack`).
    A message that is not needs a new moment (`limiter.reserve(1)`) before it may go."""
    wait_until(send_at, sleep=sleep, clock=clock)
    return clock() - send_at <= late_slack(limiter.rate)


def wait_until(
    moment: float, sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time
) -> None:
    """Sleep until `clock` (the wall clock, unix seconds) reaches `moment`."""
    delay = moment - clock()
    if delay > 0:
        sleep(delay)
