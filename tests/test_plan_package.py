"""The plan package's structure: every step kind has a handler, and ledger rows are built in one place."""

from __future__ import annotations

import ast
from typing import get_args

from engine.plan.steps import HANDLERS
from engine.spec.steps import STEP_KINDS, AnyStep, step_kind
from tests.conftest import REPO


def test_every_step_kind_has_a_handler() -> None:
    kinds = {step_kind_of(cls) for cls in get_args(AnyStep)}
    assert kinds == set(STEP_KINDS)
    assert set(HANDLERS) == set(get_args(AnyStep))


def step_kind_of(cls: type) -> str | None:
    """The kind of a step class, as the spec names it."""
    return step_kind(cls.model_construct())


def test_ledger_rows_are_built_by_one_builder() -> None:
    """A dict literal with the ledger's identifying columns is a ledger row built by hand."""
    builders = []
    for path in sorted((REPO / "engine").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict):
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                if {"send_key", "kind", "status", "enrollment_id"} <= keys:
                    builders.append(str(path.relative_to(REPO)))
    assert builders == ["engine/plan/ledger_rows.py"]
