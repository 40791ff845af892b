"""`validate` reports every problem of a file in one run: YAML-level, model and semantic problems
together, the semantic checks running on the parts of the playbook that did parse."""

from __future__ import annotations

from pathlib import Path

from engine.validate import validate_paths
from tests.conftest import REPO

FIVE_MISTAKES = """\
id: trial-nudge
name: Trial nudge
subject: account
segment:
  statuss: active
trigger:
  events: {name: login, at_least: 1, within: 3dd}
steps:
  - email:
      to: {role: [admin]}
      template: activation/nudgee
  - wait: 2x
  - task:
      title: "Call {{ account.name }}"
name: Trial nudge again
"""


def _validate(tmp_path: Path, text: str) -> list[tuple[int, int, str]]:
    path = tmp_path / "playbook.yaml"
    path.write_text(text, encoding="utf-8")
    report = validate_paths([path], REPO / "templates" / "email", tmp_path)
    assert not report.playbooks
    return [(p.line, p.col, p.message) for p in report.problems]


def test_five_different_mistakes_are_five_problems_in_one_run(tmp_path: Path) -> None:
    found = _validate(tmp_path, FIVE_MISTAKES)
    where = {(line, col) for line, col, _ in found}
    assert len(found) == 5, found
    assert where == {(5, 3), (7, 38), (11, 7), (12, 5), (15, 1)}, found
    messages = " | ".join(m for _, _, m in found)
    assert "unknown field 'statuss'" in messages and "did you mean 'status'" in messages
    assert "'3dd' is not a duration" in messages
    assert "template 'activation/nudgee' not found" in messages
    assert "'2x' is not a duration" in messages
    assert "duplicate key 'name'" in messages


def test_a_step_that_does_not_parse_keeps_the_positions_of_the_others(tmp_path: Path) -> None:
    text = FIVE_MISTAKES.replace("name: Trial nudge again\n", "").replace("statuss", "status")
    text = text.replace('"Call {{ account.name }}"', '"Call {{ account.name }"')
    found = _validate(tmp_path, text)
    # The task after the broken wait is checked, and reported at its own line.
    assert {line for line, _, _ in found} == {7, 11, 12, 14}, found
    assert any((line, col) == (14, 7) and "template syntax" in m for line, col, m in found), found


def test_a_bad_subject_skips_the_checks_that_depend_on_it(tmp_path: Path) -> None:
    text = FIVE_MISTAKES.replace("subject: account", "subject: acount").replace("name: Trial nudge again\n", "")
    found = _validate(tmp_path, text)
    assert any(line == 3 and "acount" in m for line, _, m in found), found
    assert not any("statuss" in m for _, _, m in found), found
