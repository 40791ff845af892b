"""`touchflow bench dispatch`: the engine against the bare client, in one process or in dispatcher
processes on PostgreSQL; what it refuses, and that the floor posts exactly what the engine sent."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from sendgrid import SendGridAPIClient
from sqlalchemy import text
from typer.testing import CliRunner

from benchmarks.dispatch import API_KEY, mail_server, received_bodies, server_stats
from benchmarks.scratch import scratch_store
from engine.cli import app
from tests.conftest import _pg_or_skip


def test_bench_dispatch_in_two_processes_on_postgresql() -> None:
    url = _pg_or_skip()
    args = ["bench", "dispatch", "--messages", "60", "--concurrency", "4", "--dispatchers", "2", "--db", url]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert (figures["dispatchers"], figures["database"], figures["concurrency"]) == (2, "postgresql", 4)
    # Every message sent once: the ledger says sent, the server answered exactly that many.
    assert (figures["sent"], figures["server_requests"]) == (60, 60)
    ratio = figures["msgs_per_s"] / figures["floor_msgs_per_s"]
    assert figures["ratio"] == pytest.approx(ratio, abs=0.001)  # printed with 3 decimals
    # Beside the floor of one interpreter, the bare client in as many processes as the engine had.
    against = figures["msgs_per_s"] / figures["floor_processes_msgs_per_s"]
    assert figures["ratio_to_floor_processes"] == pytest.approx(against, abs=0.001)


def test_one_process_has_no_second_floor() -> None:
    result = CliRunner().invoke(app, ["bench", "dispatch", "--messages", "20", "--concurrency", "2"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert (figures["dispatchers"], figures["database"], figures["sent"]) == (1, "sqlite", 20)
    assert "floor_processes_msgs_per_s" not in figures


def test_the_scratch_schema_is_dropped_afterwards() -> None:
    url = _pg_or_skip()
    with scratch_store(url, Path("/nonexistent"), "probe") as engine:
        schema = engine.url.query["options"].removeprefix("-csearch_path=")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM ledger")).scalar_one() == 0
    with scratch_store(url, Path("/nonexistent"), "probe") as other, other.connect() as conn:
        found = conn.execute(text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}).first()
    assert found is None


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--dispatchers", "2"], "needs --db with a PostgreSQL URL"),
        (["--dispatchers", "2", "--db", "sqlite:///x.db"], "needs --db with a PostgreSQL URL"),
        (["--dispatchers", "3", "--db", "postgresql://u@127.0.0.1:1/x"], "does not split evenly"),
        (["--dispatchers", "33", "--db", "postgresql://u@127.0.0.1:1/x"], "less than or equal to 32"),
    ],
)
def test_what_cannot_run_is_refused_before_anything_starts(args: list[str], says: str) -> None:
    result = CliRunner().invoke(app, ["bench", "dispatch", "--messages", "10", *args])
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.split())


@pytest.mark.parametrize("command", ["dispatch", "evaluate", "health", "import", "ingest"])
def test_an_unreachable_database_is_one_line_not_a_traceback(command: str) -> None:
    result = CliRunner().invoke(app, ["bench", command, "--db", "postgresql://u@127.0.0.1:1/x"])
    assert result.exit_code == 1
    assert "cannot reach the database" in result.output and "Traceback" not in result.output


def test_the_server_hands_back_the_bodies_it_received_in_order_once() -> None:
    with mail_server() as url:
        client = SendGridAPIClient(api_key=API_KEY, host=url)
        sent = [{"n": i, "name": 'Ünïcode \u2028 "quoted"'} for i in range(5)]
        for body in sent:
            assert client.client.mail.send.post(request_body=body).status_code == 202
        assert received_bodies(url) == sent
        assert received_bodies(url) == []  # handed back once
        assert server_stats(url)["requests"] == 5
        with urllib.request.urlopen(f"{url}/count", timeout=10) as response:
            assert json.loads(response.read())["requests"] == 5
