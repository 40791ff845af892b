"""The example playbook that gates on health reads the computed score (`health_history`), not a
trait a customer's import may carry: review requests go to accounts scoring above 85 with no
recent ticket, whatever `traits.health_score` says."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, insert

from engine.compile import compile_playbook
from engine.load import load_playbook
from engine.store.models import health_history
from tests.conftest import REPO
from tests.factories import Store
from tests.health.helpers import NOW
from tests.language.helpers import run


def test_review_requests_follow_the_computed_score(db: Engine) -> None:
    store = Store(db, NOW)
    scored_high = store.account(status="active", traits={"health_score": 40})
    trait_only = store.account(status="active", traits={"health_score": 95})
    ticket = store.account(status="active")
    borderline = store.account(status="active")
    store.events(ticket, "support_ticket_opened", [3])
    day = NOW.date()
    with db.begin() as conn:
        conn.execute(
            insert(health_history),
            [
                {"account_id": scored_high, "computed_on": day, "score": 91.0, "band": "healthy", "components": {}},
                {"account_id": trait_only, "computed_on": day, "score": 60.0, "band": "at_risk", "components": {}},
                {"account_id": ticket, "computed_on": day, "score": 97.0, "band": "healthy", "components": {}},
                {"account_id": borderline, "computed_on": day, "score": 85.0, "band": "healthy", "components": {}},
                # Yesterday's higher score is not today's.
                {
                    "account_id": borderline,
                    "computed_on": day - timedelta(days=1),
                    "score": 99.0,
                    "band": "healthy",
                    "components": {},
                },
            ],
        )
    playbook = compile_playbook(load_playbook(REPO / "playbooks" / "review-request.yaml"))
    assert [subject for subject, _ in run(db, playbook, NOW)] == [scored_high]
