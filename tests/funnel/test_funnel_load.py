"""The funnel's declaration: stages in `health.yaml` under `funnel:`, errors at file:line:col."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.funnel.load import load_funnel, load_funnel_text
from engine.problems import ProblemsFound

GOOD = """\
health:
  whatever: the health model is read elsewhere
funnel:
  stages:
    - id: signed
      condition: {contract_start: {exists: true}}
    - id: activated
      name: first key action
      condition: {events: {name: feature_used, within: 365d}}
      playbooks: [activation-30d]
"""


def test_stages_load_in_order_and_health_is_ignored() -> None:
    funnel = load_funnel_text(GOOD, "health.yaml")
    assert funnel is not None
    assert [s.id for s in funnel.stages] == ["signed", "activated"]
    assert funnel.stages[1].label == "first key action"
    assert funnel.stages[1].playbooks == ("activation-30d",)


def test_a_file_without_funnel_declares_none() -> None:
    assert load_funnel_text("health:\n  bands: []\n", "health.yaml") is None


def test_missing_file_declares_none(tmp_path: Path) -> None:
    assert load_funnel(tmp_path / "health.yaml") is None


def _problems(text: str) -> list[str]:
    with pytest.raises(ProblemsFound) as caught:
        load_funnel_text(text, "health.yaml")
    return [p.format() for p in caught.value.problems]


def test_unknown_key_points_at_its_line_with_a_suggestion() -> None:
    text = GOOD.replace("      playbooks:", "      playbook:")
    assert _problems(text) == [
        "health.yaml:10:7: error: unknown key 'playbook' (did you mean 'playbooks'?)",
    ]


def test_unknown_field_in_a_stage_condition_is_named_with_a_suggestion() -> None:
    text = GOOD.replace("contract_start: {exists", "contract_strat: {exists")
    (problem,) = _problems(text)
    assert problem.startswith("health.yaml:6:19: error: unknown field 'contract_strat'")
    assert "did you mean 'contract_start'?" in problem


def test_duplicate_stage_ids_and_journey_conditions_are_refused() -> None:
    text = GOOD.replace("id: activated", "id: signed").replace(
        "{events: {name: feature_used, within: 365d}}", "{since_entry: {name: login}}"
    )
    problems = _problems(text)
    assert "health.yaml:7:7: error: stage 'signed' is declared twice" in problems
    assert any(p.startswith("health.yaml:9:19: error: 'since_entry' is about an enrollment") for p in problems)


def test_funnel_that_is_not_a_mapping_is_an_error() -> None:
    assert _problems("funnel: [signed]\n") == [
        "health.yaml:1:9: error: funnel is a mapping with 'stages': a list of {id, condition}"
    ]


def test_a_funnel_needs_two_stages() -> None:
    text = "funnel:\n  stages:\n    - id: signed\n      condition: {status: active}\n"
    (problem,) = _problems(text)
    assert problem.startswith("health.yaml:2:3: error:")
    assert "at least 2" in problem


def test_the_documented_funnel_loads() -> None:
    import re

    from tests.conftest import REPO

    doc = (REPO / "docs" / "health.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Funnel") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    funnel = load_funnel_text(block.group(1), "docs/health.md")
    assert funnel is not None
    assert [s.id for s in funnel.stages] == ["signed", "onboarded", "activated", "adopted", "renewed", "advocate"]
