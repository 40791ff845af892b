"""Prefect's global send rate shared by dispatcher processes: the production path.

`touchflow run --dispatchers N` on a Prefect worker spawns N dispatcher processes
(`engine/tick/dispatchers.py`), each building its limiter from `touchflow.yaml` through
`make_limiter`: with `rate_limiter: prefect`, Prefect's global concurrency limit `touchflow-send`
(slot decay), falling back to the store's schedule with a warning when the limit cannot be read.

Here a real Prefect server runs as deployed, on PostgreSQL (`tests/prefect_server.py`: a
SQLite-backed server answers concurrent slot requests 503 after ~2 s). Its URL is put in
`os.environ` for the spawned processes (a process without it finds no limit and falls back: this
test then fails on the store's schedule) and in this process's Prefect settings. The limit is made
as `touchflow setup prefect` makes it (100 slots decaying 50/s: grants of 2 s). Two dispatcher
processes send MESSAGES emails through the fake SendGrid (its own process, answering after 50 ms)
on PostgreSQL, once for the module; the tests read that run. Its figures at the provider also
depend on the machine scheduling four processes (two dispatchers, the provider, the Prefect
server) on time: when a run misses one, the same messages are planned again and sent once more,
up to RUNS, as the in-process rate tests do (`check_rate_at_provider`). Exactly once and the use
of Prefect's limit are checked in every run.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from benchmarks.dispatch import NOW
from engine.cli.setup import apply
from engine.policy.ratelimit import DEFAULT_NAME, GRANT_SECONDS
from engine.project import Project, load_project
from engine.store.db import connect
from engine.store.models import ledger, rate_limits
from engine.tick.dispatchers import dispatch_in_processes
from tests.conftest import _pg_or_skip, migrated_pg_schema
from tests.dispatch_scenario import CAPPED_SENDGRID
from tests.fakes.provider_process import Arrival, provider_process
from tests.policy.test_ratelimit_pacing import (
    BUSIEST,
    MEAN_RATE,
    busiest_second,
    mean_rate,
    plan,
    plan_again,
    statuses,
)
from tests.prefect_server import prefect_server_on_postgres

pytestmark = pytest.mark.prefect

DISPATCHERS = 2
MESSAGES = 1024
"""About twenty seconds of sending at 50/s: ten grants, taken by both processes in turn."""
BATCH = 250
"""Rows per claim: each process claims twice, as in a tick with a backlog (a tick claims 500)."""
RUNS = 3
"""Runs at most, until one meets both figures (the first usually does)."""
PREFECT_SENDGRID = CAPPED_SENDGRID.replace("rate_limiter: database", "rate_limiter: prefect")
"""The scenario's SendGrid project (8 sending threads, one attempt, 50/s), its rate kept by Prefect."""


@dataclass(frozen=True)
class Run:
    """What the module's one dispatch left: the provider's view, the store's, Prefect's."""

    arrivals: list[Arrival]
    sent_by: list[int]
    statuses: dict[str, int]
    channels: dict[str, int]
    schedules: list[str]
    """Rows of the store's `rate_limits` schedule (a `DatabaseRateLimiter` writes one at once)."""
    limit_before: Any
    limit_after: Any

    @property
    def moments(self) -> list[float]:
        """When each request reached the provider (unix seconds)."""
        return [arrival.at for arrival in self.arrivals]

    @property
    def mean(self) -> float:
        """Messages a second at the provider, from the first request to the last."""
        return mean_rate(self.moments)

    @property
    def busiest(self) -> int:
        """Messages in the busiest one-second window at the provider."""
        return busiest_second(self.moments)

    @property
    def meets_rate(self) -> bool:
        """The rate both held (BUSIEST) and reached (MEAN_RATE)."""
        return self.busiest <= BUSIEST and self.mean >= MEAN_RATE

    @property
    def pauses(self) -> list[tuple[float, float]]:
        """(seconds into the run, length) of each gap over 60 ms between requests (50/s: 20 ms)."""
        moments = sorted(self.moments)
        return [(round(a - moments[0], 2), round(b - a, 3)) for a, b in itertools.pairwise(moments) if b - a > 0.06]


def read_limit(name: str) -> Any:
    """The global concurrency limit `name` as the Prefect API reports it now."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name)


@pytest.fixture(scope="module")
def pg_base() -> str:
    """The test server's URL, or a skip before the Prefect server takes its ~15 s to start."""
    return _pg_or_skip()


@pytest.fixture(scope="module")
def prefect_api(pg_base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prefect server on PostgreSQL, this process's Prefect client pointed at it; its URL."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        prefect_server_on_postgres(pg_base, tmp_path_factory.mktemp("prefect-home")) as api,
        temporary_settings(updates={PREFECT_API_URL: api}),
    ):
        yield api


