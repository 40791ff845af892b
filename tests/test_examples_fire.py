"""Every example playbook enrolls someone on the demo store, and the bench's hand-written floor
selects exactly the subjects the engine enrolls, playbook by playbook, on the calendar's awkward
days too (so the benchmark compares equal work)."""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, text

from benchmarks.evaluate import load_examples, run
from benchmarks.floor import FLOOR, floor_params, floor_sql
from benchmarks.health import score_store
from demo.data import generate
from engine.compile import CompiledPlaybook
from engine.plan import evaluate
from engine.store.db import connect, migrate
from engine.store.models import accounts, enrollments
from tests.conftest import REPO, _pg_or_skip, migrated_pg_schema

NOW = datetime(2026, 11, 23, 9, 0)

# The days the subject sets are compared on. The demo store is generated around each of them, so
# every window has recent events and contracts that start on the awkward side of a boundary.
DATES = {
    "ordinary-day": NOW,
    # The anniversary window (3 days) reaches back into last year: contracts signed on
    # 30/31 December are a day or two old, not a year.
    "new-year": datetime(2027, 1, 1, 9, 0),
    "leap-day": datetime(2028, 2, 29, 9, 0),
    # The window holds 28 February of a common year: 29 February contracts celebrate on the 28th.
    "after-common-february": datetime(2029, 3, 1, 9, 0),
    "dst-starts-us": datetime(2027, 3, 14, 9, 0),
    "dst-ends-eu": datetime(2027, 10, 31, 0, 30),
}
ACCOUNTS = 1500
SEED = 11


@dataclass(frozen=True)
class Day:
    """What each side selects per playbook at one date, and the accounts they chose from."""

    by_engine: dict[str, set[int]]
    by_floor: dict[str, set[int]]
    accounts: list[tuple[int, str, date]]  # (id, status, contract_start)


@dataclass
class Store:
    """One small demo store per dialect, regenerated around each date once (`days` caches)."""

    engine: Engine
    playbooks: list[CompiledPlaybook]
    days: dict[str, Day] = field(default_factory=dict)

    def at(self, name: str) -> Day:
        """Both sides' subjects at DATES[name], on a store generated around that date."""
        if name not in self.days:
            now = DATES[name]
            generate(self.engine, accounts=ACCOUNTS, seed=SEED, now=now.replace(hour=0, minute=0))
            score_store(self.engine, now, REPO)  # the tick's daily health stage, before the playbooks
            by_engine, by_floor = {}, {}
            params = floor_params(now)
            for playbook in self.playbooks:
                with self.engine.begin() as conn:
                    evaluate(conn, playbook, now, "examples")
                    enrolled = select(enrollments.c.subject_id).where(enrollments.c.playbook_id == playbook.id)
                    by_engine[playbook.id] = set(conn.execute(enrolled).scalars())
                    floor = text(floor_sql(playbook.id, self.engine.dialect.name))
                    by_floor[playbook.id] = set(conn.execute(floor, params).scalars())
            with self.engine.connect() as conn:
                rows = conn.execute(select(accounts.c.id, accounts.c.status, accounts.c.contract_start)).all()
            self.days[name] = Day(by_engine, by_floor, [(r.id, r.status, r.contract_start) for r in rows])
        return self.days[name]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    playbooks = load_examples(REPO / "playbooks", REPO / "templates" / "email")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('floor') / 'store.db'}"
        engine = connect(url)
        migrate(engine)
        yield Store(engine, playbooks)
        engine.dispose()
        return
    with migrated_pg_schema(_pg_or_skip(), "tf") as url:
        engine = connect(url)
        yield Store(engine, playbooks)
        engine.dispose()


def test_every_example_fires_on_the_demo_store(db: Engine) -> None:
    generate(db, accounts=2000, seed=7, now=NOW.replace(hour=0))
    score_store(db, NOW, REPO)  # the tick's daily health stage, before the playbooks
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


