"""A playbook that does not validate as a whole, kept part by part.

When one field is wrong (a duration '3dd', a step of an unknown kind), pydantic rejects the whole
playbook, and the semantic checks (fields against the catalogue, templates, step ids) would not
run until that is fixed: the author would see the rest of the problems only on the next run.
Here every top-level field, and every step on its own, is validated separately; the parts that
pass form a playbook built without validation, on which the semantic checks run in the same pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError

from engine.load.yaml_nodes import Located, Path
from engine.spec import Playbook
from engine.spec.steps import Step

_STEP: TypeAdapter[Any] = TypeAdapter(Step)


@dataclass(frozen=True)
class PlaybookParts:
    """The parts of a playbook that validated, positioned as in the file."""

    spec: Playbook
    """Built without validation: only the fields that validated on their own are set (others
    keep their defaults; a bad or missing trigger is None), steps only those that validated."""
    located: Located
    """The file's marks, with the kept steps renumbered so `where(("steps", i))` is still right."""
    valid: frozenset[str]
    """The top-level keys that validated (as written: `exit`, not `exit_`)."""
    dropped_step_ids: frozenset[str]
    """The `id:` of steps that did not validate: a reference to one is not a second problem."""


def playbook_parts(located: Located) -> PlaybookParts | None:
    """The parts of `located.data` that validate, or None when nothing can be checked further
    (not a mapping, or a bad `subject`, which every field check depends on)."""
    data = located.data
    if not isinstance(data, dict):
        return None
    values: dict[str, Any] = {"trigger": None, "steps": []}
    valid: set[str] = set()
    kept: list[int] = []
    dropped: set[str] = set()
    for name, info in Playbook.model_fields.items():
        key = info.alias or name
        if key not in data:
            continue
        if name == "steps":
            values[name], kept, dropped = _steps(data[key])
            valid.add(key)
            continue
        try:
            values[name] = _field_adapter(name).validate_python(data[key])
        except ValidationError:
            if name == "subject":
                return None
            continue
        valid.add(key)
    spec = Playbook.model_construct(**values)
    return PlaybookParts(spec, _renumbered(located, kept), frozenset(valid), frozenset(dropped))


@cache
def _field_adapter(name: str) -> TypeAdapter[Any]:
    """A validator of one field of Playbook, with the field's own constraints."""
    info = Playbook.model_fields[name]
    annotated: Any = Annotated[info.annotation, info]  # the field's type with its constraints
    return TypeAdapter(annotated)


def _steps(raw: Any) -> tuple[list[Any], list[int], set[str]]:
    """The steps that validate, their positions in the file, and the ids of the others."""
    steps: list[Any] = []
    kept: list[int] = []
    dropped: set[str] = set()
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        try:
            steps.append(_STEP.validate_python(item))
            kept.append(i)
        except ValidationError:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                dropped.add(item["id"])
    return steps, kept, dropped


def _renumbered(located: Located, kept: list[int]) -> Located:
    """`located` with step `kept[j]`'s marks under `("steps", j)`; other steps' marks dropped."""
    new_index = {old: new for new, old in enumerate(kept)}
    marks: dict[Path, tuple[int, int]] = {}
    for path, mark in located.marks.items():
        if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
            if path[1] not in new_index:
                continue
            path = ("steps", new_index[path[1]], *path[2:])
        marks[path] = mark
    data = dict(located.data) if isinstance(located.data, dict) else {}
    if isinstance(data.get("steps"), list):
        data["steps"] = [data["steps"][i] for i in kept]
    return Located(data=data, path=located.path, marks=marks)
