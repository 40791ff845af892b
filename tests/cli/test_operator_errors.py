"""Operator mistakes get one clear line, never a traceback: a template path outside templates/,
a `touchflow.yaml` that cannot be read or is not a mapping (which stops the tick: the sending
policy is never loosened by a file the engine could not read), a database URL of a database
Touchflow does not support or that is not a URL at all."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner, Result

from demo.data import generate
from engine.cli import app
from engine.store.models import ledger

REPO = Path(__file__).resolve().parent.parent.parent
TOUCHFLOW = Path(sys.executable).parent / "touchflow"
NOW = datetime(2026, 11, 24, 9, 0)
PREFECT_DEFAULTS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}
PROBLEM = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): error: (?P<message>.+)$")

PLAYBOOK = """\
id: odd-template
name: Odd template
subject: contact
trigger:
  events: {name: login, within: 7d}
steps:
  - email:
      template: welcome/hello
      experiment:
        arms:
          - {id: a, weight: 1}
          - {id: b, weight: 1, template: "ARM"}
  - email:
      template: "MAIN"
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repo's project (playbooks, templates, touchflow.yaml); the cwd and project dir."""
    root = tmp_path / "proj"
    for part in ("playbooks", "templates"):
        shutil.copytree(REPO / part, root / part)
    shutil.copy(REPO / "touchflow.yaml", root / "touchflow.yaml")
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(root))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("TOUCHFLOW_OUTBOX", str(root / "outbox"))
    monkeypatch.chdir(root)
    # `touchflow run` sets these with setdefault; set here, they are restored after the test.
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    for name, value in PREFECT_DEFAULTS.items():
        monkeypatch.setenv(name, os.environ.get(name, value))
    return root


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def _assert_clean_failure(result: Result) -> None:
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


# --- template paths --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["/etc/passwd", "/tmp", "welcome//hello", "welcome/"])
@pytest.mark.parametrize("where", ["MAIN", "ARM"])
def test_a_template_path_outside_templates_is_a_problem_at_its_line(project: Path, name: str, where: str) -> None:
    text = PLAYBOOK.replace(where, name).replace("ARM", "welcome/hello").replace("MAIN", "welcome/hello")
    (project / "playbooks" / "odd.yaml").write_text(text, encoding="utf-8")
    result = _invoke("validate")
    _assert_clean_failure(result)
    problems = [m for line in result.stdout.splitlines() if (m := PROBLEM.match(line))]
    assert len(problems) == 1, result.output
    line = 1 + text.splitlines().index(next(x for x in text.splitlines() if f'"{name}"' in x))
    assert (problems[0]["path"], int(problems[0]["line"])) == ("playbooks/odd.yaml", line), result.output
    assert f"'{name}'" in problems[0]["message"] and "templates/email/" in problems[0]["message"]


def test_a_parent_directory_in_a_template_path_is_a_problem_at_its_line(project: Path) -> None:
    text = PLAYBOOK.replace("ARM", "welcome/hello").replace("MAIN", "../../../etc/passwd")
    (project / "playbooks" / "odd.yaml").write_text(text, encoding="utf-8")
    result = _invoke("validate")
    _assert_clean_failure(result)
    problems = [m for line in result.stdout.splitlines() if (m := PROBLEM.match(line))]
    assert [(m["path"], m["line"]) for m in problems] == [("playbooks/odd.yaml", "14")], result.output


# --- touchflow.yaml that cannot be used ------------------------------------------------------


def _directory(path: Path) -> str:
    path.mkdir()
    return "is a directory"


def _dangling_link(path: Path) -> str:
    path.symlink_to(path.parent / "nowhere.yaml")
    return "cannot read"


def _link_loop(path: Path) -> str:
    path.symlink_to(path.name)
    return "cannot read"


def _bad_yaml(path: Path) -> str:
    path.write_text("channel: outbox\npolicy: {caps: [\n", encoding="utf-8")
    return "YAML syntax"


def _a_list(path: Path) -> str:
    path.write_text("- channel: outbox\n- policy: {}\n", encoding="utf-8")
    return "a list"


def _a_string(path: Path) -> str:
    path.write_text("just some words\n", encoding="utf-8")
    return "a string"


