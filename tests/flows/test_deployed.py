"""Touchflow as deployed: a real Prefect server, `touchflow setup prefect`, `prefect deploy --all`
from prefect.yaml (its pull step cloning a bare repository of the code under test at the deployed
commit), two `prefect worker start` processes against PostgreSQL, SendGrid faked on a local port,
a send rate set — and two overlapping tick runs.

Checked: every message sent exactly once, the rate held, nothing left claimed, the ledger's and the
audit's channel the configured one. Slow (about a minute); every process started here is killed
with its process group at the end, also on failure.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import func, select

from demo.data import generate
from engine.store.db import connect
from engine.store.models import audit_log, ledger
from tests.conftest import _pg_or_skip, migrated_pg_schema
from tests.fakes.sendgrid_server import FakeSendGrid
from tests.prefect_server import free_port, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.prefect]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RATE = 20  # messages per second, across both workers
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@contextmanager
def _processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started in their own process groups; all of them killed (group and all) on exit."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in reversed(started):  # workers first, then the server they talk to
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in reversed(started):
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # children of a worker that ignored SIGTERM
            process.wait()


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _bare_repository(tmp_path: Path) -> Path:
    """A bare repository holding the code under test (the working tree's tracked and new files, so
    it works from any commit and in CI's clean clone), with a touchflow.yaml for this test:
    SendGrid, a global rate, no caps or calendar (every planned email is due now)."""
    source = tmp_path / "source"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    config = yaml.safe_load((source / "touchflow.yaml").read_text(encoding="utf-8"))
    config |= {"channel": "sendgrid", "policy": {"timezone": "UTC", "rate_limit": RATE}}
    (source / "touchflow.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    git = ["git", "-c", "user.name=Touchflow Test", "-c", "user.email=test@touchflow.example"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=source, check=True)
    subprocess.run([*git, "add", "-A"], cwd=source, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "code under test"], cwd=source, check=True)
    bare = tmp_path / "touchflow.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(source), str(bare)], check=True)
    # Fetching one commit by its id (git_clone's commit_sha), as GitHub and GitLab allow.
    subprocess.run(["git", "config", "uploadpack.allowAnySHA1InWant", "true"], cwd=bare, check=True)
    return bare


def _wait_done(api: str, run_ids: list[str], timeout: float = 150) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        runs = {rid: httpx.get(f"{api}/flow_runs/{rid}", timeout=10).json() for rid in run_ids}
        if all(r["state"]["type"] in TERMINAL for r in runs.values()):
            return runs
        if time.monotonic() > deadline:
            states = {rid: (r["state"]["type"], r["state"]["name"]) for rid, r in runs.items()}
            raise AssertionError(f"tick runs not finished after {timeout:.0f} s: {states}")
        time.sleep(1)


def test_two_workers_deployed_from_git_send_every_message_once_at_the_rate(tmp_path: Path) -> None:
    pg = _pg_or_skip()
    bare = _bare_repository(tmp_path)
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", f"file://{bare}", str(checkout)], check=True)

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TOUCHFLOW_"))}
    prefect_env = base | {
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    with migrated_pg_schema(pg, "deployed") as url, FakeSendGrid() as fake, _processes() as started:
        store = connect(url)
        now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        generate(store, accounts=400, seed=5, now=now)

        server_env = prefect_env | {"PREFECT_UI_ENABLED": "0"}
        server_env.pop("PREFECT_API_URL")
        server_cmd = [sys.executable, "-m", "flows.prefect_server", "--parent", str(os.getpid()), "--port", str(port)]
        started.append(subprocess.Popen(server_cmd, cwd=REPO, env=server_env, start_new_session=True))
        wait_healthy(api, started[0])

        setup_env = prefect_env | {"TOUCHFLOW_PROJECT_DIR": str(checkout), "TOUCHFLOW_DATABASE_URL": url}
        said = _run([str(BIN / "touchflow"), "setup", "prefect"], checkout, setup_env)
        assert "work pool 'touchflow': created" in said and f"{2 * RATE} slots decaying at {RATE}/s" in said
        _run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], checkout, prefect_env)

        worker_env = prefect_env | {
            "TOUCHFLOW_DATABASE_URL": url,
            "TOUCHFLOW_SENDGRID_HOST": fake.url,
            "SENDGRID_API_KEY": "SG.deployed-test",
            "TOUCHFLOW_UNSUBSCRIBE_SECRET": "deployed-test-secret",
            "TOUCHFLOW_OUTBOX": str(tmp_path / "outbox"),
        }
        for n in (1, 2):
            worker = [str(BIN / "prefect"), "worker", "start", "--pool", "touchflow", "--name", f"worker-{n}"]
            log = (tmp_path / f"worker-{n}.log").open("wb")
            started.append(
                subprocess.Popen(worker, cwd=tmp_path, env=worker_env, stdout=log, stderr=log, start_new_session=True)
            )

        deployment = httpx.get(f"{api}/deployments/name/touchflow-tick/tick-hourly", timeout=10).json()
        assert deployment["pull_steps"][0]["prefect.deployments.steps.git_clone"]["repository"] == f"file://{bare}"
        runs = [
            httpx.post(f"{api}/deployments/{deployment['id']}/create_flow_run", json={}, timeout=10).json()["id"]
            for _ in range(2)
        ]
        done = _wait_done(api, runs)

        logs = "\n".join((tmp_path / f"worker-{n}.log").read_text(errors="replace")[-3000:] for n in (1, 2))
        assert all(r["state"]["type"] == "COMPLETED" for r in done.values()), (done, logs)
        first, second = sorted(done.values(), key=lambda r: r["start_time"])
        assert first["end_time"] <= second["start_time"]  # one tick at a time: the second was enqueued

        with store.connect() as conn:
            statuses = dict(
                conn.execute(
                    select(ledger.c.status, func.count()).where(ledger.c.kind == "email").group_by(ledger.c.status)
                ).all()
            )
            channels = set(conn.execute(select(ledger.c.channel).where(ledger.c.kind == "email")).scalars())
            sent_keys = sorted(
                conn.execute(select(ledger.c.send_key).where(ledger.c.kind == "email", ledger.c.status == "sent"))
                .scalars()
                .all()
            )
            audited = set(
                conn.execute(
                    select(audit_log.c.channel).where(
                        audit_log.c.decision == "sent", audit_log.c.channel.not_in(["task", "webhook"])
                    )
                )
                .scalars()
                .all()
            )
            held = conn.execute(select(func.count()).where(ledger.c.status.in_(["claimed", "sending"]))).scalar_one()
        store.dispose()

    accepted = [key for message in fake.accepted for key in message.send_keys]
    assert len(accepted) > 2 * RATE, (len(accepted), statuses)  # enough to measure a rate
    assert sorted(accepted) == sent_keys  # every message sent, and exactly once
    assert held == 0 and statuses.get("unknown", 0) == 0
    assert channels == {"sendgrid"} and audited == {"sendgrid"}
    per_second = collections.Counter(int(m.accepted_at) for m in fake.accepted)
    assert max(per_second.values()) <= RATE + 2, sorted(per_second.items())
