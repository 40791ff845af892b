"""The shape of the command line: choice options are enums that --help lists and a bad value is a
usage error (exit 2) naming the choices; `experiments` has `report` (the default) and `promote`
sub-commands with their own help; an unknown playbook or step id is an error listing the valid ones.

Each test runs on SQLite and PostgreSQL (the `db_url` fixture), against a project in tmp_path."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from engine.audit import Decision
from engine.cli import app
from engine.load import load_playbook
from engine.spec.steps import METRICS, EmailStep
from tests.factories import project as make_project

NOW = "2026-11-24T09:00"
PREFECT_DEFAULTS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}

# A playbook whose id is also the name of a sub-command of `touchflow experiments`.
PROMOTE = """\
id: promote
name: Named like the sub-command
subject: contact
trigger:
  events: {name: login, within: 7d}
steps:
  - wait: 1d
  - id: hello
    email:
      template: welcome/hello
      experiment:
        arms:
          - {id: a, weight: 50}
          - {id: b, weight: 50, subject: "Arm b"}
"""

PLAIN = """\
id: plain
name: No experiment
subject: contact
trigger:
  events: {name: login, within: 7d}
steps:
  - id: greet
    email:
      template: welcome/hello
  - id: call
    task: {title: "Call {{ account.name }}"}
"""

KNOWN = ("plain", "promote")


@pytest.fixture
def root(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with the two playbooks above on a migrated store; the cwd and the project dir."""
    project = make_project(tmp_path, db_url, playbooks={"promote": PROMOTE, "plain": PLAIN})
    directory = project.settings.project_dir
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(directory))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    monkeypatch.setenv("TOUCHFLOW_OUTBOX", str(directory / "outbox"))
    monkeypatch.setenv("COLUMNS", "250")  # help panels and error boxes on one line each
    # `touchflow run` sets these with setdefault; set here, they are restored after the test.
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    for name, value in PREFECT_DEFAULTS.items():
        monkeypatch.setenv(name, os.environ.get(name, value))
    monkeypatch.chdir(directory)
    return directory


def invoke(*args: str) -> Result:
    """Run the command; never a traceback."""
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


def one_line(text: str) -> str:
    """`text` with its whitespace runs as single spaces."""
    return " ".join(text.split())


def unboxed(text: str) -> str:
    """`text` without the help panel's borders nor any whitespace: a long list of choices wraps."""
    return "".join(text.replace("│", "").split())


# --- choices --------------------------------------------------------------------------------------


def test_help_lists_the_choices(root: Path) -> None:
    audit = invoke("audit", "--help")
    assert audit.exit_code == 0, audit.output
    assert "table|csv|json" in audit.stdout
    assert f"Only this decision: {', '.join(Decision)}." in one_line(audit.stdout.replace("│", ""))
    report = invoke("experiments", "report", "--help")
    assert report.exit_code == 0, report.output
    assert "|".join([*METRICS, "all"]) in unboxed(report.stdout)
    assert "table|csv|json" in report.stdout


@pytest.mark.parametrize(
    ("args", "option", "choices"),
    [
        (("audit", "--format", "xml"), "--format", ("table", "csv", "json")),
        (("audit", "--decision", "deffered"), "--decision", tuple(d.value for d in Decision)),
        (("experiments", "--format", "xml"), "--format", ("table", "csv", "json")),
        (("experiments", "report", "promote", "--metric", "opens"), "--metric", (*METRICS, "all")),
    ],
)
def test_a_bad_choice_is_a_usage_error_listing_the_choices(
    root: Path, args: tuple[str, ...], option: str, choices: tuple[str, ...]
) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    message = one_line(result.stderr)
    assert "Usage: " in message and f"{option} must be " in message
    listed = message[message.index(f"{option} must be ") :]
    assert all(choice in listed for choice in choices), message
    assert f"not '{args[-1]}'" in message


def test_a_close_choice_is_suggested(root: Path) -> None:
    result = invoke("audit", "--decision", "deffered")
    assert "(didyoumean'deferred'?)" in unboxed(result.stderr)  # the list of choices wraps inside the panel


