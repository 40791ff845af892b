"""Every example playbook enrolls someone on the demo store, and the bench's hand-written floor
selects exactly the subjects the engine enrolls (so the benchmark compares equal work)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from engine.bench.evaluate import load_examples, run
from engine.bench.floor import FLOOR
from engine.evaluate import evaluate
from engine.store.demo_data import generate
from tests.conftest import REPO

NOW = datetime(2026, 11, 23, 9, 0)


def test_every_example_fires_on_the_demo_store(db: Engine) -> None:
    generate(db, accounts=2000, seed=7, now=NOW.replace(hour=0))
    playbooks = load_examples(REPO / "playbooks", REPO / "templates" / "email")
    assert len(playbooks) >= 14
    enrolled = {}
    for playbook in playbooks:
        with db.begin() as conn:
            enrolled[playbook.id] = evaluate(conn, playbook, NOW, "examples").enrolled
    assert all(n > 0 for n in enrolled.values()), enrolled


def test_every_example_has_a_floor() -> None:
    ids = {p.id for p in load_examples(REPO / "playbooks", REPO / "templates" / "email")}
    assert {p.stem for p in (REPO / "playbooks").glob("*.yaml")} == ids == set(FLOOR)


def test_bench_floor_selects_what_the_engine_enrolls(db: Engine) -> None:
    playbooks = load_examples(REPO / "playbooks", REPO / "templates" / "email")

    def build(engine: Engine, n: int, seed: int, at: datetime) -> object:
        return generate(engine, accounts=n, seed=seed, now=at.replace(hour=0))

    result = run(db, 1500, 3, NOW, playbooks, build, repeat=1)
    assert result.enrolled == result.floor_rows > 0
    assert result.playbooks == len(playbooks)
