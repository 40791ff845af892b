"""docs/playbooks.md is complete by construction: every property of every model of the playbook
JSON Schema — the top level, conditions, triggers, steps, entry, goals, exits, experiments,
policy — appears in one of its examples, in a mapping that can be that model.

A mapping "can be" a model when all its keys are properties of that model: `within` shown in an
event window does not document `within` of a goal. The examples themselves are validated,
compiled and run by test_playbook_docs.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from engine.schema import playbook_schema
from tests.docs.test_playbook_docs import EXAMPLES


def models() -> dict[str, set[str]]:
    """Model name → its property names, for every model of the schema that has properties."""
    schema = playbook_schema()
    found = {name: set(d["properties"]) for name, d in schema["$defs"].items() if d.get("properties")}
    found["Playbook"] = set(schema["properties"])
    return found


def mappings(value: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in a parsed YAML document, nested ones included."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from mappings(item)
    elif isinstance(value, list):
        for item in value:
            yield from mappings(item)


def shown(properties: set[str]) -> set[str]:
    """The properties of a model that some example writes in a mapping that can be that model."""
    out: set[str] = set()
    for body in EXAMPLES.values():
        for mapping in mappings(yaml.safe_load(body)):
            keys = {str(k) for k in mapping}
            if keys <= properties:
                out |= keys
    return out


def test_every_property_of_the_playbook_schema_has_an_example() -> None:
    missing = sorted(f"{name}.{prop}" for name, props in models().items() for prop in sorted(props - shown(props)))
    assert missing == [], "not shown in any example of docs/playbooks.md: " + ", ".join(missing)


def test_every_condition_and_trigger_kind_has_an_example() -> None:
    # One-key models (a condition's or a trigger's kind) are the most likely to be left out.
    kinds = {name: props for name, props in models().items() if name.endswith(("Condition", "Trigger", "Of"))}
    assert kinds, "the schema names no condition or trigger kinds"
    missing = sorted(name for name, props in kinds.items() if props - shown(props))
    assert missing == []
