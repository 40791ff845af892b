"""The playbook JSON Schema, generated from the spec models (docstrings become descriptions)."""

from __future__ import annotations

import json
from typing import Any

from engine.spec import Playbook

SCHEMA_ID = "https://touchflow.example/schemas/playbook.schema.json"


def playbook_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one playbook file."""
    schema = Playbook.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def playbook_schema_text() -> str:
    """The schema as committed under schemas/: stable key order, trailing newline."""
    return json.dumps(playbook_schema(), indent=2, ensure_ascii=False) + "\n"
