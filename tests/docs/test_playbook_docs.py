"""Every example in docs/playbooks.md is a valid playbook, compiles, runs, and has pinned SQL.

The documentation is the corpus of language constructs: each example is checked against the
committed JSON Schema and the loader, validated against the store and the templates, compiled for
both dialects (golden files in tests/docs/golden/), and evaluated on a real database — with the
trait types the project's touchflow.yaml declares, as `touchflow validate` and `run` read them.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from typing import Any

import jsonschema
import pytest
import yaml
from sqlalchemy import Engine, Select
from sqlalchemy.dialects import postgresql, sqlite

from engine.compile import compile_playbook
from engine.compile.journey import goal_reached, holding
from engine.delivery_config import load_delivery
from engine.load import load_playbook_text
from engine.plan import evaluate
from engine.render import EmailRenderer
from engine.schema import playbook_schema
from engine.validate import check_playbook
from tests.conftest import REPO

DOC = REPO / "docs" / "playbooks.md"
GOLDEN = REPO / "tests" / "docs" / "golden"
NOW = datetime(2026, 11, 23, 9, 0)
_EXAMPLE = re.compile(r"<!-- example: (?P<name>[a-z0-9-]+) -->\n```yaml\n(?P<body>.*?)```", re.S)
EXAMPLES = {m["name"]: m["body"] for m in _EXAMPLE.finditer(DOC.read_text(encoding="utf-8"))}
TRAITS = load_delivery(REPO).traits


def test_the_documentation_has_examples() -> None:
    assert len(EXAMPLES) >= 15


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_matches_the_json_schema(name: str) -> None:
    jsonschema.validate(yaml.safe_load(EXAMPLES[name]), playbook_schema())


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_loads_and_validates(name: str) -> None:
    loaded = load_playbook_text(EXAMPLES[name], f"docs/playbooks.md#{name}")
    problems = check_playbook(loaded, EmailRenderer(REPO / "templates" / "email"), traits=TRAITS)
    assert [p.format() for p in problems] == []


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_sql_is_pinned(name: str, dialect: str) -> None:
    compiled = compile_playbook(load_playbook_text(EXAMPLES[name], name), TRAITS)
    engine_dialect = sqlite.dialect() if dialect == "sqlite" else postgresql.dialect()

    def text(query: Select[Any]) -> str:
        return str(query.compile(dialect=engine_dialect, compile_kwargs={"literal_binds": True}))

    # Who enters, then the journey's own statements: goal, exit, each step's `if` and branch.
    parts = [text(compiled.candidates(NOW))]
    spec, ids = compiled.spec, [1, 2]
    if spec.goal is not None:
        parts.append("-- goal\n" + text(goal_reached(spec.subject, spec.goal, ids, NOW, TRAITS)))
    if spec.exit_ is not None:
        parts.append("-- exit\n" + text(holding(spec.subject, spec.exit_, ids, NOW, TRAITS)))
    for step in compiled.steps:
        conditions = {"if": step.spec.if_, "branch": getattr(getattr(step.spec, "branch", None), "if_", None)}
        for which, condition in conditions.items():
            if condition is not None:
                parts.append(f"-- step {step.id} {which}\n" + text(holding(spec.subject, condition, ids, NOW, TRAITS)))
    sql = "\n\n".join(parts)
    golden = GOLDEN / f"{name}.{dialect}.sql"
    if os.environ.get("TOUCHFLOW_UPDATE_GOLDEN") == "1":
        golden.write_text(sql + "\n", encoding="utf-8")
    assert golden.exists(), f"missing {golden.name}: run `make golden`"
    assert sql + "\n" == golden.read_text(encoding="utf-8")


def test_every_example_runs_on_the_database(db: Engine) -> None:
    for name, body in sorted(EXAMPLES.items()):
        compiled = compile_playbook(load_playbook_text(body, name), TRAITS)
        with db.begin() as conn:
            result = evaluate(conn, compiled, NOW, "docs")
        assert (result.matched, result.enrolled) == (0, 0), name
