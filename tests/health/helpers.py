"""A small health model and a store built around it, for the health tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert

from engine.health.load import load_health_text
from engine.health.spec import HealthSpec
from engine.store.models import events, ledger, message_events

NOW = datetime(2026, 11, 23, 9, 0)

MODEL = """
health:
  components:
    adoption:
      metric: {active_share: {name: login, within: 30d, of: seats}}
      points: [{at_least: 60, points: 100}, {at_least: 30, points: 60}]
      otherwise: 10
      weight: {high_touch: 1, other: 2}
    support:
      metric: {count: {name: support_ticket_opened, within: 30d, where: {priority: P1}}}
      points: [{at_most: 0, points: 100}, {at_most: 2, points: 50}]
      otherwise: 0
      weight: 1
    survey:
      metric: {latest: {name: nps_response, property: score, within: 365d}}
      points: [{at_least: 9, points: 100}, {at_least: 7, points: 70}]
      otherwise: 20
      missing: 50
      weight: 1
    features:
      metric: {distinct: {name: feature_used, property: feature, within: 30d}}
      points: [{at_least: 3, points: 100}, {at_least: 1, points: 50}]
      weight: 0
    engagement:
      metric: {email: {within: 90d, measure: opened}}
      points: [{at_least: 50, points: 100}]
      missing: 60
      weight: 0
    relationships:
      metric: {roles_active: {roles: [champion, exec_sponsor], name: login, within: 30d}}
      points: [{at_least: 2, points: 100}, {at_least: 1, points: 50}]
      weight: 0
  bands:
    - {name: healthy, label: Healthy, at_least: 75}
    - {name: at_risk, label: At risk, at_least: 50}
    - {name: unhealthy, label: Unhealthy, at_least: 0}
"""


def model(text: str = MODEL) -> HealthSpec:
    """The test model (or `text`), loaded like the project's."""
    return load_health_text(text, "health.yaml")


def add_events(
    engine: Engine, account_id: int, name: str, rows: list[tuple[float, int | None, dict[str, Any]]]
) -> None:
    """Events (days ago, contact, properties) of an account, at NOW."""
    with engine.begin() as conn:
        conn.execute(
            insert(events),
            [
                {
                    "account_id": account_id,
                    "contact_id": contact,
                    "name": name,
                    "occurred_at": NOW - timedelta(days=days),
                    "properties": props,
                }
                for days, contact, props in rows
            ],
        )


def sent_email(engine: Engine, account_id: int, key: str, days_ago: float, opened: bool) -> None:
    """A sent email to the account, opened or not."""
    at = NOW - timedelta(days=days_ago)
    with engine.begin() as conn:
        conn.execute(
            insert(ledger),
            [
                {
                    "send_key": key,
                    "kind": "email",
                    "channel": "outbox",
                    "status": "sent",
                    "playbook_id": "p",
                    "playbook_version": "v",
                    "step_id": "s",
                    "enrollment_id": 1,
                    "account_id": account_id,
                    "contact_id": None,
                    "payload": {},
                    "created_at": at,
                    "updated_at": at,
                }
            ],
        )
        if opened:
            conn.execute(insert(message_events), [{"send_key": key, "event": "open", "occurred_at": at, "payload": {}}])
