"""`touchflow demo-data --export DIR`: the demo store as import files; importing them into a
fresh store (SQLite and PostgreSQL) gives back the same customers, field by field."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from demo.data import generate
from demo.export import export_store
from engine.ingest.load import import_files
from engine.store import models
from engine.store.db import connect, migrate
from tests.ingest.test_import import cli, invoke

__all__ = ["cli"]  # fixture used here

NOW = datetime(2026, 11, 24)


def snapshot(engine: Engine) -> dict[str, dict[Any, tuple[Any, ...]]]:
    """The store's customers keyed by their own ids, references as the ids they name."""
    a, c, s, e = models.accounts, models.contacts, models.csms, models.events
    with engine.connect() as conn:
        csm = {r.id: r.external_id for r in conn.execute(select(s.c.id, s.c.external_id))}
        account = {r.id: r.external_id for r in conn.execute(select(a.c.id, a.c.external_id))}
        contact = {r.id: r.external_id for r in conn.execute(select(c.c.id, c.c.external_id))}
        columns = "name tier plan arr seats_purchased lifecycle_stage contract_start renewal_date status timezone"
        columns += " locale traits"
        return {
            "csms": {r.external_id: (r.name, r.email, r.team) for r in conn.execute(select(s))},
            "accounts": {
                r.external_id: (csm.get(r.csm_id), *(r._mapping[k] for k in columns.split()))
                for r in conn.execute(select(a))
            },
            "contacts": {
                r.external_id: (account[r.account_id], r.email, r.name, r.role, r.timezone, r.locale, r.traits)
                for r in conn.execute(select(c))
            },
            # The demo's events carry no event_id: compared on their content, as a multiset.
            "events": _counted(
                (
                    account[r.account_id],
                    contact.get(r.contact_id),
                    r.name,
                    r.occurred_at,
                    json.dumps(r.properties, sort_keys=True),
                )
                for r in conn.execute(select(e))
            ),
            "suppressions": {r.email: (r.reason, r.detail) for r in conn.execute(select(models.suppressions))},
        }


def _counted(items: Any) -> dict[Any, tuple[Any, ...]]:
    counts: dict[Any, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return {item: (n,) for item, n in counts.items()}


def test_export_then_import_into_a_fresh_store_gives_the_same_customers(db: Engine, tmp_path: Path) -> None:
    source = connect(f"sqlite:///{tmp_path / 'source.db'}")
    migrate(source)
    made = generate(source, accounts=12, seed=7, now=NOW)
    done = export_store(source, tmp_path / "export")
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == [
        "accounts.csv",
        "contacts.csv",
        "csms.csv",
        "events.jsonl",
        "suppressions.csv",
    ]
    for kind, name in [
        ("csms", "csms.csv"),
        ("accounts", "accounts.csv"),
        ("contacts", "contacts.csv"),
        ("events", "events.jsonl"),
        ("suppressions", "suppressions.csv"),
    ]:
        summary = import_files(db, kind, [tmp_path / "export" / name], now=NOW)
        assert summary.rejected == 0 and summary.written, (kind, summary)
    before, after = snapshot(source), snapshot(db)
    source.dispose()
    assert (len(after["accounts"]), len(after["csms"])) == (made.accounts, made.csms)
    assert len(after["contacts"]) == made.contacts - done.left_out_contacts == done.contacts
    assert sum(n for (n,) in after["events"].values()) == made.events - done.left_out_events == done.events
    assert after["csms"] == before["csms"] and after["accounts"] == before["accounts"]
    kept = {k: v for k, v in before["contacts"].items() if k in after["contacts"]}
    assert after["contacts"] == kept and len(before["contacts"]) - len(kept) == done.left_out_contacts
    assert set(after["events"]) <= set(before["events"])
    assert all(after["events"][k] == before["events"][k] for k in after["events"])
    assert set(after["suppressions"].items()) <= set(before["suppressions"].items())
    # A second import of the same files changes nothing.
    again = import_files(db, "events", [tmp_path / "export" / "events.jsonl"], now=NOW)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, done.events)


def test_demo_data_export_command(cli: Path) -> None:
    result = invoke("demo-data", "--accounts", "5", "--now", "2026-11-24T09:00", "--export", str(cli / "out"))
    assert result.exit_code == 0, result.output
    assert "exported to" in result.stdout
    header = (cli / "out" / "accounts.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("external_id,csm_external_id,name,tier")
