"""A real Prefect API server for tests, as deployed: its own process, optionally on PostgreSQL.

`prefect_test_harness` serves Prefect from SQLite. Under concurrent writes (two dispatchers asking
for send slots at once) a SQLite-backed server holds one request on the database lock and answers
it 503 after ~2 s; production runs the server on PostgreSQL (deploy/compose.yaml), and so do the
tests that measure a rate across processes (`prefect_server_on_postgres`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from engine.store.db import connect

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(api: str, server: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """Until the server at `api` answers its health check; fails if it exits or takes `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, "the Prefect server exited"
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the Prefect server did not answer within {timeout:.0f} s")


@contextmanager
def prefect_server_on_postgres(pg_base: str, home: Path) -> Iterator[str]:
    """A Prefect server (`flows.prefect_server`, a child that dies with this process) whose
    database is a new one on `pg_base`'s PostgreSQL server; yields its API URL. The server is
    stopped and its database dropped on exit."""
    name = f"prefect_{uuid.uuid4().hex[:12]}"
    admin = connect(pg_base)
    server: subprocess.Popen[bytes] | None = None
    try:
        with admin.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text(f'CREATE DATABASE "{name}"'))
        database = make_url(pg_base).set(drivername="postgresql+asyncpg", database=name, query={})
        port = free_port()
        api = f"http://127.0.0.1:{port}/api"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {
            "PREFECT_HOME": str(home),
            "PREFECT_API_DATABASE_CONNECTION_URL": database.render_as_string(hide_password=False),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_UI_ENABLED": "0",
        }
        command = [sys.executable, "-m", "flows.prefect_server", "--parent", str(os.getpid()), "--port", str(port)]
        server = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True, stdin=subprocess.DEVNULL)
        wait_healthy(api, server)
        yield api
    finally:
        if server is not None:
            _stop(server)
        _drop_database(admin, name)


def _stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group, SIGKILL after 15 s; reaped either way."""
    with suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def _drop_database(admin: Engine, name: str) -> None:
    """Drop the server's database (its connections ended first); a failure is printed, never
    raised over the test's own outcome."""
    try:
        with admin.connect() as conn:
            auto = conn.execution_options(isolation_level="AUTOCOMMIT")
            auto.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"), {"name": name}
            )
            auto.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    except Exception as exc:
        print(f"could not drop the Prefect test database {name}: {exc}", file=sys.stderr)
    finally:
        admin.dispose()
