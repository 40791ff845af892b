"""A project file of named sections (`health.yaml`: `health:`, `funnel:`), read into a spec model.

Each feature that owns a section passes its own model of the whole file (its section typed, the
others `Any`), so one file can hold several features' sections and each loader checks only its
own. Problems come back as `file:line:col` with "did you mean" like a playbook's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from engine.load.pydantic_errors import problems_from_validation
from engine.load.yaml_nodes import Located, parse_yaml
from engine.problems import Problem, ProblemsFound

M = TypeVar("M", bound=BaseModel)


def read_project_file(path: Path, display: str | None = None) -> Located | None:
    """The YAML mapping at `path` with its marks; None when the file does not exist.

    Raises ProblemsFound when it cannot be read, is not YAML, or is not a mapping."""
    shown = display or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ProblemsFound([Problem(shown, 1, 1, f"cannot read file: {exc.strerror}")]) from None
    located = parse_yaml(raw, shown)
    if not isinstance(located.data, dict):
        raise ProblemsFound([Problem(shown, 1, 1, "this file is a mapping of sections (health: …, funnel: …)")])
    return located


def load_sections(located: Located, model: type[M]) -> M:
    """`located`'s data validated as `model`. Raises ProblemsFound with every problem at its line:col."""
    try:
        return model.model_validate(located.data)
    except ValidationError as exc:
        raise ProblemsFound(sorted(problems_from_validation(exc, located, model))) from None
