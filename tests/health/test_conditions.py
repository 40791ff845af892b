"""`health:` conditions read the latest score at or before now, on both databases; entering a band
is a `became_true` edge with its cool-down."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from engine.load import load_playbook_text
from engine.problems import ProblemsFound
from engine.store.models import health_history
from tests.factories import Store
from tests.health.helpers import NOW
from tests.language.helpers import compiled, complete_all, playbook_yaml, run, who


def _history(db: Engine, rows: list[tuple[int, int, float, str, dict[str, Any] | None]]) -> None:
    """(account, days before NOW, score, band, components) rows."""
    with db.begin() as conn:
        conn.execute(
            insert(health_history),
            [
                {"account_id": a, "computed_on": NOW.date() - timedelta(days=d), "score": s, "band": b, "components": c}
                for a, d, s, b, c in rows
            ],
        )


def _points(adoption: float) -> dict[str, Any]:
    return {"adoption": {"value": adoption, "points": adoption, "why": ">= 0"}, "survey": {"points": 50}}


@pytest.fixture
def accounts3(db: Engine) -> tuple[int, int, int]:
    store = Store(db, NOW)
    falling, steady, future = store.account(), store.account(), store.account()
    _history(
        db,
        [
            (falling, 20, 90.0, "healthy", _points(90)),
            (falling, 0, 65.0, "at_risk", _points(30)),
            (steady, 10, 80.0, "healthy", _points(70)),
            (steady, 1, 78.0, "healthy", _points(70)),
            # A score dated after now is not seen yet; the latest ≤ now is 72.
            (future, 3, 72.0, "at_risk", _points(50)),
            (future, -2, 20.0, "unhealthy", _points(5)),
        ],
    )
    return falling, steady, future


def test_score_band_component_and_drop(db: Engine, accounts3: tuple[int, int, int]) -> None:
    falling, steady, future = accounts3
    assert who(db, "{health: {below: 70}}", NOW) == {falling}
    assert who(db, "{health: {above: 75}}", NOW) == {steady}
    assert who(db, "{health: {band: at_risk}}", NOW) == {falling, future}
    assert who(db, "{health: {band: [healthy, unhealthy]}}", NOW) == {steady}
    assert who(db, "{health: {component: adoption, below: 40}}", NOW) == {falling}
    assert who(db, "{health: {dropped_by: 15, within: 30d}}", NOW) == {falling}
    assert who(db, "{health: {dropped_by: 15, within: 10d}}", NOW) == set()  # the 90 is 20 days old
    assert who(db, "{health: {component: adoption, dropped_by: 50, within: 30d}}", NOW) == {falling}
    # An account without history matches none of them, `not` included only through `not`.
    assert who(db, "{not: {health: {below: 70}}}", NOW) == {steady, future}


def test_contact_subjects_read_their_accounts_health(db: Engine, accounts3: tuple[int, int, int]) -> None:
    falling, _, _ = accounts3
    person = Store(db, NOW).contact(falling)
    assert who(db, "{health: {band: at_risk}}", NOW, subject="contact") == {person}


def test_entering_a_band_is_an_edge_with_a_cooldown(db: Engine) -> None:
    acct = Store(db, NOW).account()
    pb = compiled(playbook_yaml("{became_true: {health: {band: at_risk}}, cooldown: 30d}"))
    _history(db, [(acct, 0, 80.0, "healthy", None)])
    assert run(db, pb, NOW) == []
    _history(db, [(acct, -1, 60.0, "at_risk", None)])
    assert [s for s, _ in run(db, pb, NOW + timedelta(days=1))] == [acct]
    assert run(db, pb, NOW + timedelta(days=2)) == []  # still at risk: no new edge
    complete_all(db)
    _history(db, [(acct, -3, 80.0, "healthy", None), (acct, -4, 55.0, "at_risk", None)])
    assert run(db, pb, NOW + timedelta(days=3)) == []  # left the band (re-armed)
    assert run(db, pb, NOW + timedelta(days=4)) == []  # entered again, inside the cool-down


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("{health: {}}", "give below, above, band or dropped_by"),
        ("{health: {dropped_by: 10}}", "dropped_by and within go together"),
        ("{health: {component: adoption, band: at_risk}}", "a band belongs to the score"),
        ("{health: {belw: 70}}", "did you mean 'below'"),
    ],
)
def test_mistakes_are_named_at_their_line(condition: str, message: str) -> None:
    with pytest.raises(ProblemsFound) as caught:
        load_playbook_text(playbook_yaml(condition), "p.yaml")
    assert any(message in p.message and p.line == 4 for p in caught.value.problems), caught.value.problems


def test_describe_for_the_audit() -> None:
    pb = compiled(playbook_yaml("{health: {component: adoption, below: 40, dropped_by: 10, within: 30d}}"))
    assert "health adoption points below 40 and dropped 10+ in 30d" in pb.describe_trigger()