@pytest.fixture(scope="module")
def runs(pg_base: str, prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Run]]:
    """Plan MESSAGES emails in a fresh PostgreSQL schema, create `touchflow-send` on the Prefect
    server, and dispatch them in DISPATCHERS processes that see the API through the environment;
    again, planned again, until a run meets the rate (`Run.meets_rate`), RUNS at most."""
    with migrated_pg_schema(pg_base, "tp") as db_url, pytest.MonkeyPatch.context() as env:
        env.setenv("PREFECT_API_URL", prefect_api)  # inherited by the spawned processes; restored after
        db = connect(db_url)
        try:
            proj = plan(db, db_url, tmp_path_factory.mktemp("prefect-processes"), MESSAGES, "sendgrid")
            (proj.settings.project_dir / "touchflow.yaml").write_text(PREFECT_SENDGRID, encoding="utf-8")
            proj = load_project(proj.settings)
            assert proj.delivery.policy.rate_limiter == "prefect" and proj.delivery.policy.rate_limit == 50
            # As `touchflow setup prefect` makes it; the name is fixed (touchflow.yaml names none).
            assert any(line.startswith(f"limit '{DEFAULT_NAME}': created") for line in apply(proj))
            done: list[Run] = []
            while len(done) < RUNS and not any(r.meets_rate for r in done):
                if done:
                    plan_again(db)
                    time.sleep(GRANT_SECONDS)  # the last grant decayed: the next run starts as the first did
                done.append(dispatch_once(db, proj, env))
            yield done
        finally:
            db.dispose()


def dispatch_once(db: Engine, proj: Project, env: pytest.MonkeyPatch) -> Run:
    """Dispatch the planned emails in DISPATCHERS processes against a fresh fake provider."""
    before = read_limit(DEFAULT_NAME)
    with provider_process(latency=0.05) as fake:
        env.setenv("SENDGRID_API_KEY", "SG.prefect-processes")
        env.setenv("TOUCHFLOW_SENDGRID_HOST", fake.url)  # read by each spawned process
        reports = dispatch_in_processes(
            proj.settings, NOW, "prefect", ["paced"], DISPATCHERS, batch=BATCH, archive=False
        )
        arrivals = fake.arrivals()
    after = read_limit(DEFAULT_NAME)
    with db.connect() as conn:
        channels = conn.execute(select(ledger.c.channel, func.count()).group_by(ledger.c.channel)).all()
        schedules = conn.execute(select(rate_limits.c.name)).scalars().all()
    return Run(
        arrivals=arrivals,
        sent_by=[sum(r.counts["emails"].values()) for r in reports],
        statuses=statuses(db),
        channels={channel: int(n) for channel, n in channels},
        schedules=list(schedules),
        limit_before=before,
        limit_after=after,
    )


def test_every_message_once_from_both_processes(runs: list[Run]) -> None:
    """Every email at the provider exactly once, both processes sending; the ledger has every
    row `sent` on the sendgrid channel (nothing left claimed or sending). In every run."""
    for run in runs:
        keys = [key for arrival in run.arrivals for key in arrival.send_keys]
        assert len(keys) == len(set(keys)) == MESSAGES
        assert sum(run.sent_by) == MESSAGES and all(run.sent_by), run.sent_by
        assert run.statuses == {"sent": MESSAGES}, run.statuses
        assert run.channels == {"sendgrid": MESSAGES}, run.channels


def test_the_prefect_limit_kept_the_rate(runs: list[Run]) -> None:
    """The processes used Prefect's limit, not the store's schedule: no `rate_limits` row was
    written (the fallback writes one at its first reservation) and the server changed the limit
    (granting slots updates it). In every run."""
    for run in runs:
        assert run.schedules == [], f"the store's schedule was used: {run.schedules}"
        assert run.limit_after.updated > run.limit_before.updated, (run.limit_before, run.limit_after)


def test_a_run_holds_the_rate_and_reaches_it(runs: list[Run]) -> None:
    """At most 52 messages reach the provider in any one second: 50/s and half a gap of slack
    make 51 sent (`late_slack`), and one more for the provider seeing them after the network.
    At least 45/s on average, from the first request to the last: each grant boundary costs
    ~0.1 s of reads and a request, and a process out of work gives back the rest of its grant
    instead of leaving the other to wait it out. Both in the same run."""
    for run in runs:
        print(
            f"\nPrefect × {DISPATCHERS} processes: {run.mean:.1f}/s, busiest second {run.busiest},"
            f" sent per process {run.sent_by}; pauses over 60 ms (at, length): {run.pauses}"
        )
    assert any(run.meets_rate for run in runs), [(run.busiest, run.mean, run.pauses) for run in runs]
