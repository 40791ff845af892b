"""`health.yaml` → the `HealthSpec` of the project, or its problems at `file:line:col`."""

from __future__ import annotations

from pathlib import Path

from engine.health.spec import HealthFile, HealthSpec
from engine.load.sections import load_sections, read_project_file
from engine.load.yaml_nodes import parse_yaml
from engine.problems import Problem, ProblemsFound

HEALTH_FILE = "health.yaml"
"""The model's file, beside `touchflow.yaml`."""


def load_health(project_dir: Path) -> HealthSpec | None:
    """The project's health model; None when it has no `health.yaml` or the file has no `health:`.

    Raises ProblemsFound when the file exists but is not a valid model."""
    path = project_dir / HEALTH_FILE
    located = read_project_file(path, str(path))
    if located is None or "health" not in located.data:
        return None
    return load_sections(located, HealthFile).health


def load_health_text(text: str, display: str = HEALTH_FILE) -> HealthSpec:
    """A model from YAML text (tests, `validate`). Raises ProblemsFound."""
    located = parse_yaml(text, display)
    if not isinstance(located.data, dict) or "health" not in located.data:
        raise ProblemsFound([Problem(display, 1, 1, "a health model file has a top-level `health:` mapping")])
    return load_sections(located, HealthFile).health
