"""Row factories: build a small customer store by hand, with only the fields a test cares about."""

from __future__ import annotations

import itertools
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert

from engine.config import Settings
from engine.project import Project, load_project
from engine.store.models import accounts, contacts, csms, events
from tests.conftest import REPO

_ids = itertools.count(1)


class Store:
    """Inserts rows with sensible defaults; ids are unique within a test run."""

    def __init__(self, engine: Engine, now: datetime) -> None:
        self.engine = engine
        self.now = now

    def csm(self, **kw: Any) -> int:
        row = {
            "id": next(_ids),
            "name": "Mina Park",
            "email": "mina.park@touchflow.example",
            "team": "growth",
            **kw,
        }
        self._insert(csms, row)
        return int(row["id"])

    def account(self, **kw: Any) -> int:
        row = {
            "id": next(_ids),
            "name": "Acme Analytics",
            "tier": "tech_touch",
            "plan": "starter",
            "arr": 9000.0,
            "seats_purchased": 10,
            "lifecycle_stage": "adoption",
            "contract_start": date(2025, 1, 1),
            "renewal_date": (self.now + timedelta(days=200)).date(),
            "csm_id": None,
            "status": "active",
            "timezone": "Europe/London",
            "locale": "en",
            "traits": {},
            **kw,
        }
        self._insert(accounts, row)
        return int(row["id"])

    def contact(self, account_id: int, role: str = "admin", **kw: Any) -> int:
        cid = kw.pop("id", next(_ids))
        row = {
            "id": cid,
            "account_id": account_id,
            "email": f"person{cid}@acme.example",
            "name": f"Person {cid}",
            "role": role,
            "timezone": None,
            "locale": None,
            "traits": {},
            **kw,
        }
        self._insert(contacts, row)
        return int(cid)

    def events(self, account_id: int, name: str, days_ago: list[float], contact_id: int | None = None) -> None:
        rows = [
            {
                "account_id": account_id,
                "contact_id": contact_id,
                "name": name,
                "occurred_at": self.now - timedelta(days=d),
                "properties": {},
            }
            for d in days_ago
        ]
        with self.engine.begin() as conn:
            conn.execute(insert(events), rows)

    def _insert(self, table: Any, row: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(table), [row])


def project(
    tmp_path: Path,
    db_url: str,
    playbooks: dict[str, str] | None = None,
    templates: dict[str, str] | None = None,
) -> Project:
    """A project in tmp_path: the repo's playbooks and templates, or the given ones on top of its templates."""
    root = tmp_path / "project"
    (root / "playbooks").mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "templates", root / "templates", dirs_exist_ok=True)
    if playbooks is None:
        shutil.copytree(REPO / "playbooks", root / "playbooks", dirs_exist_ok=True)
    else:
        for name, text in playbooks.items():
            (root / "playbooks" / f"{name}.yaml").write_text(text, encoding="utf-8")
    for name, text in (templates or {}).items():
        path = root / "templates" / "email" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    settings = Settings(project_dir=root, database_url=db_url, outbox_dir=root / "outbox")
    return load_project(settings)
