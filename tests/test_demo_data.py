"""The demo store generator and the bulk loader under it, on SQLite and PostgreSQL.

Rows are always read back through SQLAlchemy: the loader bypasses it on the way in, so these
tests are what shows the stored formats (dates, datetimes, JSON) are the ones the ORM expects.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, Table, func, insert, select, text
from sqlalchemy.orm import Session

from demo import data as demo_data
from demo.data import generate
from engine.store.bulk import bulk_insert
from engine.store.db import connect
from engine.store.models import Account, Event, accounts, contacts, csms, enrollments, events

NOW = datetime(2026, 11, 23, 9, 0)
N = 300


def _digests(engine: Engine) -> dict[str, str]:
    """A sha256 per customer table over all its rows, in key order, as SQLAlchemy reads them."""
    out = {}
    with engine.connect() as conn:
        for table in (csms, accounts, contacts, events):
            rows = conn.execute(select(table).order_by(*table.primary_key.columns)).all()
            out[table.name] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return out


def _count(engine: Engine, table: Table, *where: Any) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def test_counts_are_sane_and_every_account_has_an_admin(db: Engine) -> None:
    summary = generate(db, accounts=N, seed=3, now=NOW)

    assert summary.accounts == N == _count(db, accounts)
    assert summary.csms == _count(db, csms) >= 3
    assert summary.contacts == _count(db, contacts)
    assert summary.events == _count(db, events)
    assert 2.5 * N <= summary.contacts <= 3.5 * N
    assert 7 * summary.contacts <= summary.events <= 20 * summary.contacts  # a year of activity at one pace
    with db.connect() as conn:
        ids = conn.execute(select(accounts.c.id).order_by(accounts.c.id)).scalars().all()
        with_admin = conn.execute(
            select(func.count(func.distinct(contacts.c.account_id))).where(contacts.c.role == "admin")
        ).scalar_one()
        tiers = Counter(conn.execute(select(accounts.c.tier)).scalars())
        untouched_csm = conn.execute(
            select(func.count()).where(accounts.c.tier != "tech_touch", accounts.c.csm_id.is_(None))
        ).scalar_one()
    assert ids == list(range(1, N + 1))
    assert with_admin == N
    assert set(tiers) == {"high_touch", "low_touch", "tech_touch"}
    assert tiers["tech_touch"] > tiers["low_touch"] > tiers["high_touch"]
    assert untouched_csm == 0


def test_same_seed_same_rows_and_another_seed_differs(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    generate(db, accounts=N, seed=5, now=NOW)
    first = _digests(db)
    # Regenerating over a full store (it must wipe first), in smaller chunks: same rows.
    monkeypatch.setattr(demo_data, "_CHUNK", 7)
    generate(db, accounts=N, seed=5, now=NOW)
    assert _digests(db) == first

    generate(db, accounts=N, seed=6, now=NOW)
    other = _digests(db)
    assert all(other[name] != first[name] for name in ("accounts", "contacts", "events"))


def test_generate_wipes_the_engine_tables(db: Engine) -> None:
    with db.begin() as conn:
        conn.execute(
            insert(enrollments).values(
                playbook_id="p",
                playbook_version="v",
                subject_type="account",
                subject_id=1,
                account_id=1,
                trigger_key="k",
                status="active",
                step_index=0,
                enrolled_at=NOW,
                updated_at=NOW,
                run_id="r",
            )
        )
    generate(db, accounts=10, seed=1, now=NOW)
    assert _count(db, enrollments) == 0


def test_playbook_patterns_exist(db: Engine) -> None:
    generate(db, accounts=500, seed=7, now=NOW)
    with db.connect() as conn:
        last_login: dict[int, datetime] = {
            account_id: at
            for account_id, at in conn.execute(
                select(events.c.account_id, func.max(events.c.occurred_at))
                .where(events.c.name == "login")
                .group_by(events.c.account_id)
            )
        }
        spikes = conn.execute(
            select(events.c.account_id)
            .where(events.c.name == "support_ticket_opened", events.c.occurred_at >= NOW - timedelta(days=7))
            .group_by(events.c.account_id)
            .having(func.count() >= 5)
        ).all()
        recent_scores = conn.execute(
            select(events.c.properties).where(
                events.c.name == "nps_response", events.c.occurred_at >= NOW - timedelta(days=30)
            )
        ).scalars()
        detractors = [p["score"] for p in recent_scores if p["score"] <= 6]
        churned = set(conn.execute(select(accounts.c.id).where(accounts.c.status == "churned")).scalars())
        renewing = conn.execute(
            select(func.count()).where(
                accounts.c.renewal_date.between(NOW.date() + timedelta(days=83), NOW.date() + timedelta(days=90))
            )
        ).scalar_one()

    # Gone quiet: logged in before, but not in the last 60 days (last login 61-150 days ago);
    # churned accounts' histories end on their churn day, so they are not counted here.
    quiet = [at for a, at in last_login.items() if a not in churned and at < NOW - timedelta(days=60)]
    assert quiet
    assert all(NOW - timedelta(days=150) <= at <= NOW - timedelta(days=61) for at in quiet)
    assert len(last_login) == 500  # every account has logged in at some point
    assert spikes
    assert detractors
    assert renewing > 0


def test_values_read_back_as_python_types(db: Engine) -> None:
    generate(db, accounts=50, seed=2, now=NOW)
    with Session(db) as session:
        account = session.get_one(Account, 1)
        event = session.scalars(select(Event).order_by(Event.id).limit(1)).one()
    assert type(account.contract_start) is date
    assert type(account.renewal_date) is date
    assert account.contract_start < NOW.date() < account.renewal_date
    assert isinstance(account.traits, dict)
    assert set(account.traits) == {"industry", "region", "employees", "health_score"}
    assert type(event.occurred_at) is datetime
    assert NOW - timedelta(days=366) < event.occurred_at < NOW  # a year of history
    assert isinstance(event.properties, dict)

    # Comparisons in SQL agree with comparisons in Python (on SQLite they compare stored text).
    cutoff = NOW - timedelta(days=45)
    with db.connect() as conn:
        in_sql = conn.execute(select(func.count()).where(events.c.occurred_at >= cutoff)).scalar_one()
        in_python = sum(1 for at in conn.execute(select(events.c.occurred_at)).scalars() if at >= cutoff)
    assert in_sql == in_python > 0


def test_contacts_look_real(db: Engine) -> None:
    generate(db, accounts=500, seed=4, now=NOW)
    with db.connect() as conn:
        rows = conn.execute(
            select(contacts.c.id, contacts.c.email, contacts.c.name, contacts.c.locale, accounts.c.locale).join(
                accounts, accounts.c.id == contacts.c.account_id
            )
        ).all()
    korean = [name for _, _, name, _, account_locale in rows if account_locale == "ko"]
    assert korean and all("\uac00" <= name[0] <= "\ud7a3" for name in korean)  # Hangul syllables
    assert all(email.isascii() for _, email, *_ in rows)
    broken = [email for _, email, *_ in rows if email.count("@") != 1 or " " in email]
    assert 0 < len(broken) < 0.05 * len(rows)
    good = [(cid, email) for cid, email, *_ in rows if email not in broken]
    assert all(email.split("@")[0].endswith(f".{cid}") and email.endswith(".example") for cid, email in good)
    inheriting = sum(1 for _, _, _, locale, _ in rows if locale is None)
    assert inheriting > 0.8 * len(rows)


def test_bulk_insert_stores_what_core_stores(db: Engine) -> None:
    values = [
        (10, 1, None, "login", datetime(2026, 1, 2, 3, 4, 5), {}),
        (11, 1, 7, "feature_used", datetime(2026, 1, 2, 3, 4, 5, 120), {"feature": "sso", "n": [1, 2]}),
    ]
    columns = ("id", "account_id", "contact_id", "name", "occurred_at", "properties")
    with db.begin() as conn:
        assert bulk_insert(conn, events, columns, iter(values), batch_size=1) == 2
        # The loaded ids moved the key's sequence on PostgreSQL: the database picks 12 next.
        conn.execute(insert(events).values(account_id=1, name="x", occurred_at=NOW, properties={}))
        conn.execute(insert(events), [dict(zip(columns, (id_ + 10, *rest), strict=True)) for id_, *rest in values])
        raw = conn.execute(text("SELECT id, occurred_at, properties FROM events ORDER BY id")).all()
        typed = conn.execute(select(*(events.c[name] for name in columns)).order_by(events.c.id)).all()

    assert [row.id for row in raw] == [10, 11, 12, 20, 21]
    # Byte for byte what Core's insert stored (on SQLite: the same datetime and JSON text).
    assert [tuple(row[1:]) for row in raw[:2]] == [tuple(row[1:]) for row in raw[3:]]
    assert [tuple(row[1:]) for row in typed[:2]] == [v[1:] for v in values]


def test_rejects_an_aware_now() -> None:
    with pytest.raises(ValueError, match="naive"):
        generate(connect("sqlite://"), accounts=1, seed=1, now=datetime.fromisoformat("2026-11-23T09:00:00+00:00"))
