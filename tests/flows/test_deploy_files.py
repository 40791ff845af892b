"""The files an operator runs Touchflow with (deploy/, prefect.yaml), read as their tools read them.
Docker and systemd are not available to the suite: the files are parsed and their promises checked."""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string((DEPLOY / "systemd" / name).read_text(encoding="utf-8"))
    return parser


def test_the_compose_file_has_the_whole_stack() -> None:
    services = _compose()["services"]
    assert {"prefect-db", "prefect-server", "store-db", "migrate", "setup", "worker", "serve"} <= services.keys()
    server = services["prefect-server"]
    assert "postgresql+asyncpg://" in server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert server["depends_on"]["prefect-db"]["condition"] == "service_healthy"
    worker = services["worker"]
    assert worker["command"][:3] == ["prefect", "worker", "start"]
    assert worker["stop_signal"] == "SIGTERM" and worker["stop_grace_period"] == "30m"
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    serve = services["serve"]
    assert serve["command"][:2] == ["touchflow", "serve"]
    assert "/healthz" in " ".join(serve["healthcheck"]["test"])
    for service in services.values():  # every env file it names has its committed example
        for env_file in service.get("env_file", []):
            assert (DEPLOY / f"{env_file}.example").is_file(), env_file


def test_the_systemd_worker_stops_gracefully_and_serve_runs_on_its_own() -> None:
    worker = _unit("touchflow-worker@.service")["Service"]
    assert "prefect worker start --pool touchflow" in worker["ExecStart"]
    assert (worker["KillSignal"], worker["KillMode"]) == ("SIGTERM", "mixed")
    serve = _unit("touchflow-serve.service")["Service"]
    assert serve["ExecStart"].endswith("touchflow serve --host 127.0.0.1 --port 8080")
    assert serve["Restart"] == "always"
    assert _unit("prefect-server.service")["Service"]["ExecStart"].endswith(
        "prefect server start --host 127.0.0.1 --port 4200"
    )


def test_the_env_examples_name_what_each_process_needs() -> None:
    worker = (DEPLOY / "worker.env.example").read_text(encoding="utf-8")
    serve = (DEPLOY / "serve.env.example").read_text(encoding="utf-8")
    for name in ("PREFECT_API_URL", "TOUCHFLOW_DATABASE_URL", "TOUCHFLOW_UNSUBSCRIBE_SECRET", "TOUCHFLOW_OUTBOX"):
        assert re.search(rf"^{name}=", worker, re.M), name
    for name in ("TOUCHFLOW_DATABASE_URL", "TOUCHFLOW_UNSUBSCRIBE_SECRET", "TOUCHFLOW_SENDGRID_WEBHOOK_KEY"):
        assert re.search(rf"^{name}=", serve, re.M), name


def test_prefect_yaml_clones_the_deployed_commit_and_keeps_secrets_out() -> None:
    config = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    build = {next(iter(step.values()))["id"]: next(iter(step.values())) for step in config["build"]}
    assert build["commit"]["script"] == "git rev-parse HEAD"
    clone, workdir = config["pull"]
    assert clone["prefect.deployments.steps.git_clone"]["commit_sha"] == "{{ commit.stdout }}"
    assert workdir["prefect.deployments.steps.set_working_directory"]["directory"] == "{{ clone.directory }}"
    (tick,) = config["deployments"]
    assert tick["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert tick["parameters"]["fail_on_error"] is True
    env = tick["work_pool"]["job_variables"]["env"]
    assert env["TOUCHFLOW_PROJECT_DIR"] == "."
    assert not any("://" in str(value) or "{{" in str(value) for value in env.values())  # names, not secrets
