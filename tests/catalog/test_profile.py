"""The data catalogue from a real store: fields with fill rates and their few values, traits with
inferred types, events with counts, last seen and property keys; hostile rows cost only themselves."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert

from engine.catalog.profile import profile_store
from engine.catalog.snapshot import Catalog, catalog_from_dict, read_snapshot, snapshot_text
from engine.store.models import events
from tests.factories import Store

NOW = datetime(2026, 11, 1, 9, 0)
SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _profile(db: Engine, sample: int = 2000) -> Catalog:
    with db.connect() as conn:
        return profile_store(conn, sample)


def _seed(db: Engine) -> Store:
    store = Store(db, NOW)
    for i in range(12):
        store.account(
            status="churned" if i % 4 == 0 else "active",
            csm_id=None,
            traits={"industry": ["retail", "energy"][i % 2], "employees": 10 + i, "trial_ends_on": "2026-11-20"}
            if i % 3
            else {"industry": "retail"},
        )
    return store


def test_fields_have_their_type_fill_rate_and_few_values(db: Engine) -> None:
    store = _seed(db)
    first = store.account(external_id="crm-1")
    store.contact(first, role="champion", locale="ko")
    store.contact(first, role="admin")
    store.contact(first, role="admin", locale="en")
    store.contact(first, role="admin")
    catalog = _profile(db)
    fields = {(f.table, f.name): f for f in catalog.fields}
    assert catalog.rows["accounts"] == 13 and catalog.rows["contacts"] == 4
    assert fields[("account", "status")].values == ("active", "churned")
    assert fields[("account", "status")].kind == "string"
    assert fields[("account", "external_id")].filled == pytest.approx(1 / 13, abs=1e-4)
    assert fields[("account", "csm_id")].filled == 0.0
    assert fields[("account", "renewal_date")].kind == "date"
    assert fields[("contact", "role")].values == ("admin", "champion")
    assert fields[("contact", "locale")].filled == 0.5
    # A column whose values hardly repeat (an email) lists none.
    assert fields[("contact", "email")].values is None


def test_traits_have_an_inferred_type_a_share_and_examples(db: Engine) -> None:
    _seed(db)
    traits = {(t.table, t.key): t for t in _profile(db).traits}
    assert traits[("account", "industry")].kind == "text"
    assert traits[("account", "industry")].share == 1.0
    assert set(traits[("account", "industry")].examples) == {"retail", "energy"}
    assert traits[("account", "employees")].kind == "number"
    assert traits[("account", "employees")].share == pytest.approx(8 / 12, abs=1e-4)
    assert traits[("account", "trial_ends_on")].kind == "date"


def test_events_are_counted_with_last_seen_and_property_keys(db: Engine) -> None:
    store = Store(db, NOW)
    account = store.account()
    store.events(account, "login", [1, 2, 3])
    with db.begin() as conn:
        conn.execute(
            insert(events),
            [
                {"account_id": account, "name": "nps_response", "occurred_at": NOW - timedelta(days=5),
                 "properties": {"score": 9, "comment": "great"}},
                {"account_id": account, "name": "nps_response", "occurred_at": NOW - timedelta(hours=2),
                 "properties": {"score": 3}},
            ],
        )  # fmt: skip
    catalog = _profile(db)
    found = {e.name: e for e in catalog.events}
    assert catalog.rows["events"] == 5
    assert found["login"].count == 3
    assert found["login"].last_seen == (NOW - timedelta(days=1)).isoformat(sep=" ")
    assert found["nps_response"].count == 2
    assert found["nps_response"].properties == ("comment", "score")
    assert catalog.event_names() == ["login", "nps_response"]


def test_a_large_table_is_sampled_and_still_lists_rare_values_exactly(db: Engine) -> None:
    store = Store(db, NOW)
    for i in range(60):
        store.account(tier="high_touch" if i == 37 else "tech_touch", traits={"seq": i})
    catalog = _profile(db, sample=10)
    fields = {(f.table, f.name): f for f in catalog.fields}
    traits = {(t.table, t.key): t for t in catalog.traits}
    assert catalog.sample == 10 and catalog.rows["accounts"] == 60
    # Traits come from the sample only; the values of a few-valued column from the whole table.
    assert traits[("account", "seq")].share == 1.0
    assert fields[("account", "tier")].values == ("high_touch", "tech_touch")


def test_traits_that_are_not_objects_cost_only_their_row(db: Engine) -> None:
    store = Store(db, NOW)
    store.account(traits={"industry": "retail"})
    store.account(traits=["not", "an", "object"])
    store.account(traits="just text")
    catalog = _profile(db)
    assert [(t.table, t.key) for t in catalog.traits] == [("account", "industry")]
    assert any("accounts.traits" in n and "2 not a JSON object" in n for n in catalog.notes), catalog.notes


@SQLITE
def test_traits_that_are_not_json_and_text_that_is_not_utf8_never_crash(db: Engine) -> None:
    store = Store(db, NOW)
    good = store.account(traits={"industry": "retail"})
    broken = store.account()
    binary = store.account()
    with db.begin() as conn:
        conn.exec_driver_sql("UPDATE accounts SET traits = '{not json' WHERE id = ?", (broken,))
        conn.exec_driver_sql("UPDATE accounts SET traits = CAST(X'7B2261223A22FF227D' AS TEXT) WHERE id = ?",
                             (binary,))  # fmt: skip
        conn.exec_driver_sql("UPDATE accounts SET plan = CAST(X'FF' AS TEXT) WHERE id = ?", (good,))
    store.events(good, "login", [1])
    with db.begin() as conn:
        conn.exec_driver_sql("UPDATE events SET properties = '[1' WHERE account_id = ?", (good,))
    catalog = _profile(db)
    notes = " | ".join(catalog.notes)
    assert ("account", "industry") in {(t.table, t.key) for t in catalog.traits}
    assert "accounts.traits" in notes and "not readable JSON" in notes
    assert "accounts.plan: some values cannot be read" in notes
    assert "events 'login' properties" in notes
    assert {e.name: e.count for e in catalog.events} == {"login": 1}


def test_the_snapshot_round_trips_and_a_broken_one_says_why(db: Engine, tmp_path: Path) -> None:
    _seed(db)
    catalog = _profile(db)
    path = tmp_path / "catalog.json"
    path.write_text(snapshot_text(catalog), encoding="utf-8")
    assert read_snapshot(path) == catalog
    path.write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_snapshot(path)
    with pytest.raises(ValueError, match="not a catalogue snapshot"):
        catalog_from_dict({"format": 1, "rows": {}})