@pytest.mark.parametrize("day", list(DATES))
def test_floor_selects_the_engines_subjects_per_playbook(store: Store, day: str) -> None:
    by_engine, by_floor = store.at(day).by_engine, store.at(day).by_floor
    differ = {
        pid: {
            "engine only": sorted(by_engine[pid] - by_floor[pid]),
            "floor only": sorted(by_floor[pid] - by_engine[pid]),
        }
        for pid in by_engine
        if by_engine[pid] != by_floor[pid]
    }
    assert differ == {}, f"{DATES[day]}: {differ}"
    # The comparison is not between two empty sides: most playbooks select someone on each day.
    assert sum(1 for subjects in by_engine.values() if subjects) >= 10, by_engine


def _anniversaries(rows: list[tuple[int, str, date]], now: datetime, window_days: int = 3) -> set[int]:
    """The anniversary playbook's definition, in Python: an active account whose contract began in
    an earlier year and whose month and day fall on one of the window's days (29 February on the
    28th in common years)."""
    chosen = set()
    for day in (now.date() - timedelta(days=k) for k in range(window_days)):
        for account_id, status, start in rows:
            if status != "active" or start.year >= day.year:
                continue
            leap_day_on_28th = (start.month, start.day) == (2, 29) and not calendar.isleap(day.year)
            month_day = (2, 28) if leap_day_on_28th else (start.month, start.day)
            if month_day == (day.month, day.day):
                chosen.add(account_id)
    return chosen


@pytest.mark.parametrize("day", ["new-year", "leap-day", "after-common-february"])
def test_anniversary_follows_its_definition_at_the_calendar_edges(store: Store, day: str) -> None:
    selected = store.at(day)
    expected = _anniversaries(selected.accounts, DATES[day])
    assert expected, "the store has no anniversary in the window"
    assert selected.by_engine["anniversary"] == expected
    assert selected.by_floor["anniversary"] == expected


def test_the_edge_cases_are_in_the_store(store: Store) -> None:
    # Without these rows the comparisons above would pass whatever each side did at the edges.
    new_year = store.at("new-year").accounts
    assert any(
        status == "active" and start in (date(2026, 12, 30), date(2026, 12, 31)) for _, status, start in new_year
    )
    march = store.at("after-common-february").accounts
    assert any(status == "active" and start == date(2028, 2, 29) for _, status, start in march)


def _build(engine: Engine, n: int, seed: int, at: datetime) -> object:
    return generate(engine, accounts=n, seed=seed, now=at.replace(hour=0))


def test_bench_floor_selects_what_the_engine_enrolls(db: Engine) -> None:
    playbooks = load_examples(REPO / "playbooks", REPO / "templates" / "email")
    result = run(db, 1500, 3, DATES["new-year"], playbooks, _build, repeat=1)
    assert result.enrolled == result.floor_rows > 0
    assert result.mismatched == {}
    assert result.as_dict()["mismatched"] == {}
    assert result.playbooks == len(playbooks)


def test_bench_reports_the_playbooks_whose_floor_selects_other_subjects(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    playbooks = load_examples(REPO / "playbooks", REPO / "templates" / "email")
    now = DATES["new-year"]
    _build(db, 1500, 3, now)
    with db.begin() as conn:
        anniversary = next(p for p in playbooks if p.id == "anniversary")
        expected = evaluate(conn, anniversary, now, "probe").enrolled
        conn.execute(enrollments.delete())
    assert expected > 0
    # A floor that forgets one subject and adds another: equal counts, different sets.
    monkeypatch.setitem(
        FLOOR,
        "anniversary",
        f"""{FLOOR["anniversary"]}
              AND id <> (SELECT min(id) FROM accounts WHERE status = 'active'
                         AND id IN ({FLOOR["anniversary"]}))
        UNION SELECT max(id) FROM accounts WHERE id NOT IN ({FLOOR["anniversary"]})""",
    )
    result = run(db, 1500, 3, now, playbooks, _build, repeat=1)
    assert result.enrolled == result.floor_rows
    assert result.mismatched == {"anniversary": 2}
