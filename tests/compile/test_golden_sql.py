"""Compiled SQL of the example playbooks, pinned per dialect.

A change to these files is a change to what runs against customers' databases: regenerate with
`make golden` and review the diff.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from engine.compile import compile_playbook
from engine.load import load_playbook
from tests.conftest import REPO

GOLDEN = Path(__file__).parent / "golden"
NOW = datetime(2026, 11, 23, 9, 0)
DIALECTS: dict[str, Dialect] = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}
PLAYBOOKS = sorted(p.stem for p in (REPO / "playbooks").glob("*.yaml"))


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_candidates_sql_is_pinned(playbook: str, dialect: str) -> None:
    compiled = compile_playbook(load_playbook(REPO / "playbooks" / f"{playbook}.yaml"))
    sql = str(compiled.candidates(NOW).compile(dialect=DIALECTS[dialect], compile_kwargs={"literal_binds": True}))
    golden = GOLDEN / f"{playbook}.{dialect}.sql"
    if os.environ.get("TOUCHFLOW_UPDATE_GOLDEN") == "1":
        golden.write_text(sql + "\n", encoding="utf-8")
    assert golden.exists(), f"missing {golden.name}: run `make golden`"
    assert sql + "\n" == golden.read_text(encoding="utf-8")
