"""`touchflow approvals list|approve`: what each content's state is, approving by id, and unknown
ids refused with the valid ones listed (exit 2, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner, Result

from engine.cli import app
from engine.project import Project
from tests.approvals.helpers import ARMS, HELLO, required


def _run(proj: Project, *args: str) -> Result:
    env = {
        "TOUCHFLOW_PROJECT_DIR": str(proj.settings.project_dir),
        "TOUCHFLOW_DATABASE_URL": proj.settings.database_url,
        "COLUMNS": "200",
    }
    return CliRunner().invoke(app, list(args), env=env)


def _listed(proj: Project) -> list[dict[str, object]]:
    result = _run(proj, "approvals", "list", "--format", "json")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_list_then_approve_one_arm(db: Engine, db_url: str, tmp_path: Path) -> None:
    proj = required(tmp_path, db_url, HELLO, ARMS)
    before = _listed(proj)
    assert {(r["playbook"], r["step"], r["arm"], r["locale"]) for r in before} == {
        ("arms", "greet", "plain", "en"),
        ("arms", "greet", "plain", "ko"),
        ("arms", "greet", "short", "en"),
        ("arms", "greet", "short", "ko"),
        ("hello", "greet", "", "en"),
        ("hello", "greet", "", "ko"),
    }
    assert not any(r["approved"] for r in before)

    done = _run(proj, "approvals", "approve", "arms", "greet", "short", "--as", "mina@touchflow.example",
                "--comment", "checked both locales", "--now", "2026-11-02T09:00")  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "approved arms greet arm short (ko)" in done.stdout
    after = {(r["playbook"], r["arm"], r["locale"]): r for r in _listed(proj)}
    short = after[("arms", "short", "en")]
    assert short["approved"] is True
    assert (short["approved_by"], short["approved_at"], short["comment"]) == (
        "mina@touchflow.example",
        "2026-11-02T09:00:00",
        "checked both locales",
    )
    assert short["approved_hash"] == short["current_hash"]
    assert after[("arms", "plain", "en")]["approved"] is False
    assert after[("hello", "", "en")]["approved"] is False

    table = _run(proj, "approvals", "list")
    assert table.exit_code == 0 and "mina@touchflow.example" in table.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["nope", "greet"], "no playbook 'nope'; playbooks: arms, hello"),
        (["arms", "hi"], "no email step 'hi' in playbook 'arms'; its email steps: greet"),
        (["arms", "greet", "long"], "no arm 'long' in step 'greet' of 'arms'; its arms: plain, short"),
        (["hello", "greet", "a"], "its arms: none (the step has no experiment)"),
    ],
)
def test_unknown_ids_list_the_valid_ones(db: Engine, db_url: str, tmp_path: Path, args: list[str], says: str) -> None:
    proj = required(tmp_path, db_url, HELLO, ARMS)
    result = _run(proj, "approvals", "approve", *args, "--as", "mina@touchflow.example")
    assert result.exit_code == 2
    assert says in " ".join(result.stderr.split())
    assert "Traceback" not in result.output
    assert not any(r["approved"] for r in _listed(proj))


def test_approve_needs_who(db: Engine, db_url: str, tmp_path: Path) -> None:
    proj = required(tmp_path, db_url, HELLO)
    assert _run(proj, "approvals", "approve", "hello", "greet").exit_code == 2
    bad = _run(proj, "approvals", "approve", "hello", "greet", "--as", "not an address")
    assert bad.exit_code == 2 and "--as" in bad.stderr