def test_a_valid_choice_filters(root: Path) -> None:
    result = invoke("audit", "--decision", "deferred", "--format", "json")
    assert (result.exit_code, result.stdout) == (0, ""), result.output


# --- experiments: report and promote -----------------------------------------------------------------


def test_experiments_help_names_its_sub_commands(root: Path) -> None:
    group = invoke("experiments", "--help")
    assert group.exit_code == 0, group.output
    assert "report" in group.stdout and "promote" in group.stdout
    promote = invoke("experiments", "promote", "--help")
    assert promote.exit_code == 0, promote.output
    assert re.search(r"Usage: .*experiments promote \[OPTIONS\] \W?PLAYBOOK\W+STEP\W+ARM\b", promote.stdout)
    assert "--format" not in promote.stdout and "--metric" not in promote.stdout


def _weights(path: Path) -> list[float]:
    step = load_playbook(path).spec.steps[1]
    assert isinstance(step, EmailStep) and step.email.experiment is not None
    return [arm.weight for arm in step.email.experiment.arms]


def test_promote_on_a_playbook_named_promote(root: Path) -> None:
    path = root / "playbooks" / "promote.yaml"
    result = invoke("experiments", "promote", "promote", "hello", "b")
    assert result.exit_code == 0, result.output
    assert "step 'hello', arm 'b' promoted" in result.stdout
    assert _weights(path) == [0, 100]


def test_report_on_a_playbook_named_promote(root: Path) -> None:
    """`report` names the report explicitly; it is how to reach a playbook named like a sub-command."""
    explicit = invoke("experiments", "report", "promote")
    assert explicit.exit_code == 0, explicit.output
    assert "promote / hello" in explicit.stdout
    default = invoke("experiments", "plain")  # without a sub-command, the report
    assert default.exit_code == 0, default.output
    assert "playbook 'plain' has no email step with an experiment" in default.stdout
    as_json = invoke("experiments", "--format", "json")  # options alone: the report of every playbook
    assert as_json.exit_code == 0, as_json.output
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [(r["playbook"], r["step"], r["arm"]) for r in rows] == [
        ("promote", "hello", "a"),
        ("promote", "hello", "b"),
    ]


def test_promote_without_its_arguments_says_how(root: Path) -> None:
    result = invoke("experiments", "promote")
    assert result.exit_code == 2, result.output
    message = one_line(result.stderr)
    assert "usage: touchflow experiments promote PLAYBOOK STEP ARM" in message
    assert "touchflow experiments report promote" in message


# --- unknown ids list the valid ones --------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("run", "--now", NOW, "--playbook", "nope"),
        ("simulate", "--from", "2026-11-01", "--to", "2026-11-03", "--playbook", "nope"),
        ("preview", "nope"),
        ("experiments", "nope"),
        ("experiments", "report", "nope"),
        ("experiments", "promote", "nope", "hello", "b"),
    ],
    ids=["run", "simulate", "preview", "experiments", "experiments-report", "experiments-promote"],
)
def test_an_unknown_playbook_lists_the_valid_ones(root: Path, args: tuple[str, ...]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    message = one_line(result.output)
    assert "no playbook 'nope'" in message
    assert all(known in message[message.index("no playbook 'nope'") :] for known in KNOWN), message


def test_an_unknown_preview_step_lists_the_email_steps(root: Path) -> None:
    result = invoke("preview", "plain", "--step", "gret")
    assert result.exit_code == 2, result.output
    message = one_line(result.output)
    assert "playbook 'plain' has no email step 'gret' (did you mean 'greet'?)" in message
    assert "its email steps: greet" in message
    assert not (root / "preview").exists()
    task = invoke("preview", "plain", "--step", "call")
    assert task.exit_code == 2 and "its email steps: greet" in one_line(task.output)


def test_an_unknown_promote_step_lists_the_steps(root: Path) -> None:
    result = invoke("experiments", "promote", "promote", "helo", "b")
    assert result.exit_code == 2, result.output
    message = one_line(result.output)
    assert "no step 'helo' (did you mean 'hello'?)" in message and "hello" in message.split("are:")[-1]
