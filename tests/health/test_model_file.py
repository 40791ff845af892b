"""The project's health.yaml loads; mistakes point at their line with a suggestion."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.funnel.load import load_funnel
from engine.health.load import load_health, load_health_text
from engine.problems import ProblemsFound
from tests.conftest import REPO


def test_the_projects_model_loads_beside_its_funnel(tmp_path: Path) -> None:
    spec = load_health(REPO)
    assert spec is not None and {"adoption", "support", "survey", "billing", "engagement", "relationships"} <= set(
        spec.components
    )
    text = (REPO / "health.yaml").read_text(encoding="utf-8")
    funnel = load_funnel(REPO / "health.yaml")
    assert funnel is not None and [s.id for s in funnel.stages][:4] == ["signed", "onboarded", "activated", "adopted"]
    # The same model without the funnel section: `funnel:` is read by its own loader only.
    (tmp_path / "health.yaml").write_text(text[: text.index("\nfunnel:")] + "\n", encoding="utf-8")
    assert load_health(tmp_path) == spec
    assert load_funnel(tmp_path / "health.yaml") is None
    assert load_health(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("health:\n  components:\n    a:\n      metrc: {}\n", 4, "did you mean 'metric'"),
        (
            "health:\n  components:\n    a:\n      metric: {count: {name: x, within: 3dd}}\n"
            "      points: [{at_least: 1, points: 1}]\n"
            "  bands: [{name: ok, at_least: 0}]\n",
            4,
            "'3dd' is not a duration",
        ),
        (
            "health:\n  components:\n    a:\n      metric: {count: {name: x, within: 3d}}\n"
            "      points: [{at_least: 1, points: 1}]\n"
            "  bands: [{name: ok, at_least: 10}]\n",
            1,
            "the last band must start at 0",
        ),
    ],
)
def test_problems_point_at_the_file(text: str, line: int, message: str) -> None:
    with pytest.raises(ProblemsFound) as caught:
        load_health_text(text, "health.yaml")
    found = [p for p in caught.value.problems if message in p.message]
    assert found and found[0].path == "health.yaml", caught.value.problems
    assert found[0].line >= line
