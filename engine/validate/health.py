"""The health model in `touchflow validate`: `health.yaml`'s own problems, and the `health:`
conditions of a playbook checked against it (a component or band the model does not have is an
error with did-you-mean: it would never match, silently)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, RootModel

from engine.health.spec import HealthFile
from engine.load import LoadedPlaybook
from engine.load.sections import load_sections, read_project_file
from engine.problems import Problem, ProblemsFound, did_you_mean
from engine.spec.conditions import HealthCondition, HealthTest

YamlPath = tuple[str | int, ...]


@dataclass(frozen=True)
class HealthNames:
    """What a model names: its components and bands (read from the file even when the model has
    problems, so conditions are checked in the same run)."""

    components: list[str]
    bands: list[str]


def health_model_problems(health_file: Path, display: str) -> tuple[HealthNames | None, list[Problem]]:
    """The names the model in `health_file` declares, and the file's problems (at
    `display`:line:col). A missing file, or one without a `health:` section, is no model."""
    try:
        located = read_project_file(health_file, display)
    except ProblemsFound as exc:
        return None, list(exc.problems)
    if located is None or "health" not in located.data:
        return None, []
    try:
        spec = load_sections(located, HealthFile).health
    except ProblemsFound as exc:
        return _raw_names(located.data["health"]), list(exc.problems)
    return HealthNames(list(spec.components), spec.band_names()), []


def _raw_names(section: Any) -> HealthNames | None:
    """The component and band names of a model that did not validate, as far as they can be read."""
    if not isinstance(section, dict):
        return None
    components = section.get("components")
    bands = section.get("bands")
    return HealthNames(
        [str(k) for k in components] if isinstance(components, dict) else [],
        [str(b["name"]) for b in bands if isinstance(b, dict) and "name" in b] if isinstance(bands, list) else [],
    )


def health_condition_problems(
    loaded: LoadedPlaybook, model: HealthNames | None, model_found: bool, model_display: str
) -> list[Problem]:
    """Every `health:` condition of the playbook against the model: unknown components and bands
    are errors; with no model file at all, one warning (such conditions never match)."""
    found: list[Problem] = []
    tests = list(_health_tests(loaded.spec, ()))
    if tests and not model_found:
        line, col = loaded.located.where(tests[0][0])
        message = f"no health model ({model_display}): health conditions match no account until there is one"
        return [Problem(loaded.path, line, col, message, "warning")]
    if model is None:  # the file is not a model at all: its own problems say so
        return []
    for at, test in tests:
        if test.component is not None and model.components and test.component not in model.components:
            line, col = loaded.located.where((*at, "component"))
            hint = did_you_mean(test.component, model.components)
            found.append(Problem(loaded.path, line, col, f"no component '{test.component}' in {model_display}{hint}"))
        named = [test.band] if isinstance(test.band, str) else test.band or []
        for i, band in enumerate(named):
            if model.bands and band not in model.bands:
                where = (*at, "band") if isinstance(test.band, str) else (*at, "band", i)
                line, col = loaded.located.where(where)
                hint = did_you_mean(band, model.bands)
                found.append(Problem(loaded.path, line, col, f"no band '{band}' in {model_display}{hint}"))
    return found


def _health_tests(value: Any, at: YamlPath) -> Iterator[tuple[YamlPath, HealthTest]]:
    """Every `health:` test in a spec, with its path in the YAML (fields by their YAML names)."""
    if isinstance(value, HealthCondition):
        yield (*at, "health"), value.health
    elif isinstance(value, RootModel):
        yield from _health_tests(value.root, at)
    elif isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            # A playbook that failed validation holds only the fields that passed: the rest are absent.
            yield from _health_tests(getattr(value, name, None), (*at, info.alias or name))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _health_tests(item, (*at, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _health_tests(item, (*at, str(key)))