def _binary(path: Path) -> str:
    path.write_bytes(b"channel: \xff\xfe outbox\n")
    return "not UTF-8"


BROKEN_SETTINGS: list[Callable[[Path], str]] = [
    _directory,
    _dangling_link,
    _link_loop,
    _bad_yaml,
    _a_list,
    _a_string,
    _binary,
]


@pytest.fixture
def store_with_customers(project: Path) -> Engine:
    from engine.store.db import connect, migrate

    engine = connect(os.environ["TOUCHFLOW_DATABASE_URL"])
    migrate(engine)
    generate(engine, accounts=50, seed=7, now=NOW.replace(hour=0))
    return engine


@pytest.mark.parametrize("breaks", BROKEN_SETTINGS, ids=lambda f: f.__name__.strip("_"))
def test_an_unusable_touchflow_yaml_stops_the_tick(
    project: Path, store_with_customers: Engine, breaks: Callable[[Path], str]
) -> None:
    path = project / "touchflow.yaml"
    path.unlink()
    expected = breaks(path)
    # A subprocess: were the file ignored, the tick would run a real Prefect flow.
    done = subprocess.run(
        [str(TOUCHFLOW), "run", "--now", NOW.isoformat()],
        env={k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        | {"PREFECT_HOME": str(project / ".prefect")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output
    assert "touchflow.yaml" in done.stderr and expected in done.stderr, output
    with store_with_customers.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ledger)).scalar_one() == 0
    assert not list((project / "outbox").glob("*.eml"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_touchflow_yaml_stops_the_tick(project: Path) -> None:
    (project / "touchflow.yaml").chmod(0)
    result = _invoke("run", "--now", NOW.isoformat())
    _assert_clean_failure(result)
    assert "touchflow.yaml" in result.stderr and "cannot read" in result.stderr


@pytest.mark.parametrize("breaks", [_directory, _a_list, _bad_yaml], ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize(
    "command", [["demo-engagement"], ["preview", "welcome"], ["simulate", "--from", "2026-11-01", "--to", "2026-11-02"]]
)
def test_other_commands_reading_touchflow_yaml_say_what_is_wrong(
    project: Path, breaks: Callable[[Path], str], command: list[str]
) -> None:
    path = project / "touchflow.yaml"
    path.unlink()
    expected = breaks(path)
    result = _invoke(*command)
    _assert_clean_failure(result)
    assert "touchflow.yaml" in result.stderr and expected in result.stderr, result.output


# --- database URLs ---------------------------------------------------------------------------

COMMANDS = [
    ["migrate"],
    ["audit", "--limit", "1"],
    ["simulate", "--from", "2026-11-01", "--to", "2026-11-02"],
    ["run", "--now", "2026-11-24T09:00"],
    ["demo-data", "--accounts", "5"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "mysql://ops:s3cret@db.example/crm",
            "unsupported database URL scheme 'mysql'; use sqlite:/// or postgresql://",
        ),
        ("mysql+pymysql://ops:s3cret@db/crm", "unsupported database URL scheme 'mysql+pymysql'"),
        ("postgresql+asyncpg://ops:s3cret@db/crm", "unsupported database URL scheme 'postgresql+asyncpg'"),
        ("oracle://ops:s3cret@db/crm", "unsupported database URL scheme 'oracle'"),
        ("ops:s3cret@db/crm", "not a database URL"),
        ("postgresql://ops:s3cret@db:port/crm", "not a database URL"),
        ("touchflow.db", "not a database URL"),
    ],
)
def test_a_database_url_touchflow_cannot_use_is_one_line(
    project: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], url: str, expected: str
) -> None:
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", url)
    result = _invoke(*command)
    _assert_clean_failure(result)
    assert expected in result.stderr, result.output
    assert "use sqlite:///" in result.stderr
    assert "s3cret" not in result.output


@pytest.mark.parametrize(
    ("variable", "value"), [("TOUCHFLOW_CHANNEL", "pigeon"), ("TOUCHFLOW_SENDGRID_HOST", "ftp://mail")]
)
def test_an_invalid_environment_override_names_the_variable(
    project: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    result = _invoke("run", "--now", NOW.isoformat())
    _assert_clean_failure(result)
    assert f"{variable}='{value}'" in result.stderr, result.output
