"""The playbook JSON Schema, generated from the spec models (docstrings become descriptions)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from engine.spec import Playbook

SCHEMA_ID = "https://touchflow.example/schemas/playbook.schema.json"


def playbook_schema(event_names: Sequence[str] = (), field_names: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one playbook file.

    With the names of a data catalogue (`touchflow catalog --write`), editors also offer the
    store's event names and fields for completion; any other name stays valid (new events appear).
    """
    schema = Playbook.model_json_schema(by_alias=True, mode="validation")
    _offer(schema["$defs"], list(event_names), list(field_names))
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def playbook_schema_text(event_names: Sequence[str] = (), field_names: Sequence[str] = ()) -> str:
    """The schema as committed under schemas/: stable key order, trailing newline."""
    return json.dumps(playbook_schema(event_names, field_names), indent=2, ensure_ascii=False) + "\n"


# The spec models whose `name` is an event name, and where a goal names its event.
_EVENT_NAMED = ("EventWindow", "NoEventWindow", "Occurrence", "Trend", "ActiveShare", "ActiveContacts", "SinceEntry",
                "EventFilter")  # fmt: skip


def _offer(defs: dict[str, Any], events: list[str], fields: list[str]) -> None:
    """Known names as completions: `anyOf` a known name or any string, and `examples`."""
    if events:
        for model in _EVENT_NAMED:
            prop = defs.get(model, {}).get("properties", {}).get("name")
            if prop is not None:
                free = {k: prop.pop(k) for k in ("type", "minLength") if k in prop}
                prop["anyOf"] = [{"enum": events}, free]
                prop["examples"] = events
        goal = defs.get("Goal", {}).get("properties", {}).get("event")
        if goal is not None:
            goal["examples"] = events
    names = defs.get("FieldCondition", {}).get("propertyNames")
    if fields and names is not None:
        names["examples"] = fields
