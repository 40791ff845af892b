"""`touchflow validate` checks health.yaml with the playbooks, in one pass, at file:line:col, and
a `health:` condition naming a component or band the model does not have, with did-you-mean."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.validate import validate_paths
from tests.conftest import REPO

PLAYBOOK = """\
id: health-watch
name: Health watch
trigger: {{status: active}}
segment: {{all: [{{health: {{component: {component}, below: 40}}}}, {{health: {{band: {band}}}}}]}}
steps:
  - task: {{title: "Look at it"}}
"""


def _playbook(tmp_path: Path, component: str, band: str) -> Path:
    folder = tmp_path / "playbooks"
    folder.mkdir(exist_ok=True)
    (folder / "health-watch.yaml").write_text(PLAYBOOK.format(component=component, band=band), encoding="utf-8")
    return folder


def test_unknown_component_and_band_are_named_with_a_suggestion(tmp_path: Path) -> None:
    folder = _playbook(tmp_path, "adoptoin", "at_rsk")
    report = validate_paths([folder], REPO / "templates" / "email", health_file=REPO / "health.yaml")
    found = {(p.line, p.message) for p in report.errors}
    assert any(line == 4 and "no component 'adoptoin'" in m and "did you mean 'adoption'" in m for line, m in found)
    assert any(line == 4 and "no band 'at_rsk'" in m and "did you mean 'at_risk'" in m for line, m in found)
    assert report.playbooks == []
    good = validate_paths([_playbook(tmp_path, "adoption", "at_risk")], REPO / "templates" / "email",
                          health_file=REPO / "health.yaml")  # fmt: skip
    assert good.ok and [p.spec.id for p in good.playbooks] == ["health-watch"]


def test_a_health_condition_without_a_model_is_a_warning(tmp_path: Path) -> None:
    report = validate_paths(
        [_playbook(tmp_path, "adoption", "at_risk")], REPO / "templates" / "email", health_file=tmp_path / "health.yaml"
    )
    assert report.ok and any("no health model" in p.message for p in report.problems)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    shutil.copytree(REPO / "playbooks", root / "playbooks")
    shutil.copytree(REPO / "templates", root / "templates")
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(root))
    monkeypatch.chdir(root)
    return root


def test_the_command_reports_the_model_and_the_playbooks_in_one_run(project: Path) -> None:
    text = (REPO / "health.yaml").read_text(encoding="utf-8")
    broken = text.replace("within: 30d, of: contacts", "within: 30dd, of: contacts").replace(
        "    survey:", "    survey:\n      wieght: 3", 1
    )
    (project / "health.yaml").write_text(broken, encoding="utf-8")
    _playbook(project, "relationship", "healthy")
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert any(re.match(r"^health\.yaml:\d+:\d+: error: .*'30dd' is not a duration", line) for line in lines), lines
    assert any(re.match(r"^health\.yaml:\d+:\d+: error: .*did you mean 'weight'", line) for line in lines), lines
    assert any(
        re.match(r"^playbooks/health-watch\.yaml:4:\d+: error: no component 'relationship'.*'relationships'", line)
        for line in lines
    ), lines
    assert "Traceback" not in result.output


def test_the_projects_model_and_playbooks_validate(project: Path) -> None:
    shutil.copy(REPO / "health.yaml", project / "health.yaml")
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 0, result.output


def test_a_playbook_that_fails_as_a_whole_still_has_its_health_conditions_checked(tmp_path: Path) -> None:
    folder = _playbook(tmp_path, "adoptoin", "at_risk")
    text = (folder / "health-watch.yaml").read_text(encoding="utf-8").replace("name: Health watch\n", "")
    (folder / "health-watch.yaml").write_text(text, encoding="utf-8")
    report = validate_paths([folder], REPO / "templates" / "email", health_file=REPO / "health.yaml")
    messages = [p.message for p in report.errors]
    assert any("name" in m for m in messages) and any("no component 'adoptoin'" in m for m in messages), messages
