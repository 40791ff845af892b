"""`funnel:` of `health.yaml` → `Funnel`, or every problem at its file:line:col.

The file also holds the health model (`health:`), read by its own loader: this one ignores every
top-level key but `funnel`. A missing file or a file without `funnel:` declares no funnel (None).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from engine.funnel.spec import Funnel, FunnelFile
from engine.load.pydantic_errors import problems_from_validation
from engine.load.yaml_nodes import Located, parse_yaml_keeping_data
from engine.load.yaml_nodes import Path as NodePath
from engine.problems import Problem, ProblemsFound, did_you_mean
from engine.spec.conditions import (
    BOOLEAN_KEYS,
    EVENT_KEYS,
    AllOf,
    AnyOf,
    EngagedCondition,
    FieldCondition,
    NotOf,
    SinceEntryCondition,
)
from engine.spec.traits import NO_TRAITS, TraitTypes
from engine.store.catalogue import known_field_names, resolve_field

HEALTH_FILE = "health.yaml"
"""The file beside touchflow.yaml holding the health model and the funnel."""

_SHAPE = "funnel is a mapping with 'stages': a list of {id, condition}"


def load_funnel(path: Path, display: str | None = None, traits: TraitTypes = NO_TRAITS) -> Funnel | None:
    """The funnel declared in the file at `path`; None when the file or its `funnel:` is absent.
    Raises ProblemsFound with every problem, `display` naming the file."""
    shown = display or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ProblemsFound([Problem(shown, 1, 1, f"cannot read file: {exc.strerror}")]) from None
    return load_funnel_text(raw, shown, traits)


def load_funnel_text(raw: bytes | str, path: str, traits: TraitTypes = NO_TRAITS) -> Funnel | None:
    """The funnel declared in `raw` (the text of `path`), or None when it declares none."""
    located, problems = parse_yaml_keeping_data(raw, path)
    if located is None:
        raise ProblemsFound(problems)
    data = located.data
    if data is None or (isinstance(data, dict) and "funnel" not in data):
        return None
    if not isinstance(data, dict):
        raise ProblemsFound([*problems, Problem(path, 1, 1, "health.yaml is a mapping with health: and funnel:")])
    if not isinstance(data["funnel"], dict):
        line, col = located.where(("funnel",))
        raise ProblemsFound([*problems, Problem(path, line, col + len("funnel: "), _SHAPE)])
    # Only `funnel` is validated, with the file's marks, so line:col stay those of the file.
    mine = Located(data={"funnel": data["funnel"]}, path=path, marks=located.marks)
    try:
        spec = FunnelFile.model_validate(mine.data).funnel
    except ValidationError as exc:
        raise ProblemsFound(sorted({*problems, *problems_from_validation(exc, mine, FunnelFile)})) from None
    problems += [Problem(path, *located.where(at), message) for at, message in _semantic(spec, traits)]
    if problems:
        raise ProblemsFound(sorted(problems))
    return spec


def _semantic(spec: Funnel, traits: TraitTypes) -> Iterator[tuple[NodePath, str]]:
    """Stage ids declared twice, and conditions on fields the store does not have."""
    seen: set[str] = set()
    for i, stage in enumerate(spec.stages):
        at: NodePath = ("funnel", "stages", i)
        if stage.id in seen:
            yield (*at, "id"), f"stage '{stage.id}' is declared twice"
        seen.add(stage.id)
        yield from _condition(stage.condition, (*at, "condition"), traits)


def _condition(cond: Any, at: NodePath, traits: TraitTypes) -> Iterator[tuple[NodePath, str]]:
    """Problems of one stage condition: the stage is about accounts, never an enrollment."""
    if isinstance(cond, AllOf | AnyOf):
        key = "all" if isinstance(cond, AllOf) else "any"
        for i, sub in enumerate(cond.all if isinstance(cond, AllOf) else cond.any):
            yield from _condition(sub, (*at, key, i), traits)
    elif isinstance(cond, NotOf):
        yield from _condition(cond.not_, (*at, "not"), traits)
    elif isinstance(cond, EngagedCondition | SinceEntryCondition):
        key = "engaged" if isinstance(cond, EngagedCondition) else "since_entry"
        yield (*at, key), f"'{key}' is about an enrollment; a funnel stage is about accounts"
    elif isinstance(cond, FieldCondition):
        for name in cond.root:
            if resolve_field(name, "account", traits) is None:
                hint = did_you_mean(name, [*known_field_names("account"), *BOOLEAN_KEYS, *EVENT_KEYS])
                yield (*at, name), f"unknown field '{name}' for accounts{hint}"
