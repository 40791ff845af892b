"""The committed JSON Schema is the one the spec models generate, and it documents every field."""

from __future__ import annotations

import json
from typing import Any

from engine.schema import playbook_schema, playbook_schema_text
from tests.conftest import REPO


def test_committed_schema_matches_models() -> None:
    committed = (REPO / "schemas" / "playbook.schema.json").read_text(encoding="utf-8")
    assert committed == playbook_schema_text(), "schemas/playbook.schema.json drifted: run `make schema`"


def _properties(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = [("Playbook", k, v) for k, v in schema["properties"].items()]
    for name, definition in schema["$defs"].items():
        found.extend((name, k, v) for k, v in definition.get("properties", {}).items())
    return found


def test_every_field_has_a_description() -> None:
    undocumented = [
        f"{model}.{field}" for model, field, prop in _properties(playbook_schema()) if not prop.get("description")
    ]
    assert undocumented == []


def test_schema_forbids_unknown_keys() -> None:
    schema = playbook_schema()
    assert schema["additionalProperties"] is False
    assert all(
        d.get("additionalProperties") is False
        for n, d in schema["$defs"].items()
        if d.get("type") == "object" and "properties" in d
    )
    json.dumps(schema)  # serialisable as is
